"""Vector search over stored embeddings.

``StoreVectors``: a store's vectors of one kind (the entries embedded by one encoder, or the
index's frame embeddings) in an on-disk inverted-file index beside the database
(``memory.db`` -> ``memory.db.vectors/NAME/``, see ``ann.DiskIVF``). The store logs every
vector it takes, in the transaction that stores it (``vector_log``, filled by triggers), so
the index follows the log from where it stopped: each video's vectors are added once, by
whichever process syncs first, and a process that starts reads the index as it is, never
rebuilding it. Filters by video, kind and time apply inside the search: over few vectors,
exact search of exactly those (rows picked by SQLite); otherwise inside the index's scan.

``VectorIndex``: the same search in this process's memory, for a database that cannot be
written (its vectors are read once and never persisted). Exact below a size, faiss IVF above.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .ann import RECORD, DiskIVF
from .entries import KINDS

LOG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS vector_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, "
    "ref INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS vector_log_source ON vector_log(source, seq)",
    "CREATE TRIGGER IF NOT EXISTS vector_log_entry AFTER INSERT ON entries WHEN NEW.embedding IS NOT NULL "
    "BEGIN INSERT INTO vector_log (source, ref) VALUES ('entry:' || NEW.encoder, NEW.id); END",
    "CREATE TRIGGER IF NOT EXISTS vector_log_embedded AFTER UPDATE OF embedding ON entries "
    "WHEN NEW.embedding IS NOT NULL "
    "BEGIN INSERT INTO vector_log (source, ref) VALUES ('entry:' || NEW.encoder, NEW.id); END",
    "CREATE TRIGGER IF NOT EXISTS vector_log_frames AFTER INSERT ON arrays WHEN NEW.stage = 'embeddings' "
    "BEGIN INSERT INTO vector_log (source, ref) VALUES ('frames', NEW.rowid); END",
)
FRAMES = "frames"
FRAME_KIND = len(KINDS)  # the kind code of a frame embedding
EXACT_LIMIT = 200_000  # a filter that leaves at most this many vectors is searched exactly


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


def vectors_folder(db_path: str | Path) -> Path:
    """Where the vectors of the database at ``db_path`` are kept."""
    return Path(str(db_path) + ".vectors")


def ensure_log(conn: Any) -> None:
    """Inside a write transaction: the vector log and its triggers."""
    for statement in LOG_SCHEMA:
        conn.execute(statement)


def _chunks(items: Sequence[int], size: int = 900):
    for start in range(0, len(items), size):
        yield [int(i) for i in items[start : start + size]]


class StoreVectors:
    """The vectors of one ``source`` of a store (``entry:ENCODER`` or ``frames``) on disk."""

    def __init__(self, store: Any, source: str, dim: int | None = None, **settings: Any) -> None:
        self.store, self.source, self.dim = store, source, dim
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in source.replace(":", "-"))
        self.folder = vectors_folder(store.path) / safe
        self.settings = settings
        self._ivf: DiskIVF | None = None

    @property
    def ivf(self) -> DiskIVF | None:
        if self._ivf is None:
            dim = self.dim
            if dim is None and (self.folder / "state.npz").exists():
                with np.load(self.folder / "state.npz") as z:
                    dim = json.loads(bytes(z["info"]).decode())["dim"]
            if dim is not None:
                self.dim = dim
                self._ivf = DiskIVF(self.folder, dim, **self.settings)
        return self._ivf

    def __len__(self) -> int:
        return len(self.ivf) if self.ivf is not None else 0

    def writable(self) -> bool:
        import os

        folder = self.folder if self.folder.exists() else self.folder.parent
        while not folder.exists():
            folder = folder.parent
        return not self.store.readonly and os.access(folder, os.W_OK | os.X_OK)

    def behind(self) -> bool:
        """True when the store holds vectors of this source that the index has not taken yet."""
        row = self.store.conn.execute("SELECT MAX(seq) FROM vector_log WHERE source = ?", (self.source,)).fetchone()
        ivf = self.ivf
        done = ivf.extra.get("seq") if ivf is not None else None
        if done is None:  # never synced: anything stored counts
            return self._all_refs(limit=1) != []
        return (row[0] or 0) > done or "seed" in ivf.extra

    # ------------------------------------------------------------ syncing
    def sync(self, batch: int = 20_000) -> int:
        """Add what the store took since the last sync; returns how many vectors were added."""
        if not self.behind():
            return 0
        added = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        lock_ivf = DiskIVF(self.folder, self.dim or 0)
        with lock_ivf.locked():
            ivf = self.ivf  # read inside the lock: what another process committed counts
            extra = json.loads(json.dumps(ivf.extra)) if ivf is not None else {}
            while True:
                if "seq" not in extra or "seed" in extra:
                    refs, extra = self._seed_batch(extra, batch)
                else:
                    rows = self.store.conn.execute(
                        "SELECT seq, ref FROM vector_log WHERE source = ? AND seq > ? ORDER BY seq LIMIT ?",
                        (self.source, extra["seq"], batch),
                    ).fetchall()
                    if not rows:
                        return added
                    refs, extra["seq"] = [r[1] for r in rows], rows[-1][0]
                vecs, records = self._fetch(refs, extra)
                if self.ivf is None and len(vecs):
                    self.dim = vecs.shape[1]
                if self.ivf is not None:
                    self.ivf.add(vecs, records, extra)
                    added += len(vecs)

    def _all_refs(self, after: int = 0, limit: int = -1) -> list[int]:
        if self.source == FRAMES:
            sql = "SELECT rowid FROM arrays WHERE stage = 'embeddings' AND rowid > ? ORDER BY rowid LIMIT ?"
            return [r[0] for r in self.store.conn.execute(sql, (after, limit))]
        sql = "SELECT id FROM entries WHERE encoder = ? AND id > ? ORDER BY id LIMIT ?"
        return [r[0] for r in self.store.conn.execute(sql, (self.source.removeprefix("entry:"), after, limit))]

    def _seed_batch(self, extra: dict, batch: int) -> tuple[list[int], dict]:
        """A first sync: what the store held before it logged its vectors, then the log from
        where it stood when the seeding began."""
        extra = dict(extra)
        if "seed" not in extra:
            row = self.store.conn.execute("SELECT MAX(seq) FROM vector_log").fetchone()
            extra["seed"], extra["seq"] = 0, row[0] or 0
        refs = self._all_refs(extra["seed"], batch)
        if refs:
            extra["seed"] = refs[-1]
        else:
            del extra["seed"]
        return refs, extra

    def _fetch(self, refs: list[int], extra: dict) -> tuple[np.ndarray, np.ndarray]:
        """The vectors and records of ``refs`` (those still stored), with ``extra``'s video codes."""
        videos = extra.setdefault("videos", [])
        codes = {v: i for i, v in enumerate(videos)}

        def code(video_id: str | None) -> int:
            if video_id not in codes:
                codes[video_id] = len(videos)
                videos.append(video_id)
            return codes[video_id]

        vecs, recs = [], []
        refs = list(dict.fromkeys(refs))
        if self.source == FRAMES:
            for chunk in _chunks(refs):
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT rowid, video_id, dtype, shape, value FROM arrays WHERE rowid IN ({marks})"
                for rowid, video_id, dtype, shape, value in self.store.conn.execute(sql, chunk):
                    table = np.frombuffer(value, dtype=dtype).reshape(json.loads(shape)).astype(np.float32)
                    if table.ndim != 2 or not len(table):
                        continue
                    rec = np.zeros(len(table), RECORD)
                    rec["ref"], rec["row"], rec["video"], rec["kind"] = (
                        rowid,
                        np.arange(len(table)),
                        code(video_id),
                        FRAME_KIND,
                    )
                    rec["start"] = rec["end"] = table[:, 0]
                    vecs.append(table[:, 1:])
                    recs.append(rec)
        else:
            encoder = self.source.removeprefix("entry:")
            kind_code = {k: i for i, k in enumerate(KINDS)}
            for chunk in _chunks(refs):
                marks = ",".join("?" * len(chunk))
                sql = (
                    f'SELECT id, video_id, kind, start, "end", embedding FROM entries WHERE id IN ({marks}) '
                    "AND encoder = ? AND embedding IS NOT NULL"
                )
                rows = self.store.conn.execute(sql, [*chunk, encoder]).fetchall()
                if not rows:
                    continue
                rec = np.zeros(len(rows), RECORD)
                rec["ref"] = [r[0] for r in rows]
                rec["video"] = [code(r[1]) for r in rows]
                rec["kind"] = [kind_code.get(r[2], -1) for r in rows]
                rec["start"] = [np.nan if r[3] is None else r[3] for r in rows]
                rec["end"] = [np.nan if r[4] is None else r[4] for r in rows]
                vecs.append(np.frombuffer(b"".join(r[5] for r in rows), np.float32).reshape(len(rows), -1))
                recs.append(rec)
        if not vecs:
            return np.zeros((0, self.dim or 1), np.float32), np.zeros(0, RECORD)
        return np.concatenate(vecs), np.concatenate(recs)

    # ------------------------------------------------------------ searching
    def video_ids(self) -> list[str | None]:
        """The video of each video code in the records."""
        return list(self.ivf.extra.get("videos", [])) if self.ivf is not None else []

    def search(
        self,
        query: np.ndarray,
        k: int,
        video_ids: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        span: Any = None,
    ) -> tuple[np.ndarray, np.ndarray, list]:
        """``(records, scores, videos)`` of the ``k`` nearest vectors inside the filters, best
        first (``videos[record["video"]]`` is a record's video): exact over the filtered rows
        when they are few, else filtered inside the index's scan."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        if video_ids is not None and len(video_ids) <= 64:
            videos = self.video_ids()
            rows = self._exact_rows(video_ids, kinds, span, videos)
            if rows is not None:
                vecs, recs = rows
                ids, scores = exact_top_k(np.arange(len(recs)), vecs, q, k)
                return recs[ids], scores, videos
        if self.ivf is None:
            return np.zeros(0, RECORD), np.zeros(0, np.float32), []
        recs, scores = self.ivf.search(q, k, self._allow(video_ids, kinds, span))
        return recs, scores, self.video_ids()

    def rescore(self, refs: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Entries ``refs`` scored again against their stored embeddings (a vector replaced or
        removed since it was indexed counts as it is now, or not at all): ``(ids, scores)``."""
        refs = list(dict.fromkeys(int(r) for r in refs))
        found: dict[int, bytes] = {}
        for chunk in _chunks(refs):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id, embedding FROM entries WHERE id IN ({marks}) AND encoder = ? AND embedding IS NOT NULL"
            found.update(self.store.conn.execute(sql, [*chunk, self.source.removeprefix("entry:")]).fetchall())
        ids = np.array([r for r in refs if r in found], np.int64)
        if not len(ids):
            return ids, np.zeros(0, np.float32)
        vecs = np.frombuffer(b"".join(found[int(i)] for i in ids), np.float32).reshape(len(ids), -1)
        return exact_top_k(ids, vecs, query, k)

    def _allow(self, video_ids: Any, kinds: Any, span: Any):
        if video_ids is None and kinds is None and span is None:
            return None
        codes = None
        if video_ids is not None:
            wanted = set(video_ids)
            codes = np.array([i for i, v in enumerate(self.video_ids()) if v in wanted], np.int32)
        kind_codes = None if kinds is None else np.array([KINDS.index(x) for x in kinds], np.int32)

        def allow(rec: np.ndarray) -> np.ndarray:
            ok = np.ones(len(rec), bool)
            if codes is not None:
                ok &= np.isin(rec["video"], codes)
            if kind_codes is not None:
                ok &= np.isin(rec["kind"], kind_codes)
            if span is not None:
                ok &= (rec["start"] <= span.end) & (rec["end"] >= span.start)
            return ok

        return allow

    def _exact_rows(
        self, video_ids: Sequence[str], kinds: Any, span: Any, videos: list
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The vectors and records of the filtered rows, read from the store; None when they are
        too many to search exactly."""
        marks = ",".join("?" * len(video_ids))
        if self.source == FRAMES:
            if kinds is not None and "frame" not in kinds:
                return np.zeros((0, self.dim or 1), np.float32), np.zeros(0, RECORD)
            sql = f"SELECT rowid FROM arrays WHERE stage = 'embeddings' AND video_id IN ({marks})"
            refs = [r[0] for r in self.store.conn.execute(sql, list(video_ids))]
        else:
            # "+encoder": the planner is steered to the index by video (not the one by encoder)
            where = f"+encoder = ? AND embedding IS NOT NULL AND video_id IN ({marks})"
            args: list = [self.source.removeprefix("entry:"), *video_ids]
            if kinds is not None:
                where += f" AND kind IN ({','.join('?' * len(kinds))})"
                args += list(kinds)
            if span is not None:
                where += ' AND start IS NOT NULL AND start <= ? AND "end" >= ?'
                args += [span.end, span.start]
            count = self.store.conn.execute(f"SELECT COUNT(*) FROM entries WHERE {where}", args).fetchone()[0]
            if count > EXACT_LIMIT:
                return None
            refs = [r[0] for r in self.store.conn.execute(f"SELECT id FROM entries WHERE {where}", args)]
        vecs, recs = self._fetch(refs, {"videos": videos})  # codes of videos not synced yet go on the end
        if self.source == FRAMES and span is not None:
            keep = (recs["start"] <= span.end) & (recs["end"] >= span.start)
            vecs, recs = vecs[keep], recs[keep]
        return vecs, recs


def sync_store(store: Any) -> int:
    """Bring every on-disk vector index of ``store`` up to date (after a video was indexed)."""
    encoders = [r[0] for r in store.conn.execute("SELECT DISTINCT encoder FROM entries WHERE encoder IS NOT NULL")]
    added = 0
    for source in [FRAMES] + [f"entry:{e}" for e in encoders]:
        vectors = StoreVectors(store, source)
        if vectors.writable():
            added += vectors.sync()
    return added
