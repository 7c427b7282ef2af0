"""Absorbed M²LA decode as one Triton kernel: one pass over the latent cache per token.

For one new token per sequence, with the key up-projection already folded into the query
(``q_lat = W_ukᵀ q_nope``, ``[batch, heads, rank]``), the attention over the cache is

    s_t = (q_lat · c_t + q_bias + q_rope · k_rope_t) · key_scale_t · softmax_scale
    ctx = Σ_t softmax(s)_t · c_t                         ([batch, heads, rank])

(``q_bias`` is the query times the key up-projection's bias; ``key_scale`` the cached
inverse key RMS of the query's key/value group, for models that keep their key norm). The
kernel is split-K ("flash-decoding"): the sequence is cut into splits, one program per
(sequence, split, block of heads) reads its latents and RoPE keys once for all the heads of
its block, keeps a running maximum, sum and weighted sum of latents (online softmax), and
writes them; a short PyTorch reduction combines the splits. The value up-projection is
applied afterwards by the caller, as in the PyTorch path.

Supported: one RoPE key shared by all heads (InternVideo3's layout), optional key scales,
optional logit soft-capping. :func:`supported` says when a call can take this path;
otherwise :class:`~mcr.m2la.attention.M2LAAttention` uses its PyTorch path. On the CPU the
kernel runs only under Triton's interpreter (``TRITON_INTERPRET=1`` set before triton is
imported), which the tests use to check it against the PyTorch path.
"""

from __future__ import annotations

import functools
import os

import torch

