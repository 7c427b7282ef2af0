"""``Memory``: write what was learned, read it back by meaning, by time, by kind and video.

Writes are cheap: text goes to the store at once and its embedding is computed later,
in batches, the first time a search by meaning needs it.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mcr.quoting import quote
from mcr.types import TimeSpan

from .entries import MemoryEntry
from .store import MemoryStore
from .vectors import StoreVectors, VectorIndex, exact_top_k

INDEX_KINDS = ("shot",)  # bulk entries the index writes; the digest counts them, memory_search finds them
EXACT_SUBSET_LIMIT = 200_000  # filtered searches over at most this many entries are exact


@dataclass
class Hit:
    entry: MemoryEntry
    score: float

    def line(self) -> str:
        return f"{self.entry.line()} (score {self.score:.2f})"


class Memory:
    """A workspace's memory. ``encoder`` is any object with ``name``, ``dim``, ``encode``;
    by default all-MiniLM-L6-v2 loads on first use."""

    def __init__(
        self,
        path: str | os.PathLike | MemoryStore | None = None,
        encoder: Any = None,
        readonly: bool = False,
        device: str = "cpu",
    ) -> None:
        self.store = path if isinstance(path, MemoryStore) else MemoryStore(path, readonly=readonly)
        self._encoder = encoder
        self._device = device
        self._vectors: VectorIndex | None = None
        self._disk: StoreVectors | bool | None = None
        self._lock = threading.RLock()
        self._graph = None

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def encoder(self):
        if self._encoder is None:
            from .encoder import default_encoder

            self._encoder = default_encoder(self._device)
        return self._encoder

    @property
    def graph(self):
        if self._graph is None:
            from .graph import MemoryGraph

            self._graph = MemoryGraph(self.store)
        return self._graph

    # ------------------------------------------------------------ writing
    def write(
        self,
        text: str,
        kind: str = "observation",
        video_id: str | None = None,
        span: Any = None,
        source: str = "",
        confidence: float | None = None,
        origin: str | None = None,
        **data: Any,
    ) -> MemoryEntry:
        """Store one entry. ``origin`` names the write (``RUN:STEP:N``): a run resumed from its trace
        makes its writes again, and each origin is stored once (the stored entry comes back)."""
        span = TimeSpan.parse(span) if span is not None else None
        entry = MemoryEntry(text.strip(), kind, video_id, span, source, confidence, data=data)
        return self.store.add(entry, origin)

    def write_many(self, entries: Sequence[MemoryEntry]) -> list[MemoryEntry]:
        return self.store.add_many(entries)

    def embed_pending(self, batch: int = 256) -> int:
        """Embed every entry that has no embedding from the current encoder. Returns how many."""
        done = 0
        with self._lock:
            while True:
                rows = self.store.pending_embeddings(self.encoder.name, limit=batch)
                if not rows:
                    return done
                ids = np.array([r[0] for r in rows], dtype=np.int64)
                vecs = self.encoder.encode([r[1] for r in rows])
                self.store.set_embeddings(ids, vecs, self.encoder.name)
                done += len(rows)

    def _disk_vectors(self) -> StoreVectors | None:
        """The entries' vectors on disk, synced with the store; None where they cannot be kept
        (a read-only database or folder: ``_index`` holds them in memory instead)."""
        with self._lock:
            if self.store.readonly or self._disk is False:
                return None
            if self._disk is None:
                disk = StoreVectors(self.store, "entry:" + self.encoder.name, self.encoder.dim)
                self._disk = disk if disk.writable() else False
                if self._disk is False:
                    return None
            self.embed_pending()
            self._disk.sync()
            return self._disk

    def _index(self) -> VectorIndex:
        """The vector index, brought up to date with the store (other processes included)."""
        with self._lock:
            if not self.store.readonly:
                self.embed_pending()
            fresh = self._vectors is None
            if fresh:
                self._vectors = VectorIndex(self.encoder.dim)
            for ids, vecs in self.store.embeddings(self.encoder.name, after_id=self._vectors.max_id):
                self._vectors.add(ids, vecs)
            if fresh and self.store.readonly:  # entries without embeddings: embedded here, not stored
                rows = self.store.pending_embeddings(self.encoder.name, limit=1_000_000)
                if rows:
                    ids = np.array([r[0] for r in rows], dtype=np.int64)
                    self._vectors.add(ids, self.encoder.encode([r[1] for r in rows]))
            return self._vectors

    # ------------------------------------------------------------ reading
    def search(
        self,
        query: str = "",
        video_id: str | None = None,
        span: Any = None,
        kind: str | Sequence[str] | None = None,
        k: int = 5,
        near: float | None = None,
    ) -> list[Hit]:
        """Entries ranked by meaning (``query``), filtered by video, kind and span, and,
        with ``near``, lifted when close to that time. Without a query: by time."""
        span = TimeSpan.parse(span) if span is not None else None
        if not query or not query.strip():
            if near is not None:
                return [Hit(e, 1.0) for e in self.store.nearest(near, video_id, kind, k)]
            return [Hit(e, 1.0) for e in self.store.query(video_id, kind, span, limit=k)]
        disk = self._disk_vectors()
        index = self._index() if disk is None else None
        q = self.encoder.encode([query.strip()])[0]
        filtered = video_id is not None or kind is not None or span is not None
        pool = max(k * 4, 50) if near is not None else k
        if disk is not None:  # on disk beside the database; filters applied inside the search
            kinds = [kind] if isinstance(kind, str) else kind
            recs, _, _ = disk.search(q, pool + 8, None if video_id is None else [video_id], kinds, span)
            top_ids, scores = disk.rescore(recs["ref"], q, pool)
        elif filtered:
            ids = np.array(
                [e.id for e in self.store.query(video_id, kind, span, limit=EXACT_SUBSET_LIMIT)], dtype=np.int64
            )
            ids, vecs = index.vectors_for(ids)
            top_ids, scores = exact_top_k(ids, vecs, q, pool)
        else:
            top_ids, scores = index.search(q, pool)
        hits = [Hit(e, float(s)) for e, s in zip(self.store.get_many(top_ids), scores)]
        if near is not None:
            for h in hits:
                if h.entry.span is not None:
                    gap = max(0.0, h.entry.span.start - near, near - h.entry.span.end)
                    h.score += 0.25 * math.exp(-gap / 30.0)
            hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def digest(self, question: str, video_id: str | None, k: int = 8, max_chars: int = 1500) -> str:
        """A short digest for a task: what the index holds, and the entries most related to it."""
        counts = self.store.counts_by_kind(video_id)
        if not counts:
            return ""
        head = "Memory of this video: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + "."
        learned = [kind for kind in counts if kind not in INDEX_KINDS]
        lines = []
        if learned:  # what earlier runs learned, ranked by meaning for this question
            lines = [hit.entry.line() for hit in self.search(question, video_id=video_id, kind=learned, k=k)]
        text = "\n".join(lines)
        more = ""
        if len(text) > max_chars:
            text, more = text[:max_chars].rsplit("\n", 1)[0], "\n[... more with memory_search]"
        # entries hold what the video, the web or a model said: shown as data, never as instructions
        return head + ("\n" + quote(text, "memory") + more if text else "")

    def close(self) -> None:
        self.store.close()


def describe_hits(hits: Sequence[Hit]) -> str:
    if not hits:
        return "no memory entries matched."
    return "\n".join(h.line() for h in hits)
