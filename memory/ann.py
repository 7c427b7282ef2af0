"""An inverted-file vector index kept on disk, memory-mapped to search, grown in place.

Vectors (float32, unit length, inner product) live in one append-only file per list beside a
file of their records (what each vector is: ``ref``, ``row``, video code, kind code, span).
Below ``exact_below`` vectors there is one list, and a search scans all of it: exact. Past
it, centroids are trained once on what is there. After that each batch of new vectors (a
video's, as it is indexed) is clustered on its own into small groups of like vectors: a group
as near an existing list's centroid as its members are to their own centre joins that list,
and any other group starts a list of its own, so content the first centroids never saw gets
lists of its own instead of being scattered over the old ones. A list's centroid is the mean
direction of everything in it (kept as a running sum), and a list that grows past twice its
target size is split in two by 2-means on its own vectors: the index follows new content
without ever being rebuilt.

A commit appends to the list files, then replaces ``state.npz`` (which lists exist and how
many rows of each are committed) in one rename. Readers trust only the committed counts, so
a writer that dies mid-append leaves a tail that nobody reads and the next writer cuts off.
Writers take an exclusive file lock. A search maps the lists it scans and unmaps them after,
so a process's resident memory stays about what one search touches.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

RECORD = np.dtype([("ref", "<i8"), ("row", "<i4"), ("video", "<i4"), ("kind", "<i4"), ("start", "<f4"), ("end", "<f4")])
STATE = "state.npz"
GROUP = 64  # a new batch is clustered into groups of about this many vectors before placing


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _mapped_file(path: str, length: int) -> Iterator[mmap.mmap]:
    """The first ``length`` bytes of a file, mapped read-only and unmapped on leaving (views of
    it must be dropped inside)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        mm = mmap.mmap(fd, length, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    try:
        yield mm
    finally:
        mm.close()


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)).astype(np.float32)


def _kmeans(x: np.ndarray, k: int, iters: int = 12, seed: int = 0) -> np.ndarray:
    """Spherical k-means: ``k`` unit centroids of ``x`` (faiss when installed, numpy otherwise)."""
    k = max(1, min(k, len(x)))
    try:
        if k <= 8:  # a split: numpy is quicker than starting faiss's threads
            raise ImportError
        import faiss

        km = faiss.Kmeans(x.shape[1], k, niter=iters, spherical=True, seed=seed, max_points_per_centroid=64)
        km.train(np.ascontiguousarray(x, dtype=np.float32))
        return np.ascontiguousarray(km.centroids, dtype=np.float32)
    except ImportError:
        pass
    rng = np.random.default_rng(seed)
    c = np.array(x[rng.choice(len(x), size=k, replace=False)], dtype=np.float32)
    for _ in range(iters):
        near = np.argmax(x @ c.T, axis=1)
        for j in range(k):
            members = x[near == j]
            if len(members):
                c[j] = members.sum(0)
        c /= np.linalg.norm(c, axis=1, keepdims=True) + 1e-12
    return c


