"""Convert the grouped-query attention of a transformers model to M²LA, in place.

For each decoder layer:

1. **Partial RoPE.** RoPE cannot pass through a low-rank projection, so ``rope_dim``
   of the ``head_dim`` dimensions of every key head stay rotated and are cached as
   the decoupled rope key; the others lose their rotation. Which ones stay: the
   frequency pairs whose loss would hurt most, scored as the pair's contribution to
   the attention scores, ``mean_t Σ_heads ‖q_pair‖·‖k_pair‖`` (the 2-norm rule of
   MHA2MLA; from calibration text, or estimated from weight norms without it),
   times how far the pair rotates over the layer's attention span
   (``mean_Δ |2 sin(ωΔ/2)|``, Δ up to the sliding window or the maximum
   position): a slow pair hardly turns, so dropping its rotation costs little
   whatever its magnitude. On Gemma 3 270M at rope_dim 32 this halved the
   perplexity cost of partial RoPE compared with the 2-norm rule alone.
   With multimodal RoPE (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) each frequency pair
   turns with one position axis (time, height or width); each axis keeps a share
   of the ``rope_dim / 2`` pairs in proportion to the pairs it owns, the best by
   the same score within it, so image and video tokens keep their positions along
   all three axes.
   With one key/value group (or ``shared_rope=False``)
   each group keeps its own pairs; a shared key for several groups uses one pair
   set for all and a RoPE-compatible rank-one fit across groups
   (:func:`~mcr.m2la.factor.shared_rope_fit`).
2. **Latent.** The remaining key dimensions lose their RoPE; together with the
   values they are factored by one SVD (input-weighted, keys and values balanced)
   into ``kv_a`` (down, to the rank-``rank`` latent) and ``kv_b`` (up) projections.
   The energy kept is reported per layer.
3. **Key norm** (Qwen3, Gemma 3 and Qwen3-VL normalise each key head by its RMS
   before RoPE; the RMS is not linear in the latent, so it cannot be absorbed):

   * ``key_norm="scale"`` (default): the norm is applied exactly to the
     reconstructed key. Its per-token inverse RMS is computed when the token is
     written and cached, one value per key/value group, and multiplies that token's
     scores. Cost: ``num_kv_heads`` more values per token (1 for Gemma 3 270M, 8 for
     a Qwen3-8B-shaped model next to 1,024) and one ``kv_b`` up-projection of the new
     token's latent at write time.
   * ``key_norm="fold"``: the norm is replaced by a constant, its weight times the
     mean inverse RMS of the key (from calibration text, or estimated from the
     weights), folded into the projections. The cache is exactly
     ``rank + rope_dim × rope keys``; quality drops without fine-tuning.

The lossless setting for models without a key norm: ``rope_dim = head_dim`` (all
RoPE dimensions kept, one rope key per group) and ``rank = num_kv_heads ×
head_dim``. Then the latent just re-expresses the values and the logits equal the
original's to float precision. Compression comes from the lossy settings.
"""

from __future__ import annotations

import torch

from .attention import M2LAAttention
from .calibrate import CalibrationInputs, capture_inputs, check_calibration
from .errors import M2LAError
from .factor import (
    joint_low_rank,
    rope_contribution_from_data,
    rope_contribution_from_weights,
    rotation_sensitivity,
    shared_rope_fit,
    sqrt_second_moment,
    top_pairs,
    top_pairs_per_axis,
    weigh,
)
from .families import decoder_layers, model_family, multimodal_pair_axes, read_attention, rope_frequencies
from .outcome import ConversionReport, LayerReport
from .rope import pair_columns
from .spec import M2LASpec


def max_rank(hidden: int, groups: int, head_dim: int, rope_dim: int) -> int:
    """Largest latent rank: the joint key-nope + value matrix has ``groups × (2d − rope_dim)`` rows."""
    return min(hidden, groups * (2 * head_dim - rope_dim))


