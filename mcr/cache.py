"""``ModelCache``: heavy models (whisper, CLIP, SAM, sentence encoders) loaded once per process.

A bottom-layer module: the memory's encoder, the tools and the models all share one
``shared_models`` cache, so a model loaded by one is reused by the others.
"""

from __future__ import annotations

import threading
from typing import Any, Callable


class ModelCache:
    """Values (usually models) loaded once per key, lazily, thread-safe: two threads asking
    for the same key at once run its loader once."""

    def __init__(self) -> None:
        self._items: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[Any, threading.Lock] = {}

    def get(self, key: Any, loader: Callable[[], Any]) -> Any:
        if key in self._items:
            return self._items[key]
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            if key not in self._items:
                self._items[key] = loader()
        return self._items[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


shared_models = ModelCache()
