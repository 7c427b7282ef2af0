"""The results file: one JSON object a line per finished question, appended atomically.

Each record is written with a single ``write`` on a file opened for appending and then
flushed to disk, so a killed runner leaves at most one torn last line. Reading skips a
torn last line; opening for appending cuts it off first, so the next record starts on a
line of its own. A question answered twice (``--retry-errors``) keeps its last record.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Iterator

from mcr.errors import MCRError

RESULTS = "results.jsonl"


class ResultsError(MCRError, ValueError):
    """A results file with a bad line (not the torn last one); the message names the line."""


def results_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / RESULTS


def iter_records(path: str | os.PathLike) -> Iterator[dict]:
    """Records in file order. A torn (unterminated, unreadable) last line is skipped; a bad line
    elsewhere is an error naming it."""
    p = Path(path)
    if not p.is_file():
        return
    with open(p, "rb") as f:
        lines = f.read().split(b"\n")
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if n == len(lines):  # the last piece, with no newline after it: a write cut short
                return
            raise ResultsError(
                f"{p}:{n}: not a result record; fix or delete that line, or pass another --out"
            ) from None
        if isinstance(record, dict) and "id" in record:
            yield record


def read_results(path: str | os.PathLike) -> dict[str, dict]:
    """The latest record of each question, by id (in the order questions were first finished)."""
    latest: dict[str, dict] = {}
    for record in iter_records(path):
        latest[str(record["id"])] = record
    return latest


def repair(path: str | os.PathLike) -> int:
    """Cut a torn last line off; returns the bytes removed."""
    p = Path(path)
    if not p.is_file():
        return 0
    size = p.stat().st_size
    if size == 0:
        return 0
    with open(p, "rb+") as f:
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return 0
        # find the end of the last whole line
        block, pos = 1 << 16, size
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        f.seek(keep)
        tail = f.read()
        try:  # cut right before its newline: the record is whole, so keep it
            json.loads(tail.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            f.truncate(keep)
            return size - keep
        f.seek(size)
        f.write(b"\n")
        return 0


class ResultsWriter:
    """Appends records, one line each, from any thread."""

    def __init__(self, path: str | os.PathLike, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self.fsync = fsync

    def append(self, record: dict) -> None:
        data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._lock:
            written = os.write(self._fd, data)
            while written < len(data):  # rare: a short write; the rest follows at once
                written += os.write(self._fd, data[written:])
            if self.fsync:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["RESULTS", "ResultsError", "ResultsWriter", "iter_records", "read_results", "repair", "results_path"]
