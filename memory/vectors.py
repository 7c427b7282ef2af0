"""Vector search over stored embeddings: exact below a size, approximate (faiss IVF) above.

Exact search is a matrix product over unit vectors. Past ``ann_threshold`` vectors an
inverted-file index (faiss ``IndexIVFFlat``, inner product) answers top-k by scanning
the ``nprobe`` nearest clusters; it is trained once on a sample and takes new vectors
without retraining until the collection has grown ``retrain_growth`` times.
"""

from __future__ import annotations

import threading

import numpy as np


class VectorIndex:
    def __init__(self, dim: int, ann_threshold: int = 50_000, nprobe: int = 24, retrain_growth: float = 4.0) -> None:
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.nprobe = nprobe
        self.retrain_growth = retrain_growth
        self._ids = np.zeros(0, dtype=np.int64)
        self._vecs = np.zeros((0, dim), dtype=np.float32)
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self._ann = None
        self._ann_trained_on = 0
        self._ann_count = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids) + sum(len(i) for i, _ in self._chunks)

    @property
    def max_id(self) -> int:
        self._consolidate()
        return int(self._ids.max()) if len(self._ids) else 0

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != self.dim:
            raise ValueError(f"vectors must be (N, {self.dim}), got {vecs.shape}")
        with self._lock:
            self._chunks.append((np.asarray(ids, dtype=np.int64), vecs))

    def _consolidate(self) -> None:
        with self._lock:
            if self._chunks:
                self._ids = np.concatenate([self._ids] + [i for i, _ in self._chunks])
                self._vecs = np.concatenate([self._vecs] + [v for _, v in self._chunks])
                self._chunks.clear()

    def vectors_for(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors of ``ids`` (those present), for exact search over a subset."""
        self._consolidate()
        order = np.argsort(self._ids)
        pos = np.searchsorted(self._ids, ids, sorter=order)
        pos = np.clip(pos, 0, max(len(order) - 1, 0))
        if not len(order):
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), dtype=np.float32)
        rows = order[pos]
        ok = self._ids[rows] == ids
        return ids[ok], self._vecs[rows[ok]]

    def search(self, query: np.ndarray, k: int = 10, exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, scores)`` of the ``k`` most similar vectors, best first."""
        self._consolidate()
        n = len(self._ids)
        if n == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        use_ann = (n >= self.ann_threshold) if exact is None else not exact
        if use_ann and self._ensure_ann():
            scores, rows = self._ann.search(q, min(k, n))
            keep = rows[0] >= 0
            return self._ids[rows[0][keep]], scores[0][keep]
        return exact_top_k(self._ids, self._vecs, q[0], k)

    def _ensure_ann(self) -> bool:
        try:
            import faiss
        except ImportError:
            return False
        n = len(self._ids)
        if self._ann is None or n > self._ann_trained_on * self.retrain_growth:
            nlist = int(min(max(64, 4 * np.sqrt(n)), 8192))
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            sample = self._vecs[rng.choice(n, size=min(n, nlist * 40), replace=False)]
            index.train(sample)
            index.nprobe = self.nprobe
            self._ann, self._ann_trained_on, self._ann_count = index, n, 0
            self._quantizer = quantizer  # keep alive with the index
        if self._ann_count < n:
            # rows of self._vecs are the positions the ANN returns
            self._ann.add(self._vecs[self._ann_count : n])
            self._ann_count = n
        return True


def exact_top_k(ids: np.ndarray, vecs: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (unit vectors: cosine)."""
    if not len(ids):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    scores = vecs @ np.asarray(query, dtype=np.float32)
    k = min(k, len(ids))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return ids[top], scores[top]
