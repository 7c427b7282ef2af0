"""Shape and behaviour of one latent attention layer, as plain data (no torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import M2LAError

KEY_NORM_MODES = ("none", "scale", "fold")


@dataclass
class M2LASpec:
    """Everything needed to build an :class:`~mcr.m2la.attention.M2LAAttention`.

    ``head_dim`` is the query/key width per head (``nope_dim + rope_dim``);
    ``num_kv_heads`` is the number of key/value groups that the up-projection
    produces (GQA groups for a converted model, ``num_heads`` for a DeepSeek-style
    layer). ``shared_rope`` means one rope key for all heads; otherwise one per
    key/value group.

    ``key_norm``: ``"none"`` (no per-head key norm), ``"scale"`` (the key norm of the
    source model is applied exactly to the reconstructed key; its per-token inverse
    RMS is cached, one value per key/value group) or ``"fold"`` (the norm was folded
    into the weights as a constant at conversion; nothing extra at run time).
    """

    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    v_head_dim: int
    rank: int
    rope_dim: int
    shared_rope: bool
    softmax_scale: float
    key_norm: str = "none"
    query_norm: bool = False
    norm_eps: float = 1e-6
    qkv_bias: bool = False
    o_bias: bool = False
    latent_norm: bool = False
    rope_mix: bool = False
    softcap: float | None = None
    sliding_window: int | None = None

    def __post_init__(self):
        if self.key_norm not in KEY_NORM_MODES:
            raise M2LAError(f"key_norm must be one of {KEY_NORM_MODES}, got {self.key_norm!r}")
        if self.num_heads % self.num_kv_heads:
            raise M2LAError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if self.rope_dim <= 0 or self.rope_dim % 2 or self.rope_dim > self.head_dim:
            raise M2LAError(f"rope_dim must be even and in [2, {self.head_dim}], got {self.rope_dim}")
        if self.rank <= 0:
            raise M2LAError(f"rank must be positive, got {self.rank}")

    @property
    def nope_dim(self) -> int:
        return self.head_dim - self.rope_dim

    @property
    def num_rope_keys(self) -> int:
        return 1 if self.shared_rope else self.num_kv_heads

    @property
    def cached_values_per_token(self) -> int:
        """Values one token occupies in this layer's cache: latent + rope keys (+ key scales)."""
        scales = self.num_kv_heads if self.key_norm == "scale" else 0
        return self.rank + self.rope_dim * self.num_rope_keys + scales

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> M2LASpec:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise M2LAError(f"unknown M2LA layer settings: {sorted(unknown)}")
        return cls(**data)
