"""The memory database's schema and what opening one checks: that the file is ours (or new),
that it can be written, and that an older version's database is brought up to this schema."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from mcr.errors import MCRError

APPLICATION_ID = 0x4D435231  # "MCR1"
SCHEMA_VERSION = 3  # 2: entries.origin, the identity of a run's write (unique where set); 3: libraries

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    video_id TEXT,
    start REAL,
    "end" REAL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    confidence REAL,
    created_at REAL NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    embedding BLOB,
    encoder TEXT,
    origin TEXT
);
CREATE INDEX IF NOT EXISTS entries_video_time ON entries(video_id, start, "end");
CREATE INDEX IF NOT EXISTS entries_kind ON entries(kind, video_id);
CREATE INDEX IF NOT EXISTS entries_pending ON entries(encoder);
CREATE TABLE IF NOT EXISTS videos (
    video_id TEXT PRIMARY KEY,
    path TEXT,
    info TEXT NOT NULL DEFAULT '{}',
    seen_at REAL
);
CREATE TABLE IF NOT EXISTS stages (
    video_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    cursor REAL NOT NULL DEFAULT 0,
    total REAL NOT NULL DEFAULT 0,
    info TEXT NOT NULL DEFAULT '{}',
    updated_at REAL,
    PRIMARY KEY (video_id, stage)
);
CREATE TABLE IF NOT EXISTS leases (
    video_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (video_id, stage)
);
CREATE TABLE IF NOT EXISTS arrays (
    video_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    key REAL NOT NULL,
    dtype TEXT NOT NULL,
    shape TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (video_id, stage, key)
);
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    video_id TEXT,
    type TEXT NOT NULL,
    label TEXT NOT NULL,
    start REAL,
    "end" REAL,
    entry_id INTEGER,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS edges (
    src TEXT NOT NULL,
    dst TEXT NOT NULL,
    relation TEXT NOT NULL,
    video_id TEXT,
    PRIMARY KEY (src, dst, relation)
);
CREATE TABLE IF NOT EXISTS added_videos (
    video_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    origin TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS libraries (
    name TEXT NOT NULL,
    video_id TEXT NOT NULL,
    path TEXT NOT NULL,
    added_at REAL NOT NULL,
    PRIMARY KEY (name, video_id)
);
"""

_COLUMNS = 'id, video_id, start, "end", kind, text, source, confidence, created_at, data'


class MemoryStoreError(MCRError):
    """The memory database cannot be used; the message names the file and what to do."""


def _uri(path: Path, mode: str = "") -> str:
    """A SQLite URI for ``path`` (any characters in the name), with ``mode=ro`` or ``immutable=1``."""
    from urllib.parse import quote

    return f"file:{quote(str(Path(path).absolute()))}" + (f"?{mode}" if mode else "")


def connect_readonly(path: Path, timeout: float = 30) -> sqlite3.Connection:
    """A read-only connection. A database in a folder that cannot be written (no room for the
    WAL's shared-memory file) is opened as immutable: nothing here can change it anyway."""
    try:
        conn = sqlite3.connect(_uri(path, "mode=ro"), uri=True, timeout=timeout, isolation_level=None)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        if os.access(Path(path).absolute().parent, os.W_OK):
            raise
    return sqlite3.connect(_uri(path, "immutable=1"), uri=True, timeout=timeout, isolation_level=None)


def _when_unlocked(do: Any, wait_s: float = 30.0) -> Any:
    """``do()``, tried again while another process holds the lock it needs (switching a new
    database to WAL takes an exclusive lock and does not wait by itself)."""
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        try:
            return do()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def unwritable(path: Path) -> str | None:
    """Why the memory database at ``path`` cannot be written from here, or None when it can."""
    path = Path(path).absolute()
    if path.exists():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            return f"its folder {path.parent} is read-only (SQLite keeps its journal beside the database)"
        if not os.access(path, os.W_OK):
            return "the file is read-only"
        return None
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is read-only"
    return None


def _check_foreign(path: Path) -> None:
    """Refuse a file that is not ours, before anything is written to it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    if path.is_dir():
        raise MemoryStoreError(f"{path} is a folder, not a memory database; name a file such as {path / 'memory.db'}")
    try:
        with open(path, "rb") as f:
            header = f.read(16)
    except OSError as exc:
        raise MemoryStoreError(f"cannot read the memory database {path}: {exc.strerror}") from None
    if header != b"SQLite format 3\x00":
        raise MemoryStoreError(
            f"{path} is not an MCR memory database (not SQLite); it was left untouched. "
            "Name another file with --memory or move this one away"
        )
    try:
        conn = connect_readonly(path, timeout=10)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise MemoryStoreError(f"{path} is not a readable memory database ({exc}); it was left untouched") from None
    if app_id != APPLICATION_ID and tables:
        raise MemoryStoreError(
            f"{path} is a SQLite database of another program, not an MCR memory database; "
            "it was left untouched. Name another file"
        )


def _migrate(c: sqlite3.Connection) -> None:
    """Bring a database made by an older version up to this schema (inside the opening transaction)."""
    if "origin" not in {row[1] for row in c.execute("PRAGMA table_info(entries)")}:
        c.execute("ALTER TABLE entries ADD COLUMN origin TEXT")
    # a write that names its origin (run:step:n) is stored once, however often a resumed run repeats it
    c.execute("CREATE UNIQUE INDEX IF NOT EXISTS entries_origin ON entries(origin) WHERE origin IS NOT NULL")
