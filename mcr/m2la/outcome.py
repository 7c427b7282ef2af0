"""What a conversion did, per layer (plain data, printable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class LayerReport:
    layer: int
    rope_pairs: list  # kept frequency pairs, one list per rope key
    energy: float  # fraction of the joint key-nope + value energy the latent keeps
    key_energy: float
    value_energy: float
    rope_share_energy: float | None  # fit of one shared rope key to several groups, if used
    original_values_per_token: int  # 2 x kv heads x head dim
    values_per_token: int  # latent + rope keys (+ key scales)
    rope_axes: list | None = None  # multimodal RoPE: kept pairs per position axis (time, height, width)


@dataclass
class ConversionReport:
    family: str
    rank: int
    rope_dim: int
    shared_rope: bool
    key_norm: str
    calibrated: bool
    layers: list[LayerReport] = field(default_factory=list)
    calibration_tokens: dict = field(default_factory=dict)  # calibration tokens kept, by kind
    mrope_section: list | None = None  # multimodal RoPE: frequency pairs per axis (time, height, width)

    @property
    def cache_ratio(self) -> float:
        """Cached values per token after / before, over all layers."""
        before = sum(r.original_values_per_token for r in self.layers)
        after = sum(r.values_per_token for r in self.layers)
        return after / before if before else float("nan")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cache_ratio"] = self.cache_ratio
        return data

    def format(self) -> str:
        title = (
            f"M2LA conversion ({self.family}): rank {self.rank}, rope_dim {self.rope_dim}, "
            f"{'shared' if self.shared_rope else 'per-group'} rope key, key norm {self.key_norm}, "
            f"{'calibrated' if self.calibrated else 'weights only'}"
        )
        lines = [title]
        if self.calibration_tokens:
            kinds = ", ".join(f"{n} {k}" for k, n in self.calibration_tokens.items() if n)
            lines.append(f"calibration tokens: {sum(self.calibration_tokens.values())} ({kinds})")
        if self.mrope_section:
            kept = self.layers[0].rope_axes if self.layers else None
            lines.append(f"multimodal RoPE pairs (time, height, width): {self.mrope_section}, kept {kept}")
        lines += ["layer  energy  key    value  rope-share  values/token (orig -> new)"]
        for r in self.layers:
            share = "-" if r.rope_share_energy is None else f"{r.rope_share_energy:.3f}"
            lines.append(
                f"{r.layer:5d}  {r.energy:.4f}  {r.key_energy:.3f}  {r.value_energy:.3f}  {share:>10}  "
                f"{r.original_values_per_token} -> {r.values_per_token}"
            )
        lines.append(f"cache per token: {self.cache_ratio:.4f} of the original")
        return "\n".join(lines)
