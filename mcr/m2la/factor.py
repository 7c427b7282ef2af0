"""The linear algebra of converting one grouped-query attention layer (float64).

Notation: ``hid`` is the hidden size, ``d`` the head dim, ``g`` the number of
key/value groups. ``sqrt_cov`` is a square root of the second moment of the
attention input (``E[x xᵀ] = S Sᵀ``): from calibration activations when given,
otherwise ``diag(γ)`` with ``γ`` the weight of the layer's input RMS norm (the
input then has unit RMS before that weight, and is treated as isotropic).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def sqrt_second_moment(x: torch.Tensor, shrink: float = 0.05) -> torch.Tensor:
    """Symmetric square root of ``E[x xᵀ]`` for activations ``x [N, hid]``.

    The estimate is shrunk towards its diagonal by ``shrink``: a calibration text
    shorter than a few times the hidden size leaves directions unseen, and an
    unregularised factorisation would spend nothing on them.
    """
    cov = x.T @ x / max(x.shape[0], 1)
    cov = (1 - shrink) * cov + shrink * torch.diag(torch.diagonal(cov))
    evals, evecs = torch.linalg.eigh(cov)
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def weigh(w: torch.Tensor, sqrt_cov: torch.Tensor) -> torch.Tensor:
    """``w @ sqrt_cov``; an elementwise product when ``sqrt_cov`` is diagonal (the weights-only
    case), which at a hidden size of 4096 saves a dense cubic product per projection."""
    diag = torch.diagonal(sqrt_cov)
    if torch.count_nonzero(sqrt_cov) == torch.count_nonzero(diag):
        return w * diag.to(w.dtype)
    return w @ sqrt_cov.to(w.dtype)


def pair_norms(y: torch.Tensor, d: int) -> torch.Tensor:
    """Norm of each rotary pair of head vectors ``y [..., d]`` -> ``[..., d/2]``."""
    half = d // 2
    return torch.sqrt(y[..., :half] ** 2 + y[..., half:] ** 2)


def rms_normalize(y: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    if weight is None:
        return y
    return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_contribution_from_data(x, wq, bq, wk, bk, heads, groups, d, q_weight, k_weight, eps) -> torch.Tensor:
    """Contribution ``[groups, d/2]`` of each frequency pair to the attention scores.

    The MHA2MLA 2-norm rule: mean over tokens of ``Σ_heads ‖q_pair‖·‖k_pair‖`` with
    the queries and keys as attention sees them (after any q/k norm).
    """
    n = x.shape[0]
    q = (x @ wq.T + (0 if bq is None else bq)).view(n, heads, d)
    k = (x @ wk.T + (0 if bk is None else bk)).view(n, groups, d)
    q = rms_normalize(q, q_weight, eps)
    k = rms_normalize(k, k_weight, eps)
    qn = pair_norms(q, d).view(n, groups, heads // groups, d // 2)
    kn = pair_norms(k, d).view(n, groups, 1, d // 2)
    return (qn * kn).sum(2).mean(0)


def rope_contribution_from_weights(sqrt_cov, wq, wk, heads, groups, d, q_weight, k_weight) -> torch.Tensor:
    """Data-free stand-in for :func:`rope_contribution_from_data` from weight norms."""

    def energy(w, count, weight):
        w = weigh(w, sqrt_cov).view(count, d, -1)
        rows = w.pow(2).sum(-1)  # [count, d]
        if weight is not None:  # a norm rescales each head to RMS 1, then applies its weight
            rows = rows / rows.sum(-1, keepdim=True) * d * weight.pow(2)
        half = d // 2
        return (rows[:, :half] + rows[:, half:]).sqrt()  # [count, d/2]

    eq = energy(wq, heads, q_weight).view(groups, heads // groups, d // 2)
    ek = energy(wk, groups, k_weight).view(groups, 1, d // 2)
    return (eq * ek).sum(1)


def rotation_sensitivity(inv_freq: torch.Tensor, span: int, samples: int = 2048) -> torch.Tensor:
    """How much removing RoPE from a frequency pair changes its scores, per pair.

    Dropping the rotation of pair ``i`` replaces ``e^{iωΔ}`` by 1 for a query-key
    distance ``Δ``; the error is ``|2 sin(ωΔ/2)|`` times the pair's magnitude. This
    is its mean over distances up to ``span``: near 0 for frequencies that barely
    turn within the span, about 4/π for fast ones.
    """
    delta = torch.linspace(0, float(span), samples, dtype=torch.float64)
    return (2 * torch.sin(inv_freq.double()[:, None] * delta[None, :] / 2)).abs().mean(-1)


def top_pairs(contribution: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` largest contributions per row, ascending."""
    return contribution.topk(count, dim=-1).indices.sort(dim=-1).values


