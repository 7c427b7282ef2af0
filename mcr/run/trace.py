"""Traces: every run's events as JSON lines, frames as references, never as bytes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator

from mcr.errors import MCRError
from mcr.run.events import Event, event_from_dict

DEFAULT_TRACE_DIR = Path(".mcr") / "traces"


class TraceError(MCRError, ValueError):
    """A trace file that is missing or holds a line that is not an event; the message names it."""


def default_trace_path(run_id: str, trace_dir: str | os.PathLike | None = None) -> Path:
    folder = Path(trace_dir) if trace_dir is not None else DEFAULT_TRACE_DIR
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return folder / f"{stamp}-{run_id}.jsonl"


class TraceWriter:
    """Appends one JSON object a line, flushed per event, so a killed run keeps its trace."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, event: Event) -> None:
        self._file.write(json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n")
        self._file.flush()

    __call__ = write

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_trace(path: str | os.PathLike, torn_end: bool = False) -> Iterator[Event]:
    """Events of a saved trace, in order. Raises TraceError naming the bad line; with
    ``torn_end`` a last line cut off mid-write (a killed run) is left out instead."""
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"trace not found: {p}")
    with open(p, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                if torn_end and not raw.endswith(b"\n") and not f.read(1):
                    return
                raise TraceError(f"{p}:{n}: not a trace: the file is not text (a trace is JSON lines)") from None
            if not line.strip():
                continue
            try:
                event = event_from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                if torn_end and not line.endswith("\n") and not f.read(1):
                    return
                raise TraceError(f"{p}:{n}: not a trace event ({exc})") from None
            yield event


def read_trace(path: str | os.PathLike) -> list[Event]:
    return list(iter_trace(path))