from .errors import M2LAError


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """Whether triton imports (checked once)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # a broken triton install raises more than ImportError
        return False
    return True


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def supported(latent: torch.Tensor, num_rope_keys: int, queries: int, mask, interpreter: bool = False) -> bool:
    """Whether the kernel can run this call: one query token, no mask, one shared RoPE key, and
    a CUDA tensor (or, with ``interpreter``, any tensor under Triton's interpreter) with triton
    importable."""
    if queries != 1 or mask is not None or num_rope_keys != 1:
        return False
    if latent.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False
    if not (latent.is_cuda or (interpreter and interpreting())):
        return False
    return triton_available()


@functools.lru_cache(maxsize=1)
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def absorbed_split(
        Q, QR, QB, C, KR, SC, M, L, ACC,
        T, H, R, DR, heads_per_group, split_len,
        sq_b, sq_h, sqr_b, sqr_h, sqb_b, sc_b, sc_t, skr_b, skr_t, ssc_b, ssc_g, ssc_t,
        sm_b, sm_s, sa_b, sa_s, sa_h,
        softmax_scale, softcap,
        HAS_SCALE: tl.constexpr, HAS_SOFTCAP: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_H: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_DR: tl.constexpr,
    ):  # fmt: skip
        b = tl.program_id(0)
        s = tl.program_id(1)
        hb = tl.program_id(2)
        offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
        offs_r = tl.arange(0, BLOCK_R)
        offs_d = tl.arange(0, BLOCK_DR)
        mask_h = offs_h < H
        mask_r = offs_r < R
        mask_d = offs_d < DR
        q = tl.load(
            Q + b * sq_b + offs_h[:, None] * sq_h + offs_r[None, :], mask=mask_h[:, None] & mask_r[None, :], other=0.0
        )
        qr = tl.load(
            QR + b * sqr_b + offs_h[:, None] * sqr_h + offs_d[None, :],
            mask=mask_h[:, None] & mask_d[None, :],
            other=0.0,
        )
        qb = tl.load(QB + b * sqb_b + offs_h, mask=mask_h, other=0.0).to(tl.float32)
        group = offs_h // heads_per_group
        m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
        acc = tl.zeros([BLOCK_H, BLOCK_R], dtype=tl.float32)
        start = s * split_len
        end = tl.minimum(start + split_len, T)
        for t0 in range(start, end, BLOCK_T):
            offs_t = t0 + tl.arange(0, BLOCK_T)
            mask_t = offs_t < end
            c = tl.load(
                C + b * sc_b + offs_t[:, None] * sc_t + offs_r[None, :],
                mask=mask_t[:, None] & mask_r[None, :],
                other=0.0,
            )
            kr = tl.load(
                KR + b * skr_b + offs_t[:, None] * skr_t + offs_d[None, :],
                mask=mask_t[:, None] & mask_d[None, :],
                other=0.0,
            )
            scores = tl.dot(q, tl.trans(c), input_precision=PRECISION)
            scores += tl.dot(qr, tl.trans(kr), input_precision=PRECISION)
            scores += qb[:, None]
            if HAS_SCALE:
                sc = tl.load(
                    SC + b * ssc_b + group[:, None] * ssc_g + offs_t[None, :] * ssc_t,
                    mask=mask_h[:, None] & mask_t[None, :],
                    other=0.0,
                )
                scores = scores * sc.to(tl.float32)
            scores = scores * softmax_scale
            if HAS_SOFTCAP:
                scores = softcap * (2.0 * tl.sigmoid(2.0 * scores / softcap) - 1.0)  # softcap * tanh(x / softcap)
            scores = tl.where(mask_t[None, :], scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, 1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(scores - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(c.dtype), c, input_precision=PRECISION)
            m_i = m_new
        tl.store(M + b * sm_b + s * sm_s + offs_h, m_i, mask=mask_h)
        tl.store(L + b * sm_b + s * sm_s + offs_h, l_i, mask=mask_h)
        tl.store(
            ACC + b * sa_b + s * sa_s + offs_h[:, None] * sa_h + offs_r[None, :],
            acc,
            mask=mask_h[:, None] & mask_r[None, :],
        )

    return absorbed_split


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _pow2(n: int, least: int = 16) -> int:
    return max(least, 1 << (int(n) - 1).bit_length())


def absorbed_decode(
    q_lat: torch.Tensor,
    q_rope: torch.Tensor,
    q_bias: torch.Tensor | None,
    latent: torch.Tensor,
    k_rope: torch.Tensor,
    key_scale: torch.Tensor | None,
    softmax_scale: float,
    softcap: float | None = None,
    block_t: int | None = None,
    splits: int | None = None,
) -> torch.Tensor:
    """Context ``[batch, heads, rank]`` (float32) of one query token per sequence over the latent cache.

    ``q_lat [b, heads, rank]``, ``q_rope [b, heads, rope_dim]`` (rotated), ``q_bias [b, heads]``
    or None, ``latent [b, T, rank]`` and ``k_rope [b, 1, T, rope_dim]`` (views of the cache; the
    last dimension contiguous), ``key_scale [b, groups, T]`` or None.
    """
    if not triton_available():
        raise M2LAError("the Triton absorbed-decode kernel needs triton (pip install triton)")
    b, heads, rank = q_lat.shape
    t = latent.shape[1]
    if latent.shape != (b, t, rank) or k_rope.dim() != 4 or k_rope.shape[:3] != (b, 1, t):
        raise M2LAError(
            f"absorbed_decode: latent {tuple(latent.shape)} and k_rope {tuple(k_rope.shape)} do not match "
            f"q_lat {tuple(q_lat.shape)}"
        )
    if t == 0:
        raise M2LAError("absorbed_decode needs at least one cached token")
    rope_dim = k_rope.shape[-1]
    if q_rope.shape != (b, heads, rope_dim):
        raise M2LAError(f"q_rope must be {(b, heads, rope_dim)}, got {tuple(q_rope.shape)}")
    if latent.stride(-1) != 1 or k_rope.stride(-1) != 1:
        raise M2LAError("absorbed_decode needs the last dimension of latent and k_rope contiguous")
    groups = key_scale.shape[1] if key_scale is not None else 1
    if heads % groups:
        raise M2LAError(f"{heads} heads do not divide into {groups} key/value groups")
    dtype = latent.dtype
    q_lat = q_lat.to(dtype).contiguous()
    q_rope = q_rope.to(dtype).contiguous()
    q_bias = (torch.zeros(b, heads, device=latent.device) if q_bias is None else q_bias).float().contiguous()
    kr = k_rope[:, 0]
    block_h = 16
    block_t = block_t or (64 if rank <= 256 else 32)
    head_blocks = _cdiv(heads, block_h)
    if splits is None:  # about two programs per multiprocessor
        units = torch.cuda.get_device_properties(latent.device).multi_processor_count if latent.is_cuda else 4
        splits = max(1, min(_cdiv(t, block_t), _cdiv(2 * units, b * head_blocks)))
    split_len = _cdiv(_cdiv(t, splits), block_t) * block_t  # a whole number of tiles per split
    splits = _cdiv(t, split_len)  # every split holds at least one token
    m = torch.empty(b, splits, heads, device=latent.device, dtype=torch.float32)
    lsum = torch.empty_like(m)
    acc = torch.empty(b, splits, heads, rank, device=latent.device, dtype=torch.float32)
    scale = key_scale if key_scale is not None else q_bias  # a placeholder pointer when unused
    ssc = key_scale.stride() if key_scale is not None else (0, 0, 0)
    precision = "ieee" if dtype == torch.float32 else "tf32"
    _kernel()[(b, splits, head_blocks)](
        q_lat, q_rope, q_bias, latent, kr, scale, m, lsum, acc,
        t, heads, rank, rope_dim, heads // groups, split_len,
        q_lat.stride(0), q_lat.stride(1), q_rope.stride(0), q_rope.stride(1), q_bias.stride(0),
        latent.stride(0), latent.stride(1), kr.stride(0), kr.stride(1), ssc[0], ssc[1], ssc[2],
        m.stride(0), m.stride(1), acc.stride(0), acc.stride(1), acc.stride(2),
        float(softmax_scale), float(softcap or 1.0),
        HAS_SCALE=key_scale is not None, HAS_SOFTCAP=softcap is not None, PRECISION=precision,
        BLOCK_H=block_h, BLOCK_T=block_t, BLOCK_R=_pow2(rank), BLOCK_DR=_pow2(rope_dim),
        num_warps=8 if rank > 256 else 4,
    )  # fmt: skip
    top = m.max(dim=1, keepdim=True).values
    weight = torch.exp(m - top)  # [b, splits, heads]
    total = (lsum * weight).sum(1)
    return (acc * weight[..., None]).sum(1) / total[..., None]
