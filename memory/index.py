"""``VideoIndex``: what perception computed about one video, stored once, keyed by its content.

An index is a set of stages (shots, transcript, on-screen text, frame embeddings...).
Each stage walks the video in chunks; a chunk's entries, arrays and the stage's cursor
commit in one transaction, so a killed build resumes at the next chunk and never
stores a chunk twice. The key is the file's content hash: a renamed or moved copy
finds its index, a changed file gets a new one.
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from mcr.errors import StageError
from mcr.types import TimeSpan

from .build import ChunkResult, Progress, Stage, StageReport, StageRun, build_runs, merge_info
from .entries import MemoryEntry
from .lease import Lease, LeaseLost
from .memory import Memory

_STAGES: dict[str, Callable[..., Stage]] = {}
_BROKEN: dict[str, str] = {}  # entry points that failed to load, and why
ENTRY_POINT_GROUP = "mcr.stages"


def register_stage(name: str, factory: Callable[..., Stage]) -> None:
    """Make a stage available by name to ``VideoIndex.build`` and ``mcr-agent index``.

    ``factory(**settings)`` makes the stage; the settings it may be given are ``device``
    and ``models`` (a model cache). Stages register themselves beside their engine; a
    package can also name its stages under the ``mcr.stages`` entry-point group, and
    they are loaded the first time a name is not known yet.
    """
    _STAGES[name] = factory


def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _STAGES or ep.name in _BROKEN:
            continue
        try:
            factory = ep.load()  # importing the module registers it; the entry point names the factory too
        except Exception as exc:  # one broken package must not hide the other stages
            _BROKEN[ep.name] = f"{ep.value} could not be loaded: {type(exc).__name__}: {exc}"
            continue
        _STAGES.setdefault(ep.name, factory)


def stage_names() -> list[str]:
    """The names of every stage that can be built here."""
    _load_entry_points()
    return sorted(_STAGES)


def check_stages(names: Iterable[str], where: str = "") -> None:
    """Raise ``StageError`` naming the first of ``names`` that is no known stage (``where``:
    words placed after the name, e.g. " in --index")."""
    names = list(names)
    if any(n not in _STAGES for n in names):
        _load_entry_points()
    unknown = [n for n in names if n not in _STAGES]
    if unknown and unknown[0] in _BROKEN:
        raise StageError(f"index stage {unknown[0]!r}{where}: {_BROKEN[unknown[0]]}")
    if unknown:
        raise StageError(f"unknown index stage {unknown[0]!r}{where}; known: {', '.join(sorted(_STAGES))}")


def make_stage(name: str, **settings: Any) -> Stage:
    """The stage ``name``, made with those of ``settings`` (``device``, ``models``) its factory takes."""
    check_stages([name])
    factory = _STAGES[name]
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read: give it everything
        return factory(**settings)
    if not any(p.kind is p.VAR_KEYWORD for p in params):  # a stage that takes fewer settings gets those it takes
        names = {p.name for p in params}
        settings = {k: v for k, v in settings.items() if k in names}
    return factory(**settings)


def walk(video: Any, stage: Stage, start: float = 0.0) -> Iterator[tuple[TimeSpan, ChunkResult]]:
    """Run ``stage`` over ``video`` chunk by chunk from ``start``: ``(span, result)`` for each chunk."""
    total = float(video.duration)
    cursor = start
    while cursor < total - 1e-6:
        span = TimeSpan(cursor, min(total, cursor + stage.chunk_s))
        yield span, stage.run_chunk(video, span)
        cursor = span.end


class VideoIndex:
    def __init__(self, video: Any, memory: Memory) -> None:
        self.video = video
        self.memory = memory
        self.store = memory.store
        self.video_id = video.id

    def state(self, stage: str) -> dict | None:
        """The stage's row: version, status (running | done | skipped | failed), cursor, total,
        info and updated_at (changes whenever the stage's data does); None when never built."""
        row = self.store.conn.execute(
            "SELECT version, status, cursor, total, info, updated_at FROM stages WHERE video_id = ? AND stage = ?",
            (self.video_id, stage),
        ).fetchone()
        if row is None:
            return None
        version, status, cursor, total, info, updated_at = row
        return {
            "version": version,
            "status": status,
            "cursor": cursor,
            "total": total,
            "info": json.loads(info),
            "updated_at": updated_at,
        }

    def is_built(self, stage: str, version: str | None = None) -> bool:
        st = self.state(stage)
        return st is not None and st["status"] == "done" and (version is None or st["version"] == version)

    def build(
        self,
        stages: Iterable[str | Stage],
        progress: Progress | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> list[StageReport]:
        """Build (or reuse, or resume) each stage; returns what happened to each. One builder per
        stage at a time: another process building it is waited for (``notice`` is told so).

        Stages that share a ``read_together`` and a chunk length (the frame stages) are built in
        one walk over the video: one decode of each chunk feeds them all (``MCR_INDEX_ONEPASS=0``:
        each stage decodes by itself). A stage marked ``beside = True`` (speech: its engine works
        on audio while the others decode frames) is built in a thread of its own next to the
        others, so two cores are both at work (``MCR_INDEX_BESIDE=0``: one after another)."""
        import os
        import threading

        from mcr.malloc import limit_arenas

        limit_arenas()  # the stages' threads free big buffers: few arenas keep peak memory flat
        self.store.remember_video(self.video_id, str(self.video.path), self.video.info())
        made = [make_stage(s) if isinstance(s, str) else s for s in stages]
        reports: dict[int, StageReport] = {}
        apart = [i for i, st in enumerate(made) if getattr(st, "beside", False)]
        if len(made) < 2 or os.environ.get("MCR_INDEX_BESIDE", "1") == "0":
            apart = []
        groups: dict[Any, list[int]] = {}
        one_pass = os.environ.get("MCR_INDEX_ONEPASS", "1") != "0"
        for i, st in enumerate(made):
            together = getattr(st, "read_together", None) if one_pass else None
            key = (i in apart, together, st.chunk_s) if together is not None else (i in apart, i)
            groups.setdefault(key, []).append(i)
        failures: list[BaseException] = []

        def build_groups(beside: bool) -> None:
            try:
                for key, members in groups.items():
                    if key[0] == beside:
                        reports.update(zip(members, self._build_group([made[i] for i in members], progress, notice)))
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                failures.append(exc)

        worker = threading.Thread(target=build_groups, args=(True,), name="index-beside", daemon=True)
        if apart:
            worker.start()
        build_groups(False)  # an interrupt here leaves the thread to end with the process
        if apart:
            worker.join()
        if failures:
            raise failures[0]
        return [reports[i] for i in range(len(made))]

    def _build_group(
        self, stages: list[Stage], progress: Progress | None, notice: Callable[[str], None] | None
    ) -> list[StageReport]:
        """Stages built in one walk: those whose lease is free now; the others are waited for and
        built (or reused) one by one after it."""
        if len(stages) == 1:
            return [self._build_one(stages[0], progress, notice)]
        reports: dict[int, StageReport] = {}
        runs: dict[int, StageRun] = {}
        later = []
        try:
            for i, stage in enumerate(stages):
                st = self._reusable(stage)
                if st is not None:
                    reports[i] = self._reused(stage, st, progress)
                    continue
                lease = Lease(self.store, self.video_id, stage.name)
                taken, holder = lease.try_take()
                if not taken:
                    later.append(i)
                    continue
                note = f"{holder} stopped before finishing it" if holder else ""
                runs[i] = StageRun(self, stage, lease, note)
            reports.update(zip(runs, build_runs(self, list(runs.values()), progress)))
        finally:
            for run in runs.values():
                run.lease.release()
        for i in later:
            reports[i] = self._build_one(stages[i], progress, notice)
        return [reports[i] for i in range(len(stages))]

    def _reusable(self, stage: Stage) -> dict | None:
        """The stage's state when it is done (or skipped) at this version with no entry stored twice."""
        st = self.state(stage.name)
        if st is None or st["version"] != stage.version or st["status"] not in ("done", "skipped"):
            return None
        return None if self._duplicated(stage.name) else st

    def _reused(self, stage: Stage, st: dict, progress: Progress | None, why: str = "") -> StageReport:
        total = float(self.video.duration)
        if progress:
            progress(stage.name, total, total)
        reason = "; ".join(r for r in (why, st["info"].get("reason", "")) if r)
        status = "reused" if st["status"] == "done" else "skipped"
        return StageReport(
            stage.name, status, self._count(stage.name), reason=reason, info=st["info"].get("chunks", {})
        )

    def _build_one(self, stage: Stage, progress: Progress | None, notice: Callable[[str], None] | None) -> StageReport:
        st = self._reusable(stage)
        if st is not None:
            return self._reused(stage, st, progress)
        lease = Lease(self.store, self.video_id, stage.name)

        def waiting(holder: Any) -> None:
            if notice is not None:
                notice(f"{stage.name}: {holder} is building it; waiting for it to finish")

        waited, holder = lease.take(waiting)
        try:
            st = self._reusable(stage)
            if st is not None:  # built by the builder this one waited for
                return self._reused(stage, st, progress, f"built by {holder} while this one waited {waited:.1f} s")
            note = f"{holder} stopped before finishing it" if holder else ""
            return build_runs(self, [StageRun(self, stage, lease, note)], progress)[0]
        finally:
            lease.release()

    def _commit(
        self, stage: Stage, lease: Lease, cursor: float, span: TimeSpan, result: ChunkResult, info: dict
    ) -> None:
        """A chunk's entries, arrays and the stage's new cursor in one transaction, only while this
        builder holds the lease and the stage stands where this chunk began."""
        for e in result.entries:
            e.video_id = self.video_id
            e.source = f"index:{stage.name}"
        vectors = None
        if getattr(stage, "embed", False) and result.entries:  # outside the write lock: encoding is slow
            vectors = self.memory.encoder.encode([e.text for e in result.entries])
        with self.store.write() as c:
            lease.renew(c)
            row = c.execute(
                "SELECT cursor, version FROM stages WHERE video_id = ? AND stage = ?", (self.video_id, stage.name)
            ).fetchone()
            if row is None or abs(row[0] - cursor) > 1e-6 or row[1] != stage.version:
                raise LeaseLost(f"the {stage.name} stage moved on without this builder")
            encoder = self.memory.encoder.name if vectors is not None else None
            self._store(c, stage.name, result.entries, vectors, encoder, result.arrays.items())
            self._set_state(stage, "running", span.end, float(self.video.duration), info, conn=c)

    def _store(self, c: Any, stage: str, entries: list, vectors: Any, encoder: str | None, arrays: Iterable) -> None:
        """Inside a write transaction: a stage's entries (with their embeddings), their events in
        the graph, and its ``(key, array)`` pairs."""
        self.store.add_many(entries, vectors, encoder)
        for e in entries:
            if e.data.get("entities"):
                self.memory.graph.add_event(e.text, e.span, e.data["entities"], self.video_id, entry_id=e.id)
        for key, arr in arrays:
            arr = np.ascontiguousarray(arr)
            c.execute(
                "INSERT OR REPLACE INTO arrays (video_id, stage, key, dtype, shape, value) VALUES (?,?,?,?,?,?)",
                (self.video_id, stage, float(key), str(arr.dtype), json.dumps(arr.shape), arr.tobytes()),
            )

    def append(self, stage: Stage, span: TimeSpan, result: ChunkResult, shift: float = 0.0) -> int:
        """A piece of a growing video (a live stream's segment) added to the stage: its entries
        and arrays moved ``shift`` seconds later (the piece's own times start at 0), stored in one
        transaction, and the stage marked done up to ``span`` (shifted). Returns the entries stored."""
        moved = TimeSpan(span.start + shift, span.end + shift)
        for e in result.entries:
            e.video_id, e.source = self.video_id, f"index:{stage.name}"
            if e.span is not None:
                e.span = TimeSpan(e.span.start + shift, e.span.end + shift)
            if isinstance(e.data.get("words"), list):  # [word, start, end, probability]
                e.data["words"] = [
                    [w[0], round(w[1] + shift, 3), round(w[2] + shift, 3), *w[3:]] for w in e.data["words"]
                ]
        vectors = None
        if getattr(stage, "embed", False) and result.entries:
            vectors = self.memory.encoder.encode([e.text for e in result.entries])
        arrays = [(key + shift, arr) for key, arr in result.arrays.items()]
        with self.store.write() as c:
            row = c.execute(
                "SELECT info FROM stages WHERE video_id = ? AND stage = ?", (self.video_id, stage.name)
            ).fetchone()
            info = json.loads(row[0]) if row else {}
            if result.info:
                info["chunks"] = merge_info(dict(info.get("chunks", {})), result.info)
            encoder = self.memory.encoder.name if vectors is not None else None
            self._store(c, stage.name, result.entries, vectors, encoder, arrays)
            self._set_state(stage, "done", moved.end, moved.end, info, conn=c)
        return len(result.entries)

    def entries(self, stage: str, span: TimeSpan | None = None) -> list[MemoryEntry]:
        """The stage's entries (those overlapping ``span`` when given)."""
        return [e for e in self.store.query(self.video_id, span=span) if e.source == f"index:{stage}"]

    def chunk_entries(self, stage: str, span: TimeSpan) -> list[MemoryEntry] | None:
        """The entries ``stage`` found in the chunk ``span`` (those ending inside it), or None when
        its build has not passed the chunk."""
        st = self.state(stage)
        if st is None or (st["status"] != "done" and st["cursor"] < span.end - 1e-6) or st["status"] == "skipped":
            return None
        return [e for e in self.entries(stage, span) if span.start <= e.span.end < span.end]

    def arrays(self, stage: str) -> list[tuple[float, np.ndarray]]:
        rows = self.store.conn.execute(
            "SELECT key, dtype, shape, value FROM arrays WHERE video_id = ? AND stage = ? ORDER BY key",
            (self.video_id, stage),
        ).fetchall()
        return [(k, np.frombuffer(v, dtype=d).reshape(json.loads(s))) for k, d, s, v in rows]

    def _duplicated(self, stage: str) -> bool:
        """True when some entry of the stage is stored more than once (older builds without a lease)."""
        return (
            self.store.conn.execute(
                'SELECT 1 FROM entries WHERE video_id = ? AND source = ? GROUP BY kind, start, "end", text, data '
                "HAVING COUNT(*) > 1 LIMIT 1",
                (self.video_id, f"index:{stage}"),
            ).fetchone()
            is not None
        )

    def _count(self, stage: str) -> int:
        return self.store.conn.execute(
            "SELECT COUNT(*) FROM entries WHERE video_id = ? AND source = ?", (self.video_id, f"index:{stage}")
        ).fetchone()[0]

    def _reset(self, stage: str) -> None:
        with self.store.write() as c:
            events = (
                "SELECT n.id FROM nodes n JOIN entries e ON e.id = n.entry_id WHERE e.video_id = ? AND e.source = ?"
            )
            args = (self.video_id, f"index:{stage}")
            c.execute(f"DELETE FROM edges WHERE dst IN ({events})", args)
            c.execute(f"DELETE FROM nodes WHERE id IN ({events})", args)
            c.execute("DELETE FROM entries WHERE video_id = ? AND source = ?", args)
            c.execute("DELETE FROM arrays WHERE video_id = ? AND stage = ?", (self.video_id, stage))
            c.execute("DELETE FROM stages WHERE video_id = ? AND stage = ?", (self.video_id, stage))

    def _set_state(
        self, stage: Stage, status: str, cursor: float, total: float, info: dict | None = None, conn: Any = None
    ) -> None:
        sql = (
            "INSERT INTO stages (video_id, stage, version, status, cursor, total, info, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(video_id, stage) DO UPDATE SET version = excluded.version, "
            "status = excluded.status, cursor = excluded.cursor, total = excluded.total, info = excluded.info, "
            "updated_at = excluded.updated_at"
        )
        args = (self.video_id, stage.name, stage.version, status, cursor, total, json.dumps(info or {}), time.time())
        if conn is not None:
            conn.execute(sql, args)
        else:
            with self.store.write() as c:
                c.execute(sql, args)