def check_config(config, rank: int, rope_dim: int) -> None:
    """Check ``rank``/``rope_dim`` against a model config alone (before loading any weight).

    :func:`convert_to_m2la` checks again against the loaded model.
    """
    from .families import FAMILIES

    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    types = (getattr(text, "model_type", None), getattr(config, "model_type", None))
    if not any(t in FAMILIES for t in types):
        known = ", ".join(sorted(FAMILIES))
        raise M2LAError(f"unknown model family {types[1]!r}; convert_to_m2la knows: {known}")
    if rope_dim < 2 or rope_dim % 2:
        raise M2LAError(f"rope_dim must be an even number of at least 2, got {rope_dim}")
    if rank < 1:
        raise M2LAError(f"rank must be at least 1, got {rank}")
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    groups = getattr(text, "num_key_value_heads", None) or heads
    if rope_dim > head_dim:
        raise M2LAError(f"rope_dim {rope_dim} is larger than the head dim {head_dim}")
    limit = max_rank(text.hidden_size, groups, head_dim, rope_dim)
    if rank > limit:
        raise M2LAError(
            f"rank {rank} is larger than the projection allows: at most {limit} for rope_dim {rope_dim} "
            f"(hidden {text.hidden_size}; {groups} key/value groups x (2 x {head_dim} - {rope_dim}) rows)"
        )


