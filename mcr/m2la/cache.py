"""``LatentCache``: a transformers ``Cache`` that stores only latent attention states.

Per layer and token it keeps the latent vector (``rank`` values), the rotated RoPE
key(s) (``rope_dim`` values each) and, for layers that keep a source model's key
norm exactly, one inverse-RMS value per key/value group. Storage is preallocated
and grows in chunks of ``chunk_size`` tokens, so a decode step appends in place
instead of concatenating the whole history. Sliding-window layers keep only the
last ``sliding_window - 1`` tokens, as transformers' own sliding layers do.

Use it like any cache::

    cache = LatentCache(config=model.config)
    model.generate(**inputs, **{cache_argument(model): cache})   # "cache" from transformers 5.24 on
    cache.nbytes()        # bytes held by the cached tokens
"""

from __future__ import annotations

import math

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from .errors import M2LAError


def cache_argument(model, method: str = "generate") -> str:
    """The name ``model.generate`` (or ``forward``) takes a cache by: ``cache`` (transformers
    5.24 and later) or ``past_key_values`` (earlier)."""
    import inspect

    import transformers

    params = inspect.signature(getattr(type(model), method)).parameters
    if "cache" in params or "past_key_values" in params:
        return "cache" if "cache" in params else "past_key_values"
    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])  # generate takes it in **kwargs
    return "cache" if (major, minor) >= (5, 24) else "past_key_values"


def _not_latent(layer_idx) -> M2LAError:
    return M2LAError(
        f"LatentCache holds latent attention states only; layer {layer_idx} called update() with full keys and "
        "values (is the model converted with convert_to_m2la?)"
    )


