"""Rotary position embeddings for decoupled-RoPE latent attention.

Layout follows the rotate-half convention used by Llama, Qwen and Gemma in
transformers: a head vector of width ``d`` is split into the first and second
half, and frequency pair ``i`` couples dimensions ``i`` and ``i + d/2``.
``cos``/``sin`` have the shape ``[batch, seq, d]`` with the frequencies repeated
twice (``cat(freqs, freqs)``).

Multimodal RoPE (Qwen2-VL / Qwen2.5-VL / Qwen3-VL) uses three position ids per
token (time, height, width). Each frequency pair takes its angle from one of the
three: contiguous sections (``[16, 24, 24]`` style, Qwen2-VL) or interleaved
(Qwen3-VL, ``mrope_interleaved=True``). After that choice the result is a plain
``cos``/``sin`` pair of the same layout, so the attention code is the same for
both kinds.

A latent attention layer keeps only ``rope_dim`` of the ``d`` dimensions rotated;
``pair_index`` selects which frequency pairs, and :func:`select_pairs` gathers the
matching ``cos``/``sin`` columns.
"""

from __future__ import annotations

import torch
from torch import nn


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (``[..., d]``) by angles given as ``cos``/``sin`` broadcastable to it."""
    return x * cos + rotate_half(x) * sin


def pair_columns(pair_index: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Column indices into a full head vector for the selected frequency pairs.

    ``pair_index`` is ``[..., k]`` with values in ``[0, head_dim/2)``; the result is
    ``[..., 2k]``: first halves then second halves, so the selected part is again in
    rotate-half layout.
    """
    return torch.cat((pair_index, pair_index + head_dim // 2), dim=-1)


def select_pairs(cos: torch.Tensor, sin: torch.Tensor, pair_index: torch.Tensor, head_dim: int):
    """Gather ``cos``/``sin`` (``[b, s, head_dim]``) for ``pair_index`` (``[n, k]``).

    Returns tensors of shape ``[b, s, n, 2k]``. If ``cos`` is already ``2k`` wide it is
    taken as pre-selected and only broadcast over ``n``.
    """
    n, k = pair_index.shape
    if cos.shape[-1] == 2 * k and 2 * k != head_dim:
        return cos.unsqueeze(2).expand(-1, -1, n, -1), sin.unsqueeze(2).expand(-1, -1, n, -1)
    if cos.shape[-1] != head_dim:
        raise ValueError(f"cos/sin are {cos.shape[-1]} wide; expected {head_dim} (full head) or {2 * k} (rope part)")
    cols = pair_columns(pair_index, head_dim).to(cos.device)  # [n, 2k]
    return cos[..., cols], sin[..., cols]


def default_inv_freq(dim: int, theta: float = 10000.0) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


def pair_axes(mrope_section: list[int], interleaved: bool = False) -> torch.Tensor:
    """Which position axis (0 time, 1 height, 2 width) each frequency pair takes its angle from.

    Contiguous sections (Qwen2-VL, Qwen2.5-VL): pair ``i`` in section ``j`` uses axis ``j``.
    Interleaved (Qwen3-VL): axis ``a`` (1 = height, 2 = width) owns pairs ``a, a+3, ...``
    below ``3 * mrope_section[a]``; every other pair uses the time axis.
    """
    n = sum(mrope_section)
    axis = torch.zeros(n, dtype=torch.long)
    if interleaved:
        for a in (1, 2):
            axis[a : 3 * mrope_section[a] : 3] = a
    else:
        start = 0
        for a, size in enumerate(mrope_section):
            axis[start : start + size] = a % 3
            start += size
    return axis


def multimodal_angles(
    position_ids: torch.Tensor, inv_freq: torch.Tensor, mrope_section: list[int], interleaved: bool = False
) -> torch.Tensor:
    """Angles ``[b, s, d/2]`` from 3-axis position ids ``[3, b, s]`` (axes as :func:`pair_axes`)."""
    if sum(mrope_section) != inv_freq.numel():
        raise ValueError(f"mrope_section {mrope_section} must sum to {inv_freq.numel()} (half the rotary width)")
    freqs = position_ids[..., None].float() * inv_freq.to(position_ids.device)  # [3, b, s, d/2]
    n = inv_freq.numel()
    axis = pair_axes(mrope_section, interleaved).to(freqs.device)
    return torch.gather(freqs, 0, axis.view(1, 1, 1, n).expand(1, *freqs.shape[1:3], n)).squeeze(0)


class RotaryEmbedding(nn.Module):
    """Standalone rotary embedding producing full-width ``cos``/``sin``.

    ``position_ids`` of shape ``[b, s]`` give standard RoPE; ``[3, b, s]`` give
    multimodal RoPE with ``mrope_section`` (contiguous, or interleaved when
    ``mrope_interleaved``). Text-only tokens in Qwen-VL carry the same id on all three
    axes, which reduces to standard RoPE.
    """

    def __init__(
        self,
        head_dim: int,
        theta: float = 10000.0,
        mrope_section: list[int] | None = None,
        mrope_interleaved: bool = False,
        scaling: float = 1.0,
    ):
        super().__init__()
        self.head_dim = head_dim
        self.mrope_section = list(mrope_section) if mrope_section else None
        self.mrope_interleaved = mrope_interleaved
        self.scaling = scaling
        self.register_buffer("inv_freq", default_inv_freq(head_dim, theta), persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor):
        if position_ids.dim() == 3:
            if self.mrope_section is None:
                raise ValueError("3-axis position ids need mrope_section")
            angles = multimodal_angles(position_ids, self.inv_freq, self.mrope_section, self.mrope_interleaved)
        else:
            angles = position_ids[..., None].float() * self.inv_freq.to(position_ids.device)
        emb = torch.cat((angles, angles), dim=-1)
        return (emb.cos() * self.scaling).to(x.dtype), (emb.sin() * self.scaling).to(x.dtype)
