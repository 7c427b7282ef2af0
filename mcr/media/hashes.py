"""The content hash of a media file, kept per file so that a library's videos are known by id
without reading them again.

A video's id is the sha256 of its bytes (a moved or renamed copy has the same id). Hashing a
long video reads all of it, and a library of a thousand hours holds hundreds of gigabytes: every
search of it would read them all again. So the hash is kept in ``$MCR_CACHE/media/hashes.db``
(``~/.cache/mcr``) under the file's resolved path, size, inode and modification and change times
(ns; the change time cannot be set back by a program, so a file rewritten and given its old
modification time is still read again), and the file is read again when one of them has changed. The cache only saves time: one that
cannot be opened or written is passed over and the file is hashed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """CREATE TABLE IF NOT EXISTS hashes (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL, sha256 TEXT NOT NULL
)"""


def cache_path() -> Path:
    return Path(os.environ.get("MCR_CACHE") or Path.home() / ".cache" / "mcr") / "media" / "hashes.db"


def sha256_of(path: Path) -> str:
    """sha256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _connect() -> sqlite3.Connection | None:
    try:
        db = cache_path()
        db.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(db, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA)
        return conn
    except (OSError, sqlite3.Error) as exc:
        log.debug("the hash cache %s is not usable (%s): hashing without it", cache_path(), exc)
        return None


def file_hash(path: str | os.PathLike) -> str:
    """sha256 of ``path``'s bytes: from the cache while the file is unchanged (same path, size,
    times and inode), else read and kept."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    conn = _connect()
    if conn is None:
        return sha256_of(path)
    try:
        try:
            row = conn.execute(
                "SELECT sha256 FROM hashes WHERE path = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ? AND inode = ?",
                key,
            ).fetchone()
        except sqlite3.Error:
            row = None
        if row:
            return row[0]
        digest = sha256_of(path)
        try:
            with conn:  # one entry a path: what was kept of a file since changed is replaced
                conn.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?)", (*key, digest))
        except sqlite3.Error as exc:
            log.debug("could not keep the hash of %s (%s)", path, exc)
        return digest
    finally:
        conn.close()


__all__ = ["cache_path", "file_hash", "sha256_of"]