def axis_quota(axes: torch.Tensor, count: int) -> list[int]:
    """How many of ``count`` kept pairs each position axis gets: in proportion to the pairs it
    owns (largest remainder), never more than it owns."""
    owned = torch.bincount(axes, minlength=3).tolist()
    total = sum(owned)
    exact = [count * n / total for n in owned]
    quota = [min(int(e), n) for e, n in zip(exact, owned)]
    order = sorted(range(len(owned)), key=lambda a: exact[a] - int(exact[a]), reverse=True)
    while sum(quota) < count:
        for a in order:
            if sum(quota) < count and quota[a] < owned[a]:
                quota[a] += 1
    return quota


def top_pairs_per_axis(contribution: torch.Tensor, count: int, axes: torch.Tensor) -> torch.Tensor:
    """Like :func:`top_pairs`, with each position axis of multimodal RoPE (``axes[i]`` is pair
    ``i``'s: 0 time, 1 height, 2 width) keeping its share (:func:`axis_quota`), so image and
    video tokens keep rotations along every axis. Ascending per row."""
    quota = axis_quota(axes, count)
    rows = []
    for row in contribution:
        chosen = []
        for a, q in enumerate(quota):
            if q:
                own = (axes == a).nonzero().flatten()
                chosen.append(own[row[own].topk(q).indices])
        rows.append(torch.cat(chosen).sort().values)
    return torch.stack(rows)


def left_singular(m: torch.Tensor):
    """Left singular vectors and singular values of ``m``, largest first. A wide matrix goes
    through the eigenvectors of ``m mᵀ`` (rows x rows): at 1,024 x 4,096 several times faster
    than an SVD, and float64 keeps the small singular values well enough for a truncation."""
    if m.shape[0] > m.shape[1]:
        u, sv, _ = torch.linalg.svd(m, full_matrices=False)
        return u, sv
    evals, evecs = torch.linalg.eigh(m @ m.T)
    return evecs.flip(-1), evals.flip(-1).clamp_min(0).sqrt()


@dataclass
class JointFactors:
    down: torch.Tensor  # [rank, hid]
    down_bias: torch.Tensor | None  # [rank]
    up: torch.Tensor  # [rows, rank]
    up_bias: torch.Tensor | None  # [rows]
    energy: float  # fraction of the (weighted) energy kept
    key_energy: float
    value_energy: float


