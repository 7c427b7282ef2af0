"""M²LA: latent-attention KV cache and conversion of grouped-query models.

Public API (imported lazily, so ``import mcr.m2la`` does not load torch):

* :class:`M2LAAttention`, :class:`M2LASpec` - the latent attention layer and its shape.
* :class:`LatentCache` - transformers ``Cache`` holding only latent states.
* :func:`convert_to_m2la` - convert a Llama/Mistral/Qwen2/Qwen3/Gemma-family model in place,
  or the language model of a Qwen2-VL/Qwen2.5-VL/Qwen3-VL (the vision tower is left as it is).
* :func:`capture_calibration`, :func:`processor_batches` - calibration on text, images and video.
* :func:`save_m2la`, :func:`load_m2la`, :func:`is_m2la_checkpoint` - persistence.
* :class:`RotaryEmbedding` - standard and Qwen-VL multimodal RoPE.
* :class:`M2LAError` - every invalid input raises it.
"""

from __future__ import annotations

from mcr.lazy import lazy_exports

from .errors import M2LAError

__getattr__ = lazy_exports(
    __name__,
    {
        "M2LAAttention": ".attention",
        "M2LASpec": ".spec",
        "LatentCache": ".cache",
        "LatentLayer": ".cache",
        "LatentSlidingLayer": ".cache",
        "cache_argument": ".cache",
        "convert_to_m2la": ".convert",
        "max_rank": ".convert",
        "capture_calibration": ".convert",
        "CalibrationInputs": ".calibrate",
        "processor_batches": ".calibrate",
        "ConversionReport": ".outcome",
        "LayerReport": ".outcome",
        "save_m2la": ".io",
        "load_m2la": ".io",
        "is_m2la_checkpoint": ".io",
        "use_latent_cache_by_default": ".io",
        "RotaryEmbedding": ".rope",
    },
)

__all__ = [
    "CalibrationInputs",
    "ConversionReport",
    "LatentCache",
    "LatentLayer",
    "LatentSlidingLayer",
    "LayerReport",
    "M2LAAttention",
    "M2LAError",
    "M2LASpec",
    "RotaryEmbedding",
    "cache_argument",
    "capture_calibration",
    "convert_to_m2la",
    "is_m2la_checkpoint",
    "load_m2la",
    "max_rank",
    "processor_batches",
    "save_m2la",
    "use_latent_cache_by_default",
]


def __dir__():
    return sorted(__all__)