class LatentLayer(CacheLayerMixin):
    """Latent states of one full-attention layer."""

    is_sliding = False
    is_croppable = True
    is_compileable = False

    def __init__(self, chunk_size: int = 256, **kwargs):
        super().__init__()
        if chunk_size < 1:
            raise M2LAError(f"chunk_size must be at least 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.latent = self.rope = self.scale = None
        self.length = 0  # tokens held in the buffers
        self.capacity = 0

    # -- storage
    def lazy_initialization(self, latent: torch.Tensor, rope: torch.Tensor, scale: torch.Tensor | None = None) -> None:
        self.dtype, self.device = latent.dtype, latent.device
        b = latent.shape[0]
        self.latent = latent.new_empty(b, 0, latent.shape[-1])
        self.rope = rope.new_empty(b, rope.shape[1], 0, rope.shape[-1])
        self.scale = None if scale is None else scale.new_empty(b, scale.shape[1], 0)
        self.is_initialized = True

    def _grow(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        cap = math.ceil(needed / self.chunk_size) * self.chunk_size
        b = self.latent.shape[0]

        def grown(old, shape, dim):
            new = old.new_empty(shape)
            new.narrow(dim, 0, self.length).copy_(old.narrow(dim, 0, self.length))
            return new

        self.latent = grown(self.latent, (b, cap, self.latent.shape[-1]), 1)
        self.rope = grown(self.rope, (b, self.rope.shape[1], cap, self.rope.shape[-1]), 2)
        if self.scale is not None:
            self.scale = grown(self.scale, (b, self.scale.shape[1], cap), 2)
        self.capacity = cap

    def reserve(self, tokens: int) -> None:
        """Grow the buffers to hold ``tokens`` tokens, so appends up to there never reallocate
        (the layer must have been written once)."""
        if not self.is_initialized:
            raise M2LAError("reserve() needs a layer that has been written once")
        self._grow(tokens)

    def _views(self):
        n = self.length
        scale = None if self.scale is None else self.scale[:, :, :n]
        return self.latent[:, :n], self.rope[:, :, :n], scale

    def update_latent(self, latent, rope, scale=None):
        """Append new tokens (``latent [b, n, r]``, ``rope [b, k, n, d]``, ``scale [b, g, n]``)
        and return views of everything this layer attends to."""
        if not self.is_initialized:
            self.lazy_initialization(latent, rope, scale)
        if (scale is None) != (self.scale is None):
            raise M2LAError("key scales must be given on every update of a layer or on none")
        n = latent.shape[1]
        self._grow(self.length + n)
        end = self.length + n
        self.latent[:, self.length : end] = latent
        self.rope[:, :, self.length : end] = rope
        if scale is not None:
            self.scale[:, :, self.length : end] = scale
        self.length = end
        return self._views()

    def update(self, key_states, value_states, *args, **kwargs):
        raise _not_latent(None)

    # -- sizes
    def get_seq_length(self) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def values_per_token(self) -> int:
        if not self.is_initialized:
            return 0
        scales = 0 if self.scale is None else self.scale.shape[1]
        return self.latent.shape[-1] + self.rope.shape[1] * self.rope.shape[-1] + scales

    def bytes_per_token(self) -> int:
        """Bytes one token of one sequence occupies in this layer."""
        if not self.is_initialized:
            return 0
        return self.values_per_token() * self.latent.element_size()

    def nbytes(self) -> int:
        """Bytes used by the tokens held (all sequences of the batch)."""
        if not self.is_initialized:
            return 0
        return self.length * self.latent.shape[0] * self.bytes_per_token()

    def allocated_bytes(self) -> int:
        if not self.is_initialized:
            return 0
        return sum(t.numel() * t.element_size() for t in (self.latent, self.rope, self.scale) if t is not None)

    # -- housekeeping used by generate()
    def _apply(self, fn) -> None:
        if not self.is_initialized:
            return
        self.latent, self.rope = fn(self.latent), fn(self.rope)
        if self.scale is not None:
            self.scale = fn(self.scale)
        self.capacity = self.latent.shape[1]

    def reset(self) -> None:
        self.length = 0
        if hasattr(self, "cumulative_length"):
            self.cumulative_length = 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop() takes a negative number: how many tokens to remove from the end")
        self.length = max(self.length + tokens_to_remove, 0)

    def offload(self):
        self._apply(lambda t: t.to("cpu", non_blocking=True))

    def prefetch(self):
        if self.is_initialized and self.latent.device != self.device:
            self._apply(lambda t: t.to(self.device, non_blocking=True))

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._apply(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._apply(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._apply(lambda t: t[indices])


class LatentSlidingLayer(LatentLayer):
    """Latent states of a sliding-window layer: keeps the last ``sliding_window - 1`` tokens."""

    is_sliding = True

    def __init__(self, sliding_window: int, chunk_size: int = 256, **kwargs):
        super().__init__(chunk_size=chunk_size)
        self.sliding_window = sliding_window
        self.cumulative_length = 0

    def update_latent(self, latent, rope, scale=None):
        keep = self.sliding_window - 1
        if self.is_initialized and self.length > keep:
            start = self.length - keep
            self.latent[:, :keep] = self.latent[:, start : self.length].clone()
            self.rope[:, :, :keep] = self.rope[:, :, start : self.length].clone()
            if self.scale is not None:
                self.scale[:, :, :keep] = self.scale[:, :, start : self.length].clone()
            self.length = keep
        self.cumulative_length += latent.shape[1]
        return super().update_latent(latent, rope, scale)

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        kv_offset = max(self.cumulative_length - self.sliding_window + 1, 0)
        kv_length = min(self.cumulative_length, self.sliding_window - 1) + query_length
        return kv_length, kv_offset

    def get_max_length(self) -> int:
        return self.sliding_window

    def crop(self, tokens_to_remove: int) -> None:
        if self.cumulative_length >= self.sliding_window and tokens_to_remove != 0:
            raise ValueError("a sliding-window latent layer cannot be cropped once the window is full")
        super().crop(tokens_to_remove)
        self.cumulative_length = self.length

    def nbytes(self) -> int:
        if not self.is_initialized:
            return 0
        held = min(self.length, self.sliding_window - 1)
        return held * self.latent.shape[0] * self.bytes_per_token()


class LatentCache(Cache):
    """Cache of latent attention states for a model converted by ``convert_to_m2la``.

    ``config`` (a model config, or a model) lays out one layer per decoder layer,
    with sliding-window layers where the config has them; without it, full-attention
    layers are created as layers are first written. ``chunk_size`` is the growth step
    in tokens.
    """

    def __init__(self, config=None, chunk_size: int = 256):
        self.chunk_size = chunk_size
        layers = None
        if config is not None:
            from transformers.cache_utils import get_layer_types_and_kwargs

            config = getattr(config, "config", config)
            text = config.get_text_config(decoder=True)
            types, kwargs = get_layer_types_and_kwargs(text)
            layers = []
            for layer_type, kw in zip(types, kwargs):
                if layer_type in ("sliding_attention", "chunked_attention"):
                    layers.append(LatentSlidingLayer(kw["sliding_window"], chunk_size=chunk_size))
                elif layer_type == "full_attention":
                    layers.append(LatentLayer(chunk_size=chunk_size))
                else:
                    raise M2LAError(f"LatentCache has no layer for layer type {layer_type!r}")
        if layers:
            super().__init__(layers=layers)
        else:
            super().__init__(layer_class_to_replicate=LatentLayer)

    def update_latent(self, latent, rope, scale, layer_idx: int):
        while len(self.layers) <= layer_idx:
            self.layers.append(LatentLayer(chunk_size=self.chunk_size))
        return self.layers[layer_idx].update_latent(latent, rope, scale)

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        raise _not_latent(layer_idx)

    def bytes_per_token(self, layer_idx: int | None = None) -> int:
        """Bytes per token of one sequence, for one layer or summed over all layers."""
        if layer_idx is not None:
            return self.layers[layer_idx].bytes_per_token()
        return sum(layer.bytes_per_token() for layer in self.layers)

    def nbytes(self) -> int:
        """Bytes used by the cached tokens over all layers."""
        return sum(layer.nbytes() for layer in self.layers)

    def allocated_bytes(self) -> int:
        return sum(layer.allocated_bytes() for layer in self.layers)
