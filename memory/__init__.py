"""Memory: what the agent learned about videos, kept across questions.

``Memory`` (entries in SQLite, retrieval by meaning and by time), ``MemoryGraph``
(entities and events), ``VideoIndex`` (per-video perception stages, keyed by the
file's content hash).
"""
from __future__ import annotations

from .entries import KINDS, MemoryEntry
from .index import STAGES, ChunkResult, StageReport, VideoIndex, make_stage, register_stage
from .memory import Hit, Memory, describe_hits
from .shots import ShotStage
from .store import DEFAULT_DB, MemoryStore, MemoryStoreError

register_stage("shots", ShotStage)

__all__ = [
    "DEFAULT_DB",
    "KINDS",
    "ChunkResult",
    "Hit",
    "Memory",
    "MemoryEntry",
    "MemoryStore",
    "MemoryStoreError",
    "STAGES",
    "ShotStage",
    "StageReport",
    "VideoIndex",
    "describe_hits",
    "make_stage",
    "register_stage",
]