class DiskIVF:
    """One collection of vectors of one dimension in ``folder``."""

    def __init__(
        self,
        folder: str | os.PathLike,
        dim: int,
        list_size: int = 512,
        exact_below: int = 20_000,
        nprobe: int = 16,
    ) -> None:
        self.folder = Path(folder)
        self.dim = dim
        self.list_size = list_size
        self.exact_below = exact_below
        self.nprobe = nprobe
        self._state: dict | None = None
        self._stamp: tuple | None = None

    # ------------------------------------------------------------ state
    def state(self) -> dict:
        """The committed state (re-read when another process has committed since)."""
        path = self.folder / STATE
        try:
            st = path.stat()
        except FileNotFoundError:
            return self._empty()
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._state is None or stamp != self._stamp:
            with np.load(path) as z:
                info = json.loads(bytes(z["info"]).decode())
                state = {"info": info, "names": z["names"], "counts": z["counts"]}
            state["centroids"] = self._mapped(info.get("centroids"))
            state["sums"] = self._mapped(info.get("sums"))
            if state["sums"] is None and state["centroids"] is not None:  # written before sums were kept
                state["sums"] = np.asarray(state["centroids"]) * state["counts"][:, None].astype(np.float32)
            self._state, self._stamp = state, stamp
        return self._state

    def _mapped(self, name: str | None) -> np.ndarray | None:
        return None if not name else np.load(self.folder / name, mmap_mode="r")

    def _empty(self) -> dict:
        info = {"dim": self.dim, "next_name": 1, "centroids": None, "sums": None, "extra": {}}
        return {
            "info": info,
            "names": np.zeros(1, np.int64),
            "counts": np.zeros(1, np.int64),
            "centroids": None,
            "sums": None,
        }

    def __len__(self) -> int:
        return int(self.state()["counts"].sum())

    @property
    def extra(self) -> dict:
        """What the owner of the collection commits with its data (e.g. how far it has read)."""
        return self.state()["info"]["extra"]

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive: one writer at a time, across processes."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------ writing
    def add(self, vecs: np.ndarray, records: np.ndarray, extra: dict | None = None) -> None:
        """Append vectors and their records and commit (with ``extra`` replacing the owner's
        data). Call inside ``locked()``."""
        vecs = np.ascontiguousarray(vecs, dtype=np.float32).reshape(-1, self.dim)
        st = self._copy(self.state())
        if extra is not None:
            st["info"]["extra"] = extra
        doomed: list[str] = []
        if len(vecs):
            if st["centroids"] is None:
                self._append(st, 0, vecs, records)
                if st["counts"][0] >= self.exact_below:
                    doomed += self._train(st)
            else:
                self._place(st, vecs, records)
                for j in np.flatnonzero(st["counts"] > 2 * self.list_size):
                    doomed += self._split(st, int(j))
        self._commit(st)
        for name in doomed:  # a reader holding the old state retries when a file is gone
            (self.folder / name).unlink(missing_ok=True)

    def _copy(self, st: dict) -> dict:
        return {
            "info": json.loads(json.dumps(st["info"])),
            "names": st["names"].copy(),
            "counts": st["counts"].copy(),
            "centroids": None if st["centroids"] is None else np.array(st["centroids"]),
            "sums": None if st["sums"] is None else np.array(st["sums"]),
            "new_centroids": False,
        }

    def _files(self, name: int) -> tuple[Path, Path]:
        return self.folder / f"L{name}.vec", self.folder / f"L{name}.rec"

    def _append(self, st: dict, j: int, vecs: np.ndarray, records: np.ndarray) -> None:
        self._append_rows(st, int(st["names"][j]), int(st["counts"][j]), vecs, records)
        st["counts"][j] += len(vecs)

    def _append_rows(self, st: dict, name: int, count: int, vecs: np.ndarray, records: np.ndarray) -> None:
        """Rows after the first ``count`` of list file ``name`` (a tail left by a writer that died
        is cut off first)."""
        for path, data, size in zip(self._files(name), (vecs, records), (4 * self.dim, RECORD.itemsize)):
            with open(path, "ab") as f:
                f.truncate(count * size)
                f.write(np.ascontiguousarray(data).tobytes())

    def _read_list(self, st: dict, j: int) -> tuple[np.ndarray, np.ndarray]:
        vec_path, rec_path = self._files(int(st["names"][j]))
        n = int(st["counts"][j])
        vecs = np.fromfile(vec_path, dtype=np.float32, count=n * self.dim).reshape(n, self.dim)
        return vecs, np.fromfile(rec_path, dtype=RECORD, count=n)

    def _new_list(self, st: dict, vecs: np.ndarray, records: np.ndarray) -> int:
        name = st["info"]["next_name"]
        st["info"]["next_name"] = name + 1
        for path, data in zip(self._files(name), (vecs, records)):
            with open(path, "wb") as f:
                f.write(np.ascontiguousarray(data).tobytes())
        return name

    def _train(self, st: dict) -> list[str]:
        """From one exact list to lists around trained centroids (once, when the collection
        first grows past ``exact_below``)."""
        vecs, records = self._read_list(st, 0)
        old = [p.name for p in self._files(int(st["names"][0]))]
        centroids = _kmeans(vecs, max(2, len(vecs) // self.list_size))
        nearest = np.argmax(vecs @ centroids.T, axis=1)
        names = [self._new_list(st, vecs[nearest == j], records[nearest == j]) for j in range(len(centroids))]
        sums = np.zeros_like(centroids)
        np.add.at(sums, nearest, vecs)
        st["names"] = np.array(names, np.int64)
        st["counts"] = np.bincount(nearest, minlength=len(centroids)).astype(np.int64)
        st["centroids"], st["sums"], st["new_centroids"] = _unit(sums), sums, True
        return old

    def _place(self, st: dict, vecs: np.ndarray, records: np.ndarray) -> None:
        """Put a batch of new vectors into lists: clustered on its own first, each group joins the
        list whose centroid is as near its centre as its members are, or starts a new one."""
        k = len(vecs) // GROUP
        centres = _kmeans(vecs, k, iters=8) if k > 1 else _unit(vecs.sum(0, keepdims=True))
        group = np.argmax(vecs @ centres.T, axis=1)
        group_sums = np.zeros_like(centres)
        np.add.at(group_sums, group, vecs)
        old = len(st["names"])  # the lists before this batch, scored against every group at once
        near_old = _unit(group_sums) @ np.asarray(st["centroids"]).T
        n = old  # room for a new list per group, cut back at the end
        cents = np.concatenate([st["centroids"], np.zeros((len(centres), self.dim), np.float32)])
        sums = np.concatenate([st["sums"], np.zeros((len(centres), self.dim), np.float32)])
        names, counts = list(st["names"]), list(st["counts"])
        for g in range(len(centres)):
            idx = np.flatnonzero(group == g)
            if not len(idx):
                continue
            part = vecs[idx]
            centre = _unit(group_sums[g])
            scores = np.concatenate([near_old[g], cents[old:n] @ centre])
            j = int(np.argmax(scores))
            if scores[j] < float((part @ centre).mean()) and len(idx) >= GROUP // 4:
                names.append(self._new_list(st, part, records[idx]))
                counts.append(0)
                j, n = n, n + 1
            else:
                self._append_rows(st, names[j], counts[j], part, records[idx])
            counts[j] += len(idx)
            sums[j] += group_sums[g]
            cents[j] = _unit(sums[j])
        st["names"], st["counts"] = np.array(names, np.int64), np.array(counts, np.int64)
        st["centroids"], st["sums"], st["new_centroids"] = cents[:n], sums[:n], True

    def _split(self, st: dict, j: int) -> list[str]:
        """List ``j`` cut in two by 2-means on its vectors: it keeps one half, a new list the other."""
        vecs, records = self._read_list(st, j)
        two = _kmeans(vecs, 2, iters=8, seed=int(st["names"][j]))
        side = np.argmax(vecs @ two.T, axis=1)
        if len(two) < 2 or side.min() == side.max():
            return []
        old = [p.name for p in self._files(int(st["names"][j]))]
        a = self._new_list(st, vecs[side == 0], records[side == 0])
        b = self._new_list(st, vecs[side == 1], records[side == 1])
        st["names"][j], st["counts"][j] = a, int((side == 0).sum())
        st["names"] = np.append(st["names"], b)
        st["counts"] = np.append(st["counts"], int((side == 1).sum()))
        halves = np.stack([vecs[side == 0].sum(0), vecs[side == 1].sum(0)])
        st["sums"][j] = halves[0]
        st["sums"] = np.vstack([st["sums"], halves[1:]])
        st["centroids"][j] = _unit(halves[0])
        st["centroids"] = np.vstack([st["centroids"], _unit(halves[1:])])
        st["new_centroids"] = True
        return old

    def _commit(self, st: dict) -> None:
        info = st["info"]
        retired = list(info.get("retired", []))
        if st.get("new_centroids"):
            info["gen"] = info.get("gen", 0) + 1
            for key in ("centroids", "sums"):
                name, old = f"{key}-{info['gen']}.npy", info.get(key)
                _write_atomic(self.folder / name, lambda f, a=st[key]: np.save(f, np.asarray(a, np.float32)))
                info[key] = name
                if old:
                    retired.append(old)
        info["retired"], gone = retired[-4:], retired[:-4]  # two generations back: no reader still starts there
        blob = np.frombuffer(json.dumps(info).encode(), dtype=np.uint8)
        _write_atomic(
            self.folder / STATE,
            lambda f: np.savez(f, info=blob, names=st["names"], counts=st["counts"]),
        )
        for name in gone:
            (self.folder / name).unlink(missing_ok=True)

    # ------------------------------------------------------------ reading
    def _nearest_lists(self, st: dict, q: np.ndarray, n: int) -> np.ndarray:
        """The ``n`` lists whose centroids are nearest ``q``, best first."""
        scores = np.asarray(st["centroids"]) @ q
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
        return top[np.argsort(-scores[top], kind="stable")]

    def search(
        self, query: np.ndarray, k: int, allow: Callable[[np.ndarray], np.ndarray] | None = None, nprobe: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(records, scores)`` of the ``k`` best vectors, best first. ``allow(records)`` gives a
        mask of those that may be returned: applied while scanning, and more lists are scanned
        until ``k`` allowed ones are found (or all were scanned)."""
        for _attempt in range(3):
            try:
                return self._search(self.state(), query, k, allow, nprobe or self.nprobe)
            except FileNotFoundError:  # a writer replaced a list this state named: read the new state
                self._stamp = None
        return self._search(self.state(), query, k, allow, nprobe or self.nprobe)

    def _search(self, st: dict, query: np.ndarray, k: int, allow: Any, nprobe: int):
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        nlist = len(st["names"])
        if st["centroids"] is None:
            order = np.zeros(1, np.int64)
        else:
            order = self._nearest_lists(st, q, nprobe)
        done: set[int] = set()
        recs, scores = [], []
        while True:
            for j in order:
                if int(j) in done or not st["counts"][j]:
                    continue
                done.add(int(j))
                r, s = self._scan(st, int(j), q, k, allow)
                recs.append(r)
                scores.append(s)
            found = sum(len(s) for s in scores)
            if allow is None or found >= k or len(done) >= nlist:
                break
            widen = max(2 * len(done), nprobe)  # too few allowed in the nearest lists: look further
            order = self._nearest_lists(st, q, widen)
        if not recs:
            return np.zeros(0, RECORD), np.zeros(0, np.float32)
        r, s = np.concatenate(recs), np.concatenate(scores)
        top = np.argsort(-s, kind="stable")[:k]
        return r[top], s[top]

    def _scan(self, st: dict, j: int, q: np.ndarray, k: int, allow: Any) -> tuple[np.ndarray, np.ndarray]:
        n = int(st["counts"][j])
        name = int(st["names"][j])
        with _mapped_file(f"{self.folder}/L{name}.vec", n * 4 * self.dim) as buf:
            s = np.frombuffer(buf, np.float32, n * self.dim).reshape(n, self.dim) @ q
        with _mapped_file(f"{self.folder}/L{name}.rec", n * RECORD.itemsize) as buf:
            rec = np.frombuffer(buf, RECORD, n)
            idx = np.flatnonzero(allow(rec)) if allow is not None else None
            if idx is not None:
                s = s[idx]
            top = np.argpartition(-s, k - 1)[:k] if len(s) > k else np.arange(len(s))
            out = rec[top if idx is None else idx[top]].copy()
            del rec
        return out, s[top]

    def scan_all(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every committed ``(vectors, records)`` list, read (not mapped) one at a time."""
        st = self.state()
        for j in range(len(st["names"])):
            if st["counts"][j]:
                yield self._read_list(st, j)
