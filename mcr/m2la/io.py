"""Saving and loading converted models (safetensors weights + config.json).

A saved folder holds ``config.json`` (the source model's config plus an ``m2la``
entry with each layer's :class:`~mcr.m2la.spec.M2LASpec`), ``model.safetensors``
and, when given, the tokenizer files. :func:`load_m2la` rebuilds the model from its
config, swaps in the latent attention layers and loads the weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from .errors import M2LAError

WEIGHTS_NAME = "model.safetensors"


def is_m2la_checkpoint(path) -> bool:
    """Whether ``path`` is a folder saved by :func:`save_m2la`."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return "m2la" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


def save_m2la(model, out_dir, tokenizer=None) -> Path:
    """Write a converted model to ``out_dir``; returns the folder."""
    from safetensors.torch import save_model

    if getattr(model.config, "m2la", None) is None:
        raise M2LAError("the model is not converted (no config.m2la); run convert_to_m2la first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    for name in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, name):
            delattr(config, name)
    config.save_pretrained(out)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config.save_pretrained(out)
    save_model(model, str(out / WEIGHTS_NAME), metadata={"format": "pt", "m2la": "1"})
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def _model_class(config):
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    return transformers.AutoModelForCausalLM


def load_m2la(path, dtype=None, device=None, latent_cache_by_default: bool = True):
    """Load a folder written by :func:`save_m2la`; returns the model in eval mode.

    ``dtype`` is a torch dtype or its name (``"bfloat16"``); default: as saved.
    With ``latent_cache_by_default`` a plain ``model.generate(...)`` uses a
    :class:`~mcr.m2la.cache.LatentCache` (see :func:`use_latent_cache_by_default`).
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_model
    from transformers import AutoConfig

    from .attention import M2LAAttention
    from .families import decoder_layers
    from .spec import M2LASpec

    folder = Path(path)
    weights = folder / WEIGHTS_NAME
    if not (folder / "config.json").is_file() or not weights.is_file():
        raise M2LAError(f"{folder} is not a saved M2LA model (needs config.json and {WEIGHTS_NAME})")
    if not is_m2la_checkpoint(folder):
        raise M2LAError(f"{folder}/config.json has no 'm2la' entry; it is not a converted model")
    config = AutoConfig.from_pretrained(folder)
    settings = config.m2la
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise M2LAError(f"unknown dtype {dtype!r}")
    if dtype is None:
        with safe_open(str(weights), framework="pt") as f:
            first = next((f.get_slice(k).get_dtype() for k in f.keys() if "proj" in k), "F32")
        dtype = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}.get(first, torch.float32)
    cls = _model_class(config)
    build = cls.from_config if cls.__name__.startswith("Auto") else cls._from_config
    model = build(config, dtype=dtype)
    layers = decoder_layers(model)
    if len(layers) != len(settings["layers"]):
        raise M2LAError(f"config has {len(settings['layers'])} M2LA layers but the model has {len(layers)}")
    for i, (layer, spec) in enumerate(zip(layers, settings["layers"])):
        idx = getattr(layer.self_attn, "layer_idx", i)
        layer.self_attn = M2LAAttention(M2LASpec.from_dict(spec), layer_idx=idx).to(dtype)
    missing, unexpected = load_model(model, str(weights), strict=False)
    if missing or unexpected:
        raise M2LAError(
            f"weights do not match the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    if device is not None:
        model.to(device)
    model.eval()
    if latent_cache_by_default:
        use_latent_cache_by_default(model)
    return model


def use_latent_cache_by_default(model) -> None:
    """Make ``model.generate`` create a :class:`LatentCache` when no cache is passed.

    Without it, ``generate`` builds a ``DynamicCache``, into which the latent layers
    write materialised keys and values (correct, but with no memory saving). An
    explicit ``past_key_values`` or ``use_cache=False`` is left alone.
    """
    from transformers.cache_utils import DynamicCache

    from .cache import LatentCache

    original = model._prepare_cache_for_generation

    def prepare(generation_config, model_kwargs, *args, **kwargs):
        names = ("cache", "past_key_values")  # transformers 5.24 renamed ``past_key_values`` to ``cache``
        given = any(model_kwargs.get(n) is not None for n in names)
        result = original(generation_config, model_kwargs, *args, **kwargs)
        for name in names:
            made = model_kwargs.get(name)
            if not given and type(made) is DynamicCache and made.get_seq_length() == 0:
                model_kwargs[name] = LatentCache(config=model.config)
        return result

    model._prepare_cache_for_generation = prepare