def _plan(model, rank, rope_dim, shared_rope, key_norm, calibration):
    """Check every argument against the model; touches no weight."""
    family = model_family(model)
    for name, value in (("rank", rank), ("rope_dim", rope_dim)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise M2LAError(f"{name} must be an integer, got {value!r}")
    if rope_dim < 2 or rope_dim % 2:
        raise M2LAError(f"rope_dim must be an even number of at least 2, got {rope_dim}")
    if rank < 1:
        raise M2LAError(f"rank must be at least 1, got {rank}")
    config = model.config.get_text_config(decoder=True)
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in (None, "sdpa", "eager"):
        raise M2LAError(f"attention implementation {impl!r} is not supported; load the model with 'sdpa' or 'eager'")
    sources = [read_attention(layer, family, config) for layer in decoder_layers(model)]
    for i, src in enumerate(sources):
        if rope_dim > src.head_dim:
            raise M2LAError(f"rope_dim {rope_dim} is larger than the head dim {src.head_dim} (layer {i})")
        limit = max_rank(src.hidden, src.groups, src.head_dim, rope_dim)
        if rank > limit:
            raise M2LAError(
                f"rank {rank} is larger than the projection allows: at most {limit} for rope_dim {rope_dim} "
                f"(hidden {src.hidden}; {src.groups} key/value groups x (2 x {src.head_dim} - {rope_dim}) rows) "
                f"in layer {i}"
            )
    has_key_norm = sources[0].k_norm_weight is not None
    if key_norm is None:
        key_norm = "scale" if has_key_norm else "none"
    if has_key_norm and key_norm not in ("scale", "fold"):
        raise M2LAError(f"this model normalises its keys; key_norm must be 'scale' or 'fold', got {key_norm!r}")
    if not has_key_norm and key_norm != "none":
        raise M2LAError(f"this model has no key norm; key_norm must be 'none', got {key_norm!r}")
    if shared_rope is None:
        shared_rope = sources[0].groups == 1
    calibration = check_calibration(calibration, config)
    if isinstance(calibration, CalibrationInputs):
        shapes = [x.shape[-1] for _, x in sorted(calibration.inputs.items())]
        if shapes != [src.hidden for src in sources]:
            raise M2LAError("calibration inputs were captured from a model with other layers or sizes")
    return family, config, sources, key_norm, bool(shared_rope), calibration


def capture_calibration(model, data, max_tokens: int = 2048) -> CalibrationInputs:
    """Run the (unconverted) model on calibration data and keep each attention layer's input.

    ``data``: token ids ``[batch, seq]``, a processor output (a mapping with
    ``input_ids``, and for a vision-language model its pixel values and grids) or a
    list of them (see :mod:`~mcr.m2la.calibrate`). Pass the result as
    ``calibration=`` to :func:`convert_to_m2la` to convert copies of one model at
    several settings without running it again.
    """
    if data is None:
        raise M2LAError("capture_calibration needs token ids or processor outputs")
    _, _, sources, _, _, data = _plan(model, 2, 2, None, None, data)
    return capture_inputs(model, [src.module for src in sources], data, max_tokens)


def convert_to_m2la(
    model,
    rank: int,
    rope_dim: int,
    *,
    shared_rope: bool | None = None,
    key_norm: str | None = None,
    calibration=None,
    max_calibration_tokens: int = 2048,
) -> ConversionReport:
    """Replace every decoder attention of ``model`` by an :class:`M2LAAttention`, in place.

    ``rank``: latent width per token and layer. ``rope_dim``: rotated dimensions kept
    per rope key (even, at most the head dim). ``shared_rope``: one rope key for all
    heads (default when the model has one key/value head) or one per key/value group.
    ``key_norm``: ``"scale"`` or ``"fold"`` for models with a per-head key norm (see
    the module docstring). ``calibration``: token ids ``[batch, seq]``, processor outputs
    with images or video (see :mod:`~mcr.m2la.calibrate`), or the result of
    :func:`capture_calibration`, used to weight
    the factorisation and choose the RoPE pairs; without it both come from the
    weights alone. All arguments are checked before any weight changes; errors are
    :class:`M2LAError`. Returns a per-layer report; the settings are also stored in
    ``model.config.m2la`` for :func:`~mcr.m2la.io.save_m2la`, and ``model.generate``
    then uses a :class:`~mcr.m2la.cache.LatentCache` unless given another cache.
    """
    family, config, sources, key_norm, shared, calibration = _plan(
        model, rank, rope_dim, shared_rope, key_norm, calibration
    )
    if calibration is not None and not isinstance(calibration, CalibrationInputs):
        calibration = capture_inputs(model, [src.module for src in sources], calibration, max_calibration_tokens)
    inputs = {} if calibration is None else calibration.inputs
    axes = multimodal_pair_axes(model, config)
    softcap = getattr(config, "attn_logit_softcapping", None)
    reports, specs = [], []
    for i, src in enumerate(sources):
        freq, span = rope_frequencies(model, config, i)
        new, report = _convert_layer(src, i, rank, rope_dim, shared, key_norm, inputs.get(i), softcap, freq, span, axes)
        src.layer.self_attn = new
        reports.append(report)
        specs.append(new.spec.to_dict())
    from .io import use_latent_cache_by_default

    use_latent_cache_by_default(model)
    model.config.m2la = {
        "rank": rank,
        "rope_dim": rope_dim,
        "shared_rope": shared,
        "key_norm": key_norm,
        "layers": specs,
    }
    return ConversionReport(
        family=family.name,
        rank=rank,
        rope_dim=rope_dim,
        shared_rope=shared,
        key_norm=key_norm,
        calibrated=calibration is not None,
        layers=reports,
        calibration_tokens=dict(calibration.kinds) if calibration is not None else {},
        mrope_section=None if axes is None else [int((axes == a).sum()) for a in range(3)],
    )


def _choose_rope_pairs(src, x, weights, k, shared, inv_freq, span, axes):
    """``(sqrt_cov, pairs)``: the input's square-root second moment (from calibration data, else
    the input norm's weights) and the ``k`` frequency pairs each RoPE key keeps ([n_rope, k])."""
    wq, bq, wk, bk, gq, gk = weights
    H, G, d, hid = src.heads, src.groups, src.head_dim, src.hidden
    if x is not None:
        sqrt_cov = sqrt_second_moment(x)
        contrib = rope_contribution_from_data(x, wq, bq, wk, bk, H, G, d, gq, gk, src.norm_eps)
    else:
        gamma = src.input_norm_weight
        sqrt_cov = torch.diag(gamma.cpu().abs()) if gamma is not None else torch.eye(hid, dtype=torch.float64)
        contrib = rope_contribution_from_weights(sqrt_cov, wq, wk, H, G, d, gq, gk)
    if inv_freq is not None and inv_freq.numel() == d // 2:  # weight by the damage of dropping each rotation
        contrib = contrib * rotation_sensitivity(inv_freq, span)[None, :]
    scores = contrib.sum(0, keepdim=True) if shared else contrib
    if axes is not None and axes.numel() == d // 2:  # multimodal RoPE: each position axis keeps its share
        return sqrt_cov, top_pairs_per_axis(scores, k, axes)
    return sqrt_cov, top_pairs(scores, k)


def _copy_into(module, weights: dict) -> None:
    """Copy each tensor of ``weights`` (dotted parameter or buffer names; None: not used) into ``module``."""
    state = dict(module.named_parameters()) | dict(module.named_buffers())
    with torch.no_grad():
        for name, value in weights.items():
            if value is not None:
                state[name].copy_(value)


def w64(linear):
    return linear.weight.detach().double().cpu()


def b64(linear, size):
    bias = linear.bias
    return None if bias is None else bias.detach().double().cpu().reshape(size)


def _grouped_keys(wk, bk, gk, G, d, x, sqrt_cov, eps, fold):
    """The key rows and biases per KV group ([G, d, hidden], [G, d]); with ``fold``, the key norm's
    mean scale times its weight is folded into them (a constant in place of the norm)."""
    hid = wk.shape[1]
    wk_g = wk.view(G, d, hid).clone()
    bk_g = torch.zeros(G, d, dtype=torch.float64) if bk is None else bk.view(G, d).clone()
    if not fold:
        return wk_g, bk_g
    if x is not None:
        k_pre = (x @ wk.T + (0 if bk is None else bk)).view(-1, G, d)
        mean_inv = torch.rsqrt(k_pre.pow(2).mean(-1) + eps).mean(0)
    else:
        energy = weigh(wk_g, sqrt_cov).pow(2).sum((1, 2)) + bk_g.pow(2).sum(1)
        mean_inv = torch.rsqrt(energy / d + eps)
    factor = mean_inv[:, None] * gk[None, :]
    return wk_g * factor[..., None], bk_g * factor


def _rope_keys(wk_g, bk_g, gk, rope_cols, H, shared, key_norm, sqrt_cov, has_bias):
    """The cached RoPE key rows and bias, and what the query side needs to use them:
    ``(rows, bias, mix, gain, k_rope_norm_weight, share_energy)``. One key shared by all groups is
    fitted by :func:`shared_rope_fit`, each group's own rotation moved into its queries (``mix``)."""
    G, hid = wk_g.shape[0], wk_g.shape[2]
    rope_dim = rope_cols[0].numel()
    k, per_head = rope_dim // 2, H // G
    rope_rows = torch.stack([wk_g[g][rope_cols[g]] for g in range(G)])  # [G, 2k, hid]
    rope_bias = torch.stack([bk_g[g][rope_cols[g]] for g in range(G)])  # [G, 2k]
    if not (shared and G > 1):
        k_rope_w = torch.stack([gk[rope_cols[g]] for g in range(G)]) if key_norm == "scale" else None
        return rope_rows.reshape(G * rope_dim, hid), rope_bias.reshape(-1), None, None, k_rope_w, None
    rows, sbias, coeff, share_energy = shared_rope_fit(rope_rows, rope_bias if has_bias else None, sqrt_cov)
    w, gain, k_rope_w = coeff, None, None
    if key_norm == "scale":
        gain = coeff.abs().repeat(1, 2)  # [G, 2k]
        g_rope = gk[rope_cols[0]]
        w = coeff * ((g_rope[:k] + g_rope[k:]) / 2)  # pair-mean of the norm weight, moved to the query
        k_rope_w = torch.ones(1, rope_dim, dtype=torch.float64)
    conj = w.conj()
    mix = torch.stack([torch.stack((conj[h // per_head].real, conj[h // per_head].imag)) for h in range(H)])
    return rows, sbias, mix, gain, k_rope_w, share_energy


def _convert_layer(src, idx, rank, rope_dim, shared, key_norm, x, softcap, inv_freq=None, span=4096, axes=None):
    attn = src.module
    device, dtype = attn.q_proj.weight.device, attn.q_proj.weight.dtype
    H, G, d, hid = src.heads, src.groups, src.head_dim, src.hidden
    k = rope_dim // 2

    wq, wk, wv = w64(attn.q_proj), w64(attn.k_proj), w64(attn.v_proj)
    bq, bk, bv = b64(attn.q_proj, -1), b64(attn.k_proj, -1), b64(attn.v_proj, -1)
    has_bias = any(b is not None for b in (bq, bk, bv))
    gq, gk = src.q_norm_weight, src.k_norm_weight
    gq = None if gq is None else gq.cpu()
    gk = None if gk is None else gk.cpu()
    eps = src.norm_eps

    sqrt_cov, pairs = _choose_rope_pairs(src, x, (wq, bq, wk, bk, gq, gk), k, shared, inv_freq, span, axes)
    group_pairs = pairs.expand(G, k)
    rope_cols = [pair_columns(group_pairs[g], d) for g in range(G)]
    nope_cols = [torch.tensor(sorted(set(range(d)) - set(c.tolist())), dtype=torch.long) for c in rope_cols]

    wk_g, bk_g = _grouped_keys(wk, bk, gk, G, d, x, sqrt_cov, eps, fold=key_norm == "fold")

    per_head = H // G
    perms = [torch.cat((nope_cols[g], rope_cols[g])) for g in range(G)]
    wq_h = wq.view(H, d, hid)
    wq_new = torch.stack([wq_h[h][perms[h // per_head]] for h in range(H)]).reshape(H * d, hid)
    bq_new = None
    if has_bias:
        bq_h = torch.zeros(H, d, dtype=torch.float64) if bq is None else bq.view(H, d)
        bq_new = torch.stack([bq_h[h][perms[h // per_head]] for h in range(H)]).reshape(-1)
    q_norm_w = None if gq is None else torch.stack([gq[perms[h // per_head]] for h in range(H)])

    rope = _rope_keys(wk_g, bk_g, gk, rope_cols, H, shared, key_norm, sqrt_cov, has_bias)
    kv_rope_rows, kv_rope_bias, mix, gain, k_rope_w, share_energy = rope

    nope = d - rope_dim
    wv_g = wv.view(G, d, hid)
    bv_g = torch.zeros(G, d, dtype=torch.float64) if bv is None else bv.view(G, d)
    joint = torch.cat([torch.cat((wk_g[g][nope_cols[g]], wv_g[g])) for g in range(G)])
    joint_b = torch.cat([torch.cat((bk_g[g][nope_cols[g]], bv_g[g])) for g in range(G)]) if has_bias else None
    key_rows = torch.cat([torch.cat((torch.ones(nope), torch.zeros(d))) for _ in range(G)]).bool()
    fac = joint_low_rank(joint, joint_b, key_rows, rank, sqrt_cov)

    spec = M2LASpec(
        hidden_size=hid,
        num_heads=H,
        num_kv_heads=G,
        head_dim=d,
        v_head_dim=d,
        rank=rank,
        rope_dim=rope_dim,
        shared_rope=shared,
        softmax_scale=src.scaling,
        key_norm=key_norm,
        query_norm=gq is not None,
        norm_eps=eps,
        qkv_bias=has_bias,
        o_bias=attn.o_proj.bias is not None,
        rope_mix=mix is not None,
        softcap=softcap,
        sliding_window=src.sliding_window,
    )
    new = M2LAAttention(spec, layer_idx=getattr(attn, "layer_idx", idx))
    k_nope_w = torch.stack([gk[nope_cols[g]] for g in range(G)]) if key_norm == "scale" else None
    weights = {
        "q_proj.weight": wq_new,
        "kv_a_proj_with_mqa.weight": torch.cat((fac.down, kv_rope_rows)),
        "kv_b_proj.weight": fac.up,
        "o_proj.weight": attn.o_proj.weight.detach(),
        "q_proj.bias": bq_new if has_bias else None,
        "kv_a_proj_with_mqa.bias": torch.cat((fac.down_bias, kv_rope_bias)) if has_bias else None,
        "kv_b_proj.bias": fac.up_bias if has_bias else None,
        "o_proj.bias": attn.o_proj.bias.detach() if spec.o_bias else None,
        "q_norm.weight": q_norm_w,
        "rope_pairs": pairs,
        "k_nope_norm_weight": k_nope_w,
        "k_rope_norm_weight": k_rope_w if key_norm == "scale" else None,
        "rope_key_gain": gain if key_norm == "scale" else None,
        "q_rope_mix": mix,
    }
    _copy_into(new, weights)
    new.to(device=device, dtype=dtype)
    new.train(attn.training)
    report = LayerReport(
        layer=idx,
        rope_pairs=pairs.tolist(),
        energy=fac.energy,
        key_energy=fac.key_energy,
        value_energy=fac.value_energy,
        rope_share_energy=share_energy,
        original_values_per_token=2 * G * d,
        values_per_token=spec.cached_values_per_token,
        rope_axes=None if axes is None else [int((axes[pairs[0]] == a).sum()) for a in range(3)],
    )
    return new, report
