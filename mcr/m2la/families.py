"""Which transformers models the converter knows, and how to read their attention."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import M2LAError


@dataclass(frozen=True)
class Family:
    name: str
    norm_offset: float  # RMS norm weight used as (offset + weight): 1.0 for Gemma, 0.0 otherwise


_LLAMA = Family("llama", 0.0)
_QWEN = Family("qwen", 0.0)
_GEMMA = Family("gemma", 1.0)

FAMILIES: dict[str, Family] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _QWEN,
    "qwen2_vl": _QWEN,
    "qwen2_vl_text": _QWEN,
    "qwen2_5_vl": _QWEN,
    "qwen2_5_vl_text": _QWEN,
    "qwen3": _QWEN,
    "qwen3_vl": _QWEN,
    "qwen3_vl_text": _QWEN,
    "gemma": _GEMMA,
    "gemma2": _GEMMA,
    "gemma3": _GEMMA,
    "gemma3_text": _GEMMA,
}


def model_family(model) -> Family:
    config = getattr(model, "config", None)
    if config is None:
        raise M2LAError(f"expected a transformers model with a .config, got {type(model).__name__}")
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    for model_type in (getattr(text, "model_type", None), getattr(config, "model_type", None)):
        if model_type in FAMILIES:
            return FAMILIES[model_type]
    known = ", ".join(sorted(FAMILIES))
    raise M2LAError(f"unknown model family {getattr(config, 'model_type', None)!r}; convert_to_m2la knows: {known}")


def decoder_layers(model) -> list:
    """The decoder layers of the language model (each with ``self_attn``)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise M2LAError(f"cannot find the decoder layers of {type(model).__name__}")
    return list(layers)


@dataclass
class SourceAttention:
    """Shapes and tensors read from one grouped-query attention module."""

    module: object
    layer: object
    hidden: int
    heads: int
    groups: int
    head_dim: int
    scaling: float
    sliding_window: int | None
    q_norm_weight: object  # tensor or None (effective weight, offset added)
    k_norm_weight: object
    norm_eps: float
    input_norm_weight: object  # effective weight of the layer's input RMS norm, or None


def rope_frequencies(model, config, layer_idx: int):
    """Inverse RoPE frequencies of a layer (``[head_dim/2]``) and the span of distances it attends over."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    rotary = getattr(decoder, "rotary_emb", None)
    layer_types = getattr(config, "layer_types", None) or []
    layer_type = layer_types[layer_idx] if layer_idx < len(layer_types) else None
    freq = getattr(rotary, f"{layer_type}_inv_freq", None) if layer_type else None
    if freq is None:
        freq = getattr(rotary, "inv_freq", None)
    span = getattr(config, "max_position_embeddings", None) or 4096
    if layer_type == "sliding_attention" and getattr(config, "sliding_window", None):
        span = min(span, config.sliding_window)
    return (None if freq is None else freq.detach().double().cpu()), span


def read_attention(layer, family: Family, config) -> SourceAttention:
    attn = getattr(layer, "self_attn", None)
    if attn is None:
        raise M2LAError(f"decoder layer {type(layer).__name__} has no self_attn")
    if type(attn).__name__ == "M2LAAttention":
        raise M2LAError("the model is already converted to M2LA")
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        if not hasattr(attn, name):
            raise M2LAError(f"{type(attn).__name__} has no {name}; not a grouped-query attention this converter knows")
    head_dim = getattr(attn, "head_dim", None) or config.hidden_size // config.num_attention_heads
    hidden = attn.q_proj.in_features
    heads = attn.q_proj.out_features // head_dim
    groups = attn.k_proj.out_features // head_dim
    if heads * head_dim != attn.q_proj.out_features or groups * head_dim != attn.k_proj.out_features:
        raise M2LAError(f"{type(attn).__name__}: projection sizes do not match head_dim {head_dim}")
    if attn.v_proj.out_features != groups * head_dim:
        raise M2LAError(f"{type(attn).__name__}: value head size differs from key head size; not supported")

    def norm_weight(module):
        if module is None:
            return None
        weight = getattr(module, "weight", None)
        if weight is None:
            raise M2LAError(f"norm {type(module).__name__} has no weight")
        return weight.detach().double() + family.norm_offset

    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    eps = None
    for module in (k_norm, q_norm):
        if module is not None:
            eps = getattr(module, "variance_epsilon", None) or getattr(module, "eps", None)
            break
    input_norm = getattr(layer, "input_layernorm", None)
    return SourceAttention(
        module=attn,
        layer=layer,
        hidden=hidden,
        heads=heads,
        groups=groups,
        head_dim=head_dim,
        scaling=float(getattr(attn, "scaling", head_dim**-0.5)),
        sliding_window=getattr(attn, "sliding_window", None),
        q_norm_weight=norm_weight(q_norm),
        k_norm_weight=norm_weight(k_norm),
        norm_eps=float(eps if eps is not None else getattr(config, "rms_norm_eps", 1e-6)),
        input_norm_weight=norm_weight(input_norm) if input_norm is not None else None,
    )


def multimodal_pair_axes(model, config):
    """For multimodal RoPE (Qwen2-VL, Qwen2.5-VL: contiguous sections; Qwen3-VL: interleaved), the
    position axis of each frequency pair (``[head_dim/2]``: 0 time, 1 height, 2 width); else None."""
    from .rope import pair_axes

    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    rotary = getattr(decoder, "rotary_emb", None)
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    section = getattr(rotary, "mrope_section", None) or params.get("mrope_section")
    if not section:
        return None
    section = [int(n) for n in section]
    model_type = str(getattr(config, "model_type", ""))
    interleaved = bool(params.get("mrope_interleaved")) or model_type.startswith("qwen3_vl")
    return pair_axes(section, interleaved)
