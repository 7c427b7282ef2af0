"""M²LA: multi-head latent attention with a decoupled RoPE key.

Per token and layer the cache holds a latent vector ``c`` (width ``rank``), the
RoPE key(s) (``rope_dim`` wide, one shared by all heads or one per key/value group)
and, for source models with a per-head key norm kept exactly, one inverse-RMS value
per key/value group.

Parameter names follow DeepSeek MLA so that MLA checkpoints map by name:

``q_proj``               hidden -> heads x (nope_dim + rope_dim)
``kv_a_proj_with_mqa``   hidden -> rank (latent) + rope keys
``kv_a_layernorm``       optional RMS norm of the latent
``kv_b_proj``            rank -> kv groups x (nope_dim + v_head_dim)  (key-nope and value up-projection)
``o_proj``               heads x v_head_dim -> hidden

Two ways to attend, same numbers:

* materialised (prefill): up-project every cached latent to per-group keys and
  values and call ``scaled_dot_product_attention``;
* absorbed (decode): fold the key up-projection into the query
  (``q_nope · W_uk c = (W_ukᵀ q_nope) · c``), score directly against the cached
  latents, take the probability-weighted sum of latents, and apply the value
  up-projection once afterwards. Nothing per-head is rebuilt for the past tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import M2LAError
from .rope import apply_rope, select_pairs
from .spec import M2LASpec

DECODE_MODES = ("auto", "absorbed", "materialized")
DECODE_KERNELS = ("auto", "torch", "triton")


class HeadRMSNorm(nn.Module):
    """RMS norm over the last dimension with a separate weight per head (``[heads, dim]``)."""

    def __init__(self, num_heads: int, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_heads, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [b, s, heads, dim]
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


class LatentRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


class M2LAAttention(nn.Module):
    """Latent attention layer; a drop-in ``self_attn`` for transformers decoder layers.

    ``forward`` takes the keyword arguments transformers decoder layers pass
    (``hidden_states``, ``position_embeddings=(cos, sin)``, ``attention_mask``,
    ``past_key_values``) and returns ``(output, None)``. ``cos``/``sin`` may be the
    full head width of the source model (the layer picks its ``rope_pairs``) or
    already ``rope_dim`` wide.

    With a :class:`~mcr.m2la.cache.LatentCache` only latent states are cached. With
    any other transformers ``Cache`` the layer caches materialised per-group keys and
    values instead (compatible, but without the memory saving).

    ``decode_mode``: ``"auto"`` (absorbed when at most ``absorb_max_query`` new tokens
    attend to a non-empty latent cache, materialised otherwise), ``"absorbed"`` or
    ``"materialized"`` (force one path; used by tests and benchmarks).

    ``decode_kernel`` (absorbed decode of one token): ``"auto"`` (the Triton kernel of
    :mod:`~mcr.m2la.triton_decode` on CUDA when triton imports and the layer has one shared
    RoPE key, PyTorch otherwise), ``"torch"`` or ``"triton"`` (required; on the CPU only under
    ``TRITON_INTERPRET=1``).
    """

    def __init__(self, spec: M2LASpec, layer_idx: int | None = None):
        super().__init__()
        self.spec = spec
        self.layer_idx = layer_idx
        self.decode_mode = "auto"
        self.absorb_max_query = 16
        self.decode_kernel = "auto"
        self.is_causal = True
        # attributes some transformers utilities read from attention modules
        self.head_dim = spec.head_dim
        self.num_key_value_groups = spec.num_heads // spec.num_kv_heads
        self.sliding_window = spec.sliding_window
        self.scaling = spec.softmax_scale

        s = spec
        self.q_proj = nn.Linear(s.hidden_size, s.num_heads * s.head_dim, bias=s.qkv_bias)
        self.q_norm = HeadRMSNorm(s.num_heads, s.head_dim, s.norm_eps) if s.query_norm else None
        self.kv_a_proj_with_mqa = nn.Linear(s.hidden_size, s.rank + s.num_rope_keys * s.rope_dim, bias=s.qkv_bias)
        self.kv_a_layernorm = LatentRMSNorm(s.rank, s.norm_eps) if s.latent_norm else None
        self.kv_b_proj = nn.Linear(s.rank, s.num_kv_heads * (s.nope_dim + s.v_head_dim), bias=s.qkv_bias)
        self.o_proj = nn.Linear(s.num_heads * s.v_head_dim, s.hidden_size, bias=s.o_bias)
        self.register_buffer("rope_pairs", torch.arange(s.rope_dim // 2).repeat(s.num_rope_keys, 1), persistent=True)
        if s.key_norm == "scale":
            self.k_nope_norm_weight = nn.Parameter(torch.ones(s.num_kv_heads, s.nope_dim))
            self.k_rope_norm_weight = nn.Parameter(torch.ones(s.num_rope_keys, s.rope_dim))
            # amplitude of each group's rope key relative to the stored shared key (for the RMS only)
            self.register_buffer("rope_key_gain", torch.ones(s.num_kv_heads, s.rope_dim), persistent=True)
        if s.rope_mix:
            # complex multiplier per head and frequency pair on the query rope part: [heads, (re, im), pairs]
            mix = torch.zeros(s.num_heads, 2, s.rope_dim // 2)
            mix[:, 0] = 1.0
            self.q_rope_mix = nn.Parameter(mix)

    # ------------------------------------------------------------------ helpers
    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"heads={s.num_heads}, kv_groups={s.num_kv_heads}, rank={s.rank}, rope_dim={s.rope_dim}, "
            f"rope_keys={s.num_rope_keys}, key_norm={s.key_norm}"
        )

    def cache_bytes_per_token(self, dtype: torch.dtype | None = None) -> int:
        dtype = dtype or self.kv_b_proj.weight.dtype
        return self.spec.cached_values_per_token * torch.empty((), dtype=dtype).element_size()

    def _query(self, x, cos_r, sin_r):
        s = self.spec
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, s.num_heads, s.head_dim)
        if self.q_norm is not None:
            q = self.q_norm(q)
        q_nope, q_rope = q[..., : s.nope_dim], q[..., s.nope_dim :]
        if s.rope_mix:
            k = s.rope_dim // 2
            re, im = q_rope[..., :k], q_rope[..., k:]
            m_re, m_im = self.q_rope_mix[:, 0].to(q.dtype), self.q_rope_mix[:, 1].to(q.dtype)
            q_rope = torch.cat((re * m_re - im * m_im, re * m_im + im * m_re), dim=-1)
        if s.num_rope_keys != s.num_heads:
            rep = s.num_heads // s.num_rope_keys
            cos_r, sin_r = cos_r.repeat_interleave(rep, dim=2), sin_r.repeat_interleave(rep, dim=2)
        q_rope = apply_rope(q_rope, cos_r, sin_r)
        return q_nope.transpose(1, 2), q_rope.transpose(1, 2)

    def _write_states(self, x, cos_r, sin_r):
        """Latent, rotated rope key(s) and key scales of the new tokens (what gets cached)."""
        s = self.spec
        b, n, _ = x.shape
        kv = self.kv_a_proj_with_mqa(x)
        latent = kv[..., : s.rank]
        k_rope = kv[..., s.rank :].view(b, n, s.num_rope_keys, s.rope_dim)
        if self.kv_a_layernorm is not None:
            latent = self.kv_a_layernorm(latent)
        scale = None
        if s.key_norm == "scale":
            k_nope = self.kv_b_proj(latent).view(b, n, s.num_kv_heads, -1)[..., : s.nope_dim]
            rope_sq = k_rope.float().pow(2)
            if s.num_rope_keys != s.num_kv_heads:
                rope_sq = rope_sq.expand(b, n, s.num_kv_heads, s.rope_dim)
            rope_sq = rope_sq * self.rope_key_gain.float().pow(2)
            mean_sq = (k_nope.float().pow(2).sum(-1) + rope_sq.sum(-1)) / s.head_dim
            scale = torch.rsqrt(mean_sq + s.norm_eps).to(x.dtype).transpose(1, 2)  # [b, groups, n]
            k_rope = k_rope * self.k_rope_norm_weight.to(k_rope.dtype)
        k_rope = apply_rope(k_rope, cos_r, sin_r).transpose(1, 2)  # [b, rope_keys, n, rope_dim]
        return latent.contiguous(), k_rope.contiguous(), scale

    def _materialize(self, latent, k_rope, scale):
        """Per-group keys ``[b, g, T, head_dim]`` and values ``[b, g, T, v]`` from cached states."""
        s = self.spec
        b, t, _ = latent.shape
        kv = self.kv_b_proj(latent).view(b, t, s.num_kv_heads, -1).transpose(1, 2)
        k_nope, v = kv[..., : s.nope_dim], kv[..., s.nope_dim :]
        if s.key_norm == "scale":
            k_nope = k_nope * self.k_nope_norm_weight.to(k_nope.dtype)[None, :, None, :]
        if s.num_rope_keys != s.num_kv_heads:
            k_rope = k_rope.expand(b, s.num_kv_heads, t, s.rope_dim)
        k = torch.cat((k_nope, k_rope), dim=-1)
        if scale is not None:
            k = k * scale[..., None]
        return k, v

    def _attend(self, q, k, v, mask):
        """Standard attention of ``q [b, H, s, d]`` over grouped ``k``/``v`` ``[b, g, T, ·]``."""
        s = self.spec
        n, t = q.shape[2], k.shape[2]
        groups = s.num_heads // s.num_kv_heads
        if s.softcap is None:
            attn_mask, causal = _sdpa_mask(mask, n, t, q.device)
            if groups > 1 and q.device.type == "cpu":
                k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
                groups = 1
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=causal, scale=s.softmax_scale, enable_gqa=groups > 1
            )
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)).float() * s.softmax_scale
        probs = self._probs(scores, mask, n, t, q.dtype)
        return torch.matmul(probs, v)

    def _probs(self, scores, mask, n, t, dtype):
        s = self.spec
        if s.softcap is not None:
            scores = torch.tanh(scores / s.softcap) * s.softcap
        additive = _additive_mask(mask, n, t, scores.device)
        if additive is not None:
            scores = scores + additive
        return torch.softmax(scores, dim=-1).to(dtype)

    def _absorbed(self, q_nope, q_rope, latent, k_rope, scale, mask):
        """Attention computed on the latent cache with the key up-projection folded into the query."""
        s = self.spec
        b, heads, n, _ = q_nope.shape
        t = latent.shape[1]
        g, groups = s.num_kv_heads, heads // s.num_kv_heads
        w = self.kv_b_proj.weight.view(g, s.nope_dim + s.v_head_dim, s.rank)
        w_uk, w_uv = w[:, : s.nope_dim], w[:, s.nope_dim :]
        qn = q_nope.reshape(b, g, groups, n, s.nope_dim)
        if s.key_norm == "scale":
            qn = qn * self.k_nope_norm_weight.to(qn.dtype)[None, :, None, None, :]
        q_lat = torch.einsum("bgjnd,gdr->bgjnr", qn, w_uk).reshape(b, heads * n, s.rank)
        bias = self.kv_b_proj.bias
        if n == 1 and self._use_kernel(latent, mask):
            from .triton_decode import absorbed_decode

            q_bias = None
            if bias is not None and s.nope_dim:
                q_bias = torch.einsum("bgjnd,gd->bgjn", qn, bias.view(g, -1)[:, : s.nope_dim]).reshape(b, heads)
            ctx = absorbed_decode(
                q_lat.view(b, heads, s.rank),
                q_rope.reshape(b, heads, s.rope_dim),
                q_bias,
                latent,
                k_rope,
                scale,
                s.softmax_scale,
                s.softcap,
            )
            out = torch.einsum("bgjnr,gvr->bgjnv", ctx.to(latent.dtype).view(b, g, groups, 1, s.rank), w_uv)
            if bias is not None:
                out = out + bias.view(g, -1)[:, s.nope_dim :][None, :, None, None, :]
            return out.reshape(b, heads, n, s.v_head_dim)
        scores = torch.bmm(q_lat, latent.transpose(1, 2)).view(b, heads, n, t)
        if bias is not None and s.nope_dim:
            b_k = bias.view(g, -1)[:, : s.nope_dim]
            scores = scores + torch.einsum("bgjnd,gd->bgjn", qn, b_k).reshape(b, heads, n, 1)
        r = s.num_rope_keys
        q_r = q_rope.reshape(b, r, (heads // r) * n, s.rope_dim)
        scores = scores + torch.matmul(q_r, k_rope.transpose(-1, -2)).view(b, heads, n, t)
        scores = scores.float()
        if scale is not None:
            scores = (scores.view(b, g, groups, n, t) * scale.float()[:, :, None, None, :]).view(b, heads, n, t)
        probs = self._probs(scores * s.softmax_scale, mask, n, t, latent.dtype)
        ctx = torch.bmm(probs.reshape(b, heads * n, t), latent).view(b, g, groups, n, s.rank)
        out = torch.einsum("bgjnr,gvr->bgjnv", ctx, w_uv)
        if bias is not None:
            out = out + bias.view(g, -1)[:, s.nope_dim :][None, :, None, None, :]
        return out.reshape(b, heads, n, s.v_head_dim)

    def _use_kernel(self, latent, mask) -> bool:
        """Whether absorbed decode of one token takes the Triton kernel (see ``decode_kernel``)."""
        if self.decode_kernel not in DECODE_KERNELS:
            raise M2LAError(f"decode_kernel must be one of {DECODE_KERNELS}, got {self.decode_kernel!r}")
        if self.decode_kernel == "torch":
            return False
        from .triton_decode import supported

        forced = self.decode_kernel == "triton"
        if supported(latent, self.spec.num_rope_keys, 1, mask, interpreter=forced):
            return True
        if forced:
            raise M2LAError(
                "decode_kernel='triton' needs triton, one shared RoPE key, no attention mask and a CUDA tensor "
                "(or TRITON_INTERPRET=1 on the CPU)"
            )
        return False

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values=None,
        **kwargs,
    ):
        from .cache import LatentCache

        if past_key_values is None:  # transformers 5.24 renamed the argument to ``cache``
            past_key_values = kwargs.pop("cache", None)
        if position_embeddings is None:
            raise M2LAError("M2LAAttention needs position_embeddings=(cos, sin) from the model's rotary embedding")
        if self.decode_mode not in DECODE_MODES:
            raise M2LAError(f"decode_mode must be one of {DECODE_MODES}, got {self.decode_mode!r}")
        s = self.spec
        b, n, _ = hidden_states.shape
        cos, sin = position_embeddings
        cos_r, sin_r = select_pairs(cos, sin, self.rope_pairs, s.head_dim)
        q_nope, q_rope = self._query(hidden_states, cos_r, sin_r)
        latent, k_rope, scale = self._write_states(hidden_states, cos_r, sin_r)

        if past_key_values is not None and not isinstance(past_key_values, LatentCache):
            k, v = self._materialize(latent, k_rope, scale)
            k, v = past_key_values.update(k, v, self.layer_idx)
            out = self._attend(torch.cat((q_nope, q_rope), dim=-1), k, v, attention_mask)
        else:
            if past_key_values is not None:
                latent, k_rope, scale = past_key_values.update_latent(latent, k_rope, scale, self.layer_idx)
            has_past = latent.shape[1] > n
            absorbed = self.decode_mode == "absorbed" or (
                self.decode_mode == "auto" and has_past and n <= self.absorb_max_query
            )
            if absorbed:
                out = self._absorbed(q_nope, q_rope, latent, k_rope, scale, attention_mask)
            else:
                k, v = self._materialize(latent, k_rope, scale)
                out = self._attend(torch.cat((q_nope, q_rope), dim=-1), k, v, attention_mask)
        out = out.transpose(1, 2).reshape(b, n, s.num_heads * s.v_head_dim)
        return self.o_proj(out), None


def _check_mask(mask):
    if mask is not None and not isinstance(mask, torch.Tensor):
        raise M2LAError(
            f"M2LAAttention accepts tensor masks (attn_implementation 'sdpa' or 'eager'), got {type(mask).__name__}"
        )


def _causal(n: int, t: int, device) -> torch.Tensor:
    """Boolean causal mask aligned to the end: query i sees keys up to ``t - n + i``."""
    return torch.ones(n, t, dtype=torch.bool, device=device).tril(t - n)


def _sdpa_mask(mask, n: int, t: int, device):
    _check_mask(mask)
    if mask is None:
        if n == 1:
            return None, False
        if n == t:
            return None, True
        return _causal(n, t, device), False
    return mask[..., :t], False


def _additive_mask(mask, n: int, t: int, device):
    _check_mask(mask)
    if mask is None:
        if n == 1:
            return None
        mask = _causal(n, t, device)
    mask = mask[..., :t]
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, device=device).masked_fill(~mask, torch.finfo(torch.float32).min)
    return mask.float()
