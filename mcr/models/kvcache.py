"""The local backend's cache of its last prompt: each call reads only what follows the longest
common token prefix of its prompt and the last one.

Every call of a run begins with the last call's prompt (the context is append-only, the
system prompt and tool list the same on every call), so the key-value cache ``generate`` left
behind holds most of the next prompt. :class:`PromptCache` keeps it, cuts it back to the
common prefix and hands it to the next ``generate``: the standard ``DynamicCache`` and the
latent cache of an M2LA model (:class:`mcr.m2la.cache.LatentCache`) alike, each made with
every layer keeping all its tokens (a sliding-window layer cannot be cut back; the attention
mask still holds each layer to its window). Prompts with
pictures are read whole: their pixel tensors are not split by token.
"""

from __future__ import annotations

import time
from typing import Any

PLAIN_KEYS = ("input_ids", "attention_mask")


class PromptCache:
    """The key-value cache of the last prompt and reply, and the token ids it holds."""

    def __init__(self, latent: bool = False) -> None:
        self.latent = latent  # an M2LA model makes its own latent cache
        self.cache: Any = None
        self.ids: Any = None
        self.reused = 0  # the last call's prompt tokens read from the kept cache

    def clear(self) -> None:
        self.cache = self.ids = None

    def common(self, ids: Any) -> int:
        """How many leading tokens of ``ids`` the kept cache holds (one is always left to read)."""
        if self.cache is None:
            return 0
        n = min(len(self.ids), len(ids) - 1)
        if n <= 0:
            return 0
        differ = (self.ids[:n] != ids[:n]).nonzero()
        return int(differ[0, 0]) if len(differ) else n

    def attach(self, model: Any, kwargs: dict, batch: Any) -> None:
        """Put into ``generate``'s arguments the kept cache cut to the common prefix, or a fresh
        cache that can be cut so later."""
        from transformers.cache_utils import DynamicCache

        from mcr.m2la.cache import LatentCache, cache_argument

        self.reused = 0
        if any(k not in PLAIN_KEYS for k in batch.keys()):
            self.clear()
            return
        common = self.common(batch["input_ids"][0])
        if common == 0:  # every layer keeps all its tokens, so the cache can be cut back later
            cache = LatentCache() if self.latent else DynamicCache()
        else:
            cache = self.cache
            cache.crop(common - cache.get_seq_length())
        kwargs[cache_argument(model)] = cache
        self.reused = common

    def keep(self, out: Any, batch: Any) -> None:
        """Keep the cache ``generate`` returned (``return_dict_in_generate=True``) and its ids."""
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if cache is None or any(k not in PLAIN_KEYS for k in batch.keys()):
            self.clear()
            return
        self.cache = cache
        self.ids = out.sequences[0, : cache.get_seq_length()]


class Timing:
    """A ``generate`` streamer that notes when the first new token came (the end of the prefill)
    and hands everything on to another streamer, if any."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.started = time.perf_counter()
        self.first_token_s = 0.0
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if self.prompt_seen and not self.first_token_s:
            self.first_token_s = time.perf_counter() - self.started
        self.prompt_seen = True
        if self.inner is not None:
            self.inner.put(value)

    def end(self) -> None:
        if self.inner is not None:
            self.inner.end()
