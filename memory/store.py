"""The memory store: one SQLite database per workspace (WAL, transactional writes).

A killed writer leaves the store as of its last committed transaction. Many
readers and one writer may use the file from several processes at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from mcr.errors import MCRError
from mcr.types import TimeSpan

from .entries import KINDS, MemoryEntry
from .schema import (
    _COLUMNS,
    APPLICATION_ID,
    SCHEMA,
    SCHEMA_VERSION,
    MemoryStoreError,
    _check_foreign,
    _migrate,
    _uri,
    _when_unlocked,
    connect_readonly,
    unwritable,
)
from .vectors import ensure_log

DEFAULT_DB = Path(".mcr") / "memory.db"


def _row_to_entry(row: Sequence[Any]) -> MemoryEntry:
    id_, video_id, start, end, kind, text, source, confidence, created_at, data = row
    span = TimeSpan(start, end) if start is not None and end is not None else None
    return MemoryEntry(
        text=text,
        kind=kind,
        video_id=video_id,
        span=span,
        source=source,
        confidence=confidence,
        created_at=created_at,
        id=id_,
        data=json.loads(data or "{}"),
    )


class MemoryStore:
    """Entries, index stages, arrays and the graph's nodes and edges, in one SQLite file."""

    def __init__(self, path: str | os.PathLike | None = None, readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else DEFAULT_DB
        self.readonly = readonly
        _check_foreign(self.path)
        if readonly and not self.path.exists():
            raise MemoryStoreError(f"no memory database at {self.path}")
        why = None if readonly else unwritable(self.path)
        if why:
            raise MemoryStoreError(
                f"cannot write to the memory database {self.path}: {why}. Make it writable, name another "
                "file with --memory, or run without memory (--no-memory); reading it works (memory list, "
                "search, export)"
            )
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.RLock()
        self.conn  # noqa: B018 (opens this thread's connection now: a file that is not a database fails here)
        if not readonly:
            with self.write() as c:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                _migrate(c)
                ensure_log(c)  # every vector stored is logged, so the on-disk index follows
                c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def conn(self) -> sqlite3.Connection:
        """One connection per thread (SQLite connections are not shared across threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                if self.readonly:
                    conn = connect_readonly(self.path)
                else:  # transactions are explicit
                    conn = sqlite3.connect(_uri(self.path), uri=True, timeout=30, isolation_level=None)
                conn.execute("PRAGMA busy_timeout = 30000")
                if not self.readonly:
                    _when_unlocked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
                    conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.DatabaseError as exc:
                raise MemoryStoreError(f"cannot open the memory database {self.path}: {exc}") from None
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """``with store.write() as conn:``: one write transaction, all or nothing."""
        if self.readonly:
            raise MemoryStoreError(f"the memory database {self.path} is open read-only")
        with self._lock:
            c = self.conn
            if c.in_transaction:  # nested: join the caller's transaction
                yield c
                return
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
                c.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # made read-only after it was opened
                if "readonly" not in str(exc) and "read-only" not in str(exc):
                    raise
                raise MemoryStoreError(
                    f"cannot write to the memory database {self.path}: {exc}; nothing was written"
                ) from None

    # ------------------------------------------------------------ entries
    def add(self, entry: MemoryEntry, origin: str | None = None) -> MemoryEntry:
        """Store ``entry``. With ``origin`` (who wrote it: ``RUN:STEP:N``) an entry of that origin is
        stored once: a second write of it gives back the stored entry's id."""
        return self.add_many([entry], origins=[origin] if origin else None)[0]

    def add_many(
        self,
        entries: Iterable[MemoryEntry],
        embeddings: np.ndarray | None = None,
        encoder: str | None = None,
        origins: Sequence[str | None] | None = None,
    ) -> list[MemoryEntry]:
        """Insert entries in one transaction (or inside the caller's ``write()`` transaction); an
        entry whose origin is stored already is not stored again (it takes the stored one's id)."""
        entries = list(entries)
        origins = list(origins) if origins is not None else [None] * len(entries)
        rows = []
        for i, e in enumerate(entries):
            vec = None
            if embeddings is not None:
                vec = np.ascontiguousarray(embeddings[i], dtype=np.float32).tobytes()
            rows.append(
                (
                    e.video_id,
                    e.span.start if e.span else None,
                    e.span.end if e.span else None,
                    e.kind,
                    e.text,
                    e.source,
                    e.confidence,
                    e.created_at,
                    json.dumps(e.data, default=str),
                    vec,
                    encoder if vec is not None else None,
                    origins[i],
                )
            )
        sql = (
            'INSERT INTO entries (video_id, start, "end", kind, text, source, confidence, created_at, data, '
            "embedding, encoder, origin) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (origin) WHERE origin IS NOT NULL DO NOTHING"
        )
        with self.write() as c:
            new_ids = []
            for row in rows:
                cursor = c.execute(sql, row)
                if cursor.rowcount == 0:  # its origin is stored already: the same write, made again
                    cursor = c.execute("SELECT id FROM entries WHERE origin = ?", (row[-1],))
                    new_ids.append(cursor.fetchone()[0])
                else:
                    new_ids.append(cursor.lastrowid)
        for e, new_id in zip(entries, new_ids):
            e.id = new_id
        return entries

    def get(self, entry_id: int) -> MemoryEntry | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return _row_to_entry(row) if row else None

    def get_many(self, ids: Sequence[int]) -> list[MemoryEntry]:
        if not len(ids):
            return []
        found: dict[int, MemoryEntry] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE id IN ({marks})", chunk):
                found[row[0]] = _row_to_entry(row)
        return [found[i] for i in ids if i in found]

    def query(
        self,
        video_id: str | None = None,
        kind: str | Sequence[str] | None = None,
        span: TimeSpan | None = None,
        limit: int | None = None,
        order: str = "time",
    ) -> list[MemoryEntry]:
        """Entries by video, kind and time: ``span`` keeps exactly those overlapping it."""
        where, args = self._where(video_id, kind, span)
        order_sql = 'start IS NULL, start, "end", id' if order == "time" else "id DESC" if order == "recent" else "id"
        sql = f"SELECT {_COLUMNS} FROM entries {where} ORDER BY {order_sql}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_row_to_entry(r) for r in self.conn.execute(sql, args)]

    def nearest(
        self, t: float, video_id: str | None = None, kind: str | Sequence[str] | None = None, k: int = 5
    ) -> list[MemoryEntry]:
        """The ``k`` timed entries closest to time ``t`` (0 distance when inside their span)."""
        where, args = self._where(video_id, kind, None)
        where = (where + " AND" if where else "WHERE") + " start IS NOT NULL"
        dist = 'CASE WHEN ? < start THEN start - ? WHEN ? > "end" THEN ? - "end" ELSE 0 END'
        sql = f"SELECT {_COLUMNS} FROM entries {where} ORDER BY {dist}, id LIMIT ?"
        return [_row_to_entry(r) for r in self.conn.execute(sql, [*args, t, t, t, t, int(k)])]

    def count(self, video_id: str | None = None, kind: str | Sequence[str] | None = None) -> int:
        where, args = self._where(video_id, kind, None)
        return self.conn.execute(f"SELECT COUNT(*) FROM entries {where}", args).fetchone()[0]

    def counts_by_kind(self, video_id: str | None = None) -> dict[str, int]:
        where, args = self._where(video_id, None, None)
        return dict(self.conn.execute(f"SELECT kind, COUNT(*) FROM entries {where} GROUP BY kind ORDER BY kind", args))

    def delete(self, video_id: str | None = None, kind: str | Sequence[str] | None = None) -> int:
        """Remove entries (and, for a whole video, its index stages, arrays and graph)."""
        where, args = self._where(video_id, kind, None)
        with self.write() as c:
            n = c.execute(f"DELETE FROM entries {where}", args).rowcount
            if kind is None:
                for table in ("stages", "arrays", "nodes", "edges", "videos"):
                    if video_id is None:
                        c.execute(f"DELETE FROM {table}")
                    else:
                        c.execute(f"DELETE FROM {table} WHERE video_id = ?", (video_id,))
        return n

    def clear(
        self, video_id: str | None = None, kind: str | Sequence[str] | None = None, before: float | None = None
    ) -> tuple[int, list[tuple[str, str]]]:
        """Remove entries by video, kind and creation time (``before``: a Unix time), and reset each
        index stage that lost some: its other entries, arrays, graph events and state go too, so the
        next build makes it whole again instead of reusing what is left. Without ``kind`` and
        ``before``, a whole video (or everything) goes as ``delete`` does. Returns the entries removed
        (the reset stages' other entries not counted) and the ``(video_id, stage)`` pairs reset."""
        where, args = self._where(video_id, kind, None)
        if before is not None:
            where, args = (where + " AND" if where else "WHERE") + " created_at < ?", [*args, float(before)]
        hit = f"{where} {'AND' if where else 'WHERE'} source LIKE 'index:%'"
        with self.write() as c:
            stages = sorted(
                (v, src.removeprefix("index:"))
                for v, src in c.execute(f"SELECT DISTINCT video_id, source FROM entries {hit}", args)
            )
            if kind is None and before is None:
                stages += [
                    (v, st) for v, st in c.execute("SELECT video_id, stage FROM stages") if video_id in (None, v)
                ]
                return self.delete(video_id), sorted(set(stages))
            n = c.execute(f"DELETE FROM entries {where}", args).rowcount
            for vid, stage in stages:
                c.execute("DELETE FROM entries WHERE video_id IS ? AND source = ?", (vid, f"index:{stage}"))
                c.execute("DELETE FROM arrays WHERE video_id IS ? AND stage = ?", (vid, stage))
                c.execute("DELETE FROM stages WHERE video_id IS ? AND stage = ?", (vid, stage))
            orphans = "SELECT id FROM nodes WHERE entry_id IS NOT NULL AND entry_id NOT IN (SELECT id FROM entries)"
            c.execute(f"DELETE FROM edges WHERE src IN ({orphans}) OR dst IN ({orphans})")
            c.execute(f"DELETE FROM nodes WHERE id IN ({orphans})")
        return n, stages

    def iter_all(self, video_id: str | None = None) -> Iterator[MemoryEntry]:
        where, args = self._where(video_id, None, None)
        for row in self.conn.execute(f"SELECT {_COLUMNS} FROM entries {where} ORDER BY id", args):
            yield _row_to_entry(row)

    @staticmethod
    def _where(video_id, kind, span) -> tuple[str, list]:
        clauses, args = [], []
        if video_id is not None:
            clauses.append("video_id = ?")
            args.append(video_id)
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else list(kind)
            bad = [k for k in kinds if k not in KINDS]
            if bad:
                raise ValueError(f"unknown memory kind {bad[0]!r}; one of {', '.join(KINDS)}")
            clauses.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        if span is not None:
            clauses.append('start IS NOT NULL AND start <= ? AND "end" >= ?')
            args.extend([span.end, span.start])
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", args

    # --------------------------------------------------------- embeddings
    def pending_embeddings(self, encoder: str, limit: int = 512) -> list[tuple[int, str]]:
        """Entries without an embedding from ``encoder``: ``(id, text)``."""
        return self.conn.execute(
            "SELECT id, text FROM entries WHERE encoder IS NULL OR encoder != ? ORDER BY id LIMIT ?", (encoder, limit)
        ).fetchall()

    def set_embeddings(self, ids: Sequence[int], vectors: np.ndarray, encoder: str) -> None:
        rows = [(np.ascontiguousarray(v, dtype=np.float32).tobytes(), encoder, int(i)) for i, v in zip(ids, vectors)]
        with self.write() as c:
            c.executemany("UPDATE entries SET embedding = ?, encoder = ? WHERE id = ?", rows)

    def embeddings(
        self, encoder: str, after_id: int = 0, batch: int = 50000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids, vectors)`` batches of the entries embedded by ``encoder`` with id > ``after_id``."""
        last = after_id
        while True:
            rows = self.conn.execute(
                "SELECT id, embedding FROM entries WHERE encoder = ? AND id > ? ORDER BY id LIMIT ?",
                (encoder, last, batch),
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            last = int(ids[-1])
            yield ids, vecs

    # ------------------------------------------------------------- videos
    def remember_video(self, video_id: str, path: str, info: dict) -> None:
        with self.write() as c:
            c.execute(
                "INSERT INTO videos (video_id, path, info, seen_at) VALUES (?,?,?,?) ON CONFLICT(video_id) "
                "DO UPDATE SET path = excluded.path, info = excluded.info, seen_at = excluded.seen_at",
                (video_id, path, json.dumps(info, default=str), time.time()),
            )

    def videos(self) -> list[dict]:
        rows = self.conn.execute("SELECT video_id, path, info, seen_at FROM videos ORDER BY seen_at DESC").fetchall()
        return [{"video_id": v, "path": p, "info": json.loads(i or "{}"), "seen_at": s} for v, p, i, s in rows]

    def video_path(self, video_id: str) -> str | None:
        """Where the video ``video_id`` was last read from; None when this store has never seen it."""
        row = self.conn.execute("SELECT path FROM videos WHERE video_id = ?", (video_id,)).fetchone()
        return row[0] if row else None

    def add_video(self, video_id: str, path: str, origin: str) -> None:
        """Record a video a service was given (``origin``: file, url or upload) so its id is known
        after a restart."""
        with self.write() as c:
            c.execute(
                "INSERT INTO added_videos (video_id, path, origin, added_at) VALUES (?,?,?,?) ON CONFLICT(video_id) "
                "DO UPDATE SET path = excluded.path, origin = excluded.origin, added_at = excluded.added_at",
                (video_id, path, origin, time.time()),
            )

    def added_video(self, video_id: str) -> dict | None:
        row = self.conn.execute(
            "SELECT path, origin, added_at FROM added_videos WHERE video_id = ?", (video_id,)
        ).fetchone()
        return {"video_id": video_id, "path": row[0], "origin": row[1], "added_at": row[2]} if row else None

    def added_videos(self, origin: str | None = None) -> list[dict]:
        sql, args = "SELECT video_id, path, origin, added_at FROM added_videos", ()
        if origin is not None:
            sql, args = sql + " WHERE origin = ?", (origin,)
        rows = self.conn.execute(sql + " ORDER BY added_at", args).fetchall()
        return [{"video_id": v, "path": p, "origin": o, "added_at": a} for v, p, o, a in rows]

    def remove_added_video(self, video_id: str) -> bool:
        with self.write() as c:
            return c.execute("DELETE FROM added_videos WHERE video_id = ?", (video_id,)).rowcount > 0

    def stage_status(self, video_id: str, stage: str) -> str | None:
        """The index stage's status for the video (running | done | skipped | failed); None when never built."""
        row = self.conn.execute(
            "SELECT status FROM stages WHERE video_id = ? AND stage = ?", (video_id, stage)
        ).fetchone()
        return row[0] if row else None

    # ---------------------------------------------------------- libraries
    def add_to_library(self, name: str, videos: Iterable[tuple[str, str]]) -> int:
        """Record ``videos`` (``(video_id, path)`` pairs) under the library ``name`` in one
        transaction: two processes adding to one name at once both land. A video already there
        takes its new path. Returns how many videos the library did not hold before."""
        name = library_name(name)
        now = time.time()
        rows = [(name, video_id, str(path), now) for video_id, path in videos]
        held = "SELECT COUNT(*) FROM libraries WHERE name = ?"
        with self.write() as c:
            before = c.execute(held, (name,)).fetchone()[0]
            c.executemany(
                "INSERT INTO libraries (name, video_id, path, added_at) VALUES (?,?,?,?) "
                "ON CONFLICT (name, video_id) DO UPDATE SET path = excluded.path",
                rows,
            )
            return c.execute(held, (name,)).fetchone()[0] - before

    def libraries(self) -> list[dict]:
        """Each named library: ``{"name", "videos", "added_at"}`` (when it last grew), by name."""
        if not self._has_libraries():
            return []
        rows = self.conn.execute(
            "SELECT name, COUNT(*), MAX(added_at) FROM libraries GROUP BY name ORDER BY name"
        ).fetchall()
        return [{"name": n, "videos": count, "added_at": at} for n, count, at in rows]

    def library(self, name: str) -> list[dict]:
        """The videos of the library ``name``, in the order they were added: ``{"video_id", "path",
        "added_at", "found"}`` (``found``: the file is still where it was indexed, or a URL). An
        unknown name raises ``NamedLibraryError`` naming the known ones."""
        name = library_name(name)
        rows = []
        if self._has_libraries():
            rows = self.conn.execute(
                "SELECT video_id, path, added_at FROM libraries WHERE name = ? ORDER BY added_at, path", (name,)
            ).fetchall()
        if not rows:
            known = [lib["name"] for lib in self.libraries()]
            held = (
                f"the libraries there: {', '.join(known)}"
                if known
                else f"it holds none yet: make one with `mcr-agent index DIR_OR_GLOB --library {name}`"
            )
            raise NamedLibraryError(f"no library named {name!r} in {self.path}; {held}")
        web = ("http://", "https://")  # a URL is fetched again by whoever opens it
        found = [p.startswith(web) or os.path.isfile(p) for _, p, _ in rows]
        return [{"video_id": v, "path": p, "added_at": a, "found": f} for (v, p, a), f in zip(rows, found)]

    def library_files(self, name: str) -> tuple[list[str], list[str]]:
        """The files of the library ``name`` that are where they were indexed, and those that are
        not (moved or deleted). Raises ``NamedLibraryError`` when none is."""
        rows = self.library(name)
        found = [r["path"] for r in rows if r["found"]]
        gone = [r["path"] for r in rows if not r["found"]]
        if not found:
            raise NamedLibraryError(
                f"none of the {len(rows)} videos of library {library_name(name)!r} is where it was indexed "
                f"(moved or deleted): {', '.join(gone)}; index them where they are now with "
                f"`mcr-agent index PATH --library {library_name(name)}`"
            )
        return found, gone

    def remove_library(self, name: str) -> int:
        """Forget the library ``name`` (its videos and their index stay); returns how many videos it held."""
        self.library(name)  # an unknown name: the same line as everywhere
        with self.write() as c:
            return c.execute("DELETE FROM libraries WHERE name = ?", (library_name(name),)).rowcount

    def _has_libraries(self) -> bool:
        """Whether the database has the libraries table (an older one opened read-only has not)."""
        found = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'libraries'"
        return self.conn.execute(found).fetchone() is not None


class NamedLibraryError(MCRError, ValueError):
    """A named library that cannot be asked: a bad name, one the memory database does not hold,
    or one none of whose videos is where it was indexed."""


def library_name(name: str) -> str:
    """``name`` as a library's name: stripped, 1 to 100 printable characters."""
    text = str(name or "").strip()
    if not text or len(text) > 100 or not text.isprintable():
        raise NamedLibraryError(f"{name!r} is not a library name: use 1 to 100 printable characters, e.g. talks")
    return text
