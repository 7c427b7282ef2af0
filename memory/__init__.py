"""Memory: what the agent learned about videos, kept across questions.

``Memory`` (entries in SQLite, retrieval by meaning and by time), ``MemoryGraph``
(entities and events), ``VideoIndex`` (per-video stage results, keyed by the file's
content hash, with the stage protocol and registry). Memory is a store: it knows
nothing of perception; the perception stages live beside their engines in
``mcr.tools`` and register themselves. Names load on first use, so the command line starts fast.
"""

from __future__ import annotations

from mcr.lazy import lazy_exports

_EXPORTS = {
    "KINDS": ".entries",
    "MemoryEntry": ".entries",
    "ChunkResult": ".build",
    "StageReport": ".build",
    "VideoIndex": ".index",
    "check_stages": ".index",
    "make_stage": ".index",
    "register_stage": ".index",
    "stage_names": ".index",
    "walk": ".index",
    "Hit": ".memory",
    "Memory": ".memory",
    "describe_hits": ".memory",
    "MemoryGraph": ".graph",
    "DEFAULT_DB": ".store",
    "MemoryStore": ".store",
    "MemoryStoreError": ".store",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