def joint_low_rank(
    w: torch.Tensor,
    b: torch.Tensor | None,
    key_rows: torch.Tensor,
    rank: int,
    sqrt_cov: torch.Tensor,
    row_weight: torch.Tensor | None = None,
) -> JointFactors:
    """Factor ``y = w x + b`` (key-nope rows and value rows together) through a rank-``rank`` latent.

    Key rows are rescaled so that keys and values carry equal energy before the SVD
    (their scales are unrelated, and the larger would otherwise take the whole
    latent). ``row_weight`` (invertible ``[rows, rows]``, optional) measures the error
    in another metric; weighting keys by their queries and values by the output
    projection was tried on Gemma 3 270M and did no better than plain input
    weighting, so the converter does not use it. With ``T`` the row weighting and
    ``U`` the leading left singular vectors of ``T w S``: latent ``c = Uᵀ T (w x + b)``,
    reconstruction ``T⁻¹ U c + (b − T⁻¹ U Uᵀ T b)``. At full rank this is exact.
    """
    rows = w.shape[0]
    t = torch.eye(rows, dtype=w.dtype) if row_weight is None else row_weight
    ws = weigh(t @ w, sqrt_cov)
    k_energy = ws[key_rows].pow(2).sum()
    v_energy = ws[~key_rows].pow(2).sum()
    if key_rows.any() and k_energy > 0 and v_energy > 0:
        balance = torch.ones(rows, dtype=w.dtype)
        balance[key_rows] = torch.sqrt(v_energy / k_energy)
        t = balance[:, None] * t
    m = weigh(t @ w, sqrt_cov)
    u, sv = left_singular(m)
    u = u[:, :rank]
    down = u.T @ t @ w
    up = torch.linalg.solve(t, u)
    down_bias = up_bias = None
    if b is not None:
        down_bias = u.T @ (t @ b)
        up_bias = b - up @ down_bias
    total = sv.pow(2).sum().clamp_min(1e-300)
    residual = (m - u @ (u.T @ m)).pow(2)

    def part(mask):
        full = m[mask].pow(2).sum()
        return 1.0 if full <= 0 else float(1 - residual[mask].sum() / full)

    return JointFactors(
        down=down,
        down_bias=down_bias,
        up=up,
        up_bias=up_bias,
        energy=float(sv[:rank].pow(2).sum() / total),
        key_energy=part(key_rows) if key_rows.any() else 1.0,
        value_energy=part(~key_rows),
    )


def shared_rope_fit(rope_rows: torch.Tensor, rope_bias: torch.Tensor | None, sqrt_cov: torch.Tensor):
    """One rope key for several groups, exactly compatible with RoPE.

    ``rope_rows [groups, 2k, hid]`` hold each group's rope rows in rotate-half layout
    (pair ``i`` = rows ``i`` and ``i + k``). Read pair ``i`` as a complex row
    ``a + i·b``; a complex scalar per group commutes with every rotation, so the best
    rank-one fit ``row_g ≈ c_g · z`` over groups (a complex SVD per pair, in the
    input-weighted metric) gives a shared key ``z`` and per-group multipliers ``c_g``
    that the queries absorb. Returns ``(shared_rows [2k, hid], shared_bias [2k] | None,
    coeff [groups, k] complex, energy kept)``.
    """
    groups, width, hid = rope_rows.shape
    k = width // 2
    z_rows = torch.complex(rope_rows[:, :k], rope_rows[:, k:])  # [groups, k, hid]
    weighted = weigh(z_rows, sqrt_cov)
    coeff = torch.empty(groups, k, dtype=z_rows.dtype)
    shared = torch.empty(k, hid, dtype=z_rows.dtype)
    kept = total = 0.0
    for i in range(k):
        m = weighted[:, i, :]  # [groups, hid]
        u, sv, _ = torch.linalg.svd(m, full_matrices=False)
        c = u[:, 0] * sv[0]
        coeff[:, i] = c
        # least squares for z on the unweighted rows, given the coefficients
        shared[i] = (c.conj()[:, None] * z_rows[:, i, :]).sum(0) / c.abs().pow(2).sum().clamp_min(1e-300)
        kept += float(sv[0] ** 2)
        total += float(sv.pow(2).sum())
    shared_bias = None
    if rope_bias is not None:
        zb = torch.complex(rope_bias[:, :k], rope_bias[:, k:])  # [groups, k]
        zb = (coeff.conj() * zb).sum(0) / coeff.abs().pow(2).sum(0).clamp_min(1e-300)
        shared_bias = torch.cat((zb.real, zb.imag))
    shared_rows = torch.cat((shared.real, shared.imag), dim=0)
    return shared_rows, shared_bias, coeff, (kept / total if total > 0 else 1.0)
