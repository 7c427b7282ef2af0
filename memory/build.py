"""Building index stages chunk by chunk: one loop, for one stage or for several read together.

Each stage being built is a :class:`StageRun`: its lease, cursor, info and damaged spans.
:func:`build_runs` walks the video a chunk at a time; the stages whose cursor stands at the
chunk are read together when they share a ``read_together`` (one decode of the chunk feeds
them all), otherwise one after another. Each stage commits its own chunk in its own
transaction, so a killed build resumes every stage at its next chunk.

Where a chunk cannot be read whole (damaged media), each stage reads it alone and a piece
that fails is read in halves, down to a few seconds; the pieces that still fail are recorded
as damaged spans and the stage goes on after them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from mcr.media.video import DamagedMedia
from mcr.types import TimeSpan, format_time

from .entries import MemoryEntry
from .lease import LeaseLost

MIN_DAMAGED_S = 2.0  # a damaged chunk is read in halves down to pieces about this long

Progress = Callable[[str, float, float], None]  # (stage, seconds done, seconds total)


@dataclass
class ChunkResult:
    """A chunk's entries and arrays. ``info``: what the chunk cost or counted (numbers are
    summed over the chunks, lists joined) into the stage's info and report. An entry whose
    ``data["entities"]`` names people or things also joins the memory's entity and event graph."""

    entries: list[MemoryEntry] = field(default_factory=list)
    arrays: dict[float, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class Stage(Protocol):
    """One kind of perception over a whole video, computed chunk by chunk. A stage with
    ``embed = True`` has its entries embedded (the memory's encoder) as they are stored."""

    name: str
    version: str
    chunk_s: float

    def skip_reason(self, video: Any) -> str | None:
        """Why this stage cannot run on this video (e.g. no audio track), or None."""

    def run_chunk(self, video: Any, span: TimeSpan) -> ChunkResult: ...


@dataclass
class StageReport:
    stage: str
    status: str  # reused | built | resumed | skipped | failed
    entries: int = 0
    seconds: float = 0.0
    reason: str = ""
    info: dict = field(default_factory=dict)  # the chunks' summed ``info`` (and ``per_video_hour``)

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "status": self.status,
            "entries": self.entries,
            "seconds": round(self.seconds, 3),
            "reason": self.reason,
            "info": self.info,
        }


def merge_info(total: dict, part: dict) -> dict:
    """``part`` added into ``total``: numbers summed, lists joined, anything else replaced."""
    for key, value in part.items():
        old = total.get(key)
        if isinstance(value, (int, float)) and isinstance(old, (int, float)) and not isinstance(value, bool):
            total[key] = old + value
        elif isinstance(value, list) and isinstance(old, list):
            total[key] = old + value
        else:
            total[key] = value
    return total


def per_hour(info: dict, seconds: float) -> dict:
    """The numbers of ``info`` per hour of a video ``seconds`` long."""
    if seconds <= 0:
        return {}
    return {
        k: round(v * 3600.0 / seconds, 2)
        for k, v in info.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _damage(exc: Exception, video: Any) -> str:
    """What went wrong in a damaged piece, without the file's name or the frame times (the
    damaged span says where)."""
    text = " ".join(str(exc).split()).replace(f"{video.path}: ", "")
    text = re.sub(r"(frames?) at [0-9:.]+(?:-[0-9:.]+)? ", r"\1 ", text)
    return text or type(exc).__name__


def read_piece(video: Any, stage: Any, span: TimeSpan, damaged: list[dict]) -> ChunkResult:
    """The stage's result for ``span``; where part of it cannot be read, its halves are read
    apart (down to a few seconds) and the parts that fail are added to ``damaged`` instead."""
    try:
        return stage.run_chunk(video, span)
    except DamagedMedia as exc:  # anything else fails the stage, to be retried from this chunk
        if span.duration <= max(MIN_DAMAGED_S, stage.chunk_s / 16):
            reason = _damage(exc, video)
            if damaged and abs(damaged[-1]["span"][1] - span.start) < 1e-6:
                damaged[-1]["span"][1] = span.end  # one damaged stretch, not many pieces
            else:
                damaged.append({"span": span.to_list(), "reason": reason})
            return ChunkResult()
    middle = (span.start + span.end) / 2
    first = read_piece(video, stage, TimeSpan(span.start, middle), damaged)
    second = read_piece(video, stage, TimeSpan(middle, span.end), damaged)
    arrays = {**first.arrays, **second.arrays}
    return ChunkResult(first.entries + second.entries, arrays, merge_info(dict(first.info), second.info))


class StageRun:
    """One stage's build in progress, holding its lease. ``report`` is set once it ends."""

    def __init__(self, index: Any, stage: Any, lease: Any, note: str = "") -> None:
        self.index, self.stage, self.lease, self.note = index, stage, lease, note
        self.t0 = time.perf_counter()
        self.total = float(index.video.duration)
        self.report: StageReport | None = None
        self.cursor = 0.0
        self.info: dict = {}
        self.damaged: list[dict] = []
        self.resumed = False
        self.lost_in_a_row = 0
        self.read_any = False

    def _end(self, status: str, entries: int, reason: str) -> None:
        chunks = self.info.get("chunks", {})
        self.report = StageReport(self.stage.name, status, entries, time.perf_counter() - self.t0, reason, chunks)

    def _fail(self, reason: str, cursor: float, keep: bool = True) -> None:
        self.index._set_state(self.stage, "failed", cursor, self.total, {**self.info, "reason": reason})
        self._end("failed", self.index._count(self.stage.name) if keep else 0, reason)

    def begin(self) -> None:
        """Skip the stage, resume it from its cursor, or start it afresh."""
        index, stage = self.index, self.stage
        reason = stage.skip_reason(index.video)
        if reason:
            index._set_state(stage, "skipped", self.total, self.total, {"reason": reason})
            self._end("skipped", 0, reason)
            return
        st = index.state(stage.name)
        if st is not None and st["status"] == "done" and st["version"] == stage.version:
            self.note = "; ".join(n for n in (self.note, "rebuilt: an older build stored some entries twice") if n)
            st = None
        self.resumed = st is not None and st["version"] == stage.version and st["cursor"] > 0
        if not self.resumed:
            index._reset(stage.name)
            index._set_state(stage, "running", 0.0, self.total)
            cut = getattr(index.video, "damaged", [])  # a cut-off tail: the file claims it, holds no data
            self.damaged = [{"span": s.to_list(), "reason": "the file is cut off: it holds no data here"} for s in cut]
            return
        self.cursor = float(st["cursor"])
        self.info = {"chunks": st["info"]["chunks"]} if "chunks" in st["info"] else {}
        self.damaged = list(st["info"].get("damaged", []))
        self.read_any = True

    def add(self, span: TimeSpan, result: ChunkResult | Exception, before: int, progress: Progress | None) -> None:
        """Commit the chunk's result (or fail the stage on the error that reading it raised)."""
        if isinstance(result, Exception):  # not damage (an engine or a server failed): retried from this chunk
            self._fail(f"{type(result).__name__} at {span}: {result}", self.cursor)
            return
        damaged = self.damaged
        last = damaged[-1]["span"] if len(damaged) > before else None
        whole = last is not None and last[0] <= span.start + 1e-6 and last[1] >= span.end - 1e-6
        self.read_any = self.read_any or not whole
        self.lost_in_a_row = self.lost_in_a_row + 1 if whole else 0
        if self.lost_in_a_row >= 2 and not self.read_any:  # nothing read so far: a broken engine or file
            where = f"nothing could be read from {format_time(0)} to {format_time(span.end)}"
            self._fail(f"{damaged[-1]['reason']} ({where})", 0.0, keep=False)
            return
        if damaged:
            self.info["damaged"] = damaged
        if result.info:
            self.info["chunks"] = merge_info(dict(self.info.get("chunks", {})), result.info)
        try:
            self.index._commit(self.stage, self.lease, self.cursor, span, result, self.info)
        except LeaseLost as exc:  # another builder took the stage over: it goes on, this one stops
            self._end("failed", self.index._count(self.stage.name), str(exc))
            return
        self.cursor = span.end
        if progress:
            progress(self.stage.name, self.cursor, self.total)

    def finish(self) -> None:
        info, damaged, note = self.info, self.damaged, self.note
        if "chunks" in info:
            info["chunks"] = {**info["chunks"], "per_video_hour": per_hour(info["chunks"], self.total)}
        if damaged:
            spans = ", ".join(f"{TimeSpan(*d['span'])} ({d['reason']})" for d in damaged[:5])
            more = f" and {len(damaged) - 5} more" if len(damaged) > 5 else ""
            inside = sum(max(0.0, min(d["span"][1], self.total) - d["span"][0]) for d in damaged)
            if inside >= self.total - 1e-6:  # nothing could be read
                self._fail(f"nothing could be read: {spans}{more}", 0.0, keep=False)
                return
            note = "; ".join(n for n in (note, f"damaged spans skipped: {spans}{more}") if n)
        self.index._set_state(self.stage, "done", self.total, self.total, info)
        self._end("resumed" if self.resumed else "built", self.index._count(self.stage.name), note)


def read_chunk(video: Any, runs: Sequence[StageRun], span: TimeSpan) -> list[ChunkResult | Exception]:
    """Each run's result for ``span`` (or the error reading it raised): from one pass when the
    stages can be read together, otherwise, or when that pass fails, each stage alone."""
    for r in runs:  # what the stages a stage uses stored for this chunk (a stage of this pass: its result)
        for name in getattr(r.stage, "uses", ()):
            r.stage.known[name] = r.index.chunk_entries(name, span)
    together = getattr(runs[0].stage, "read_together", None)
    if len(runs) > 1 and together is not None:
        try:
            return list(together(video, span, [r.stage for r in runs]))
        except Exception:  # damaged media, or one stage's engine failed: each stage alone says which
            pass
    out: list[ChunkResult | Exception] = []
    read: dict[str, ChunkResult] = {}  # the stages read so far, for those after them that use them
    for r in runs:
        for name in getattr(r.stage, "uses", ()):
            if name in read:
                r.stage.known[name] = read[name].entries
        try:
            out.append(read_piece(video, r.stage, span, r.damaged))
            read[r.stage.name] = out[-1]
        except Exception as exc:
            out.append(exc)
    return out


def build_runs(index: Any, runs: Sequence[StageRun], progress: Progress | None) -> list[StageReport]:
    """Build ``runs`` (stages of one chunk length) over the video, chunk by chunk; each stage
    resumes at its own cursor and joins the others once they reach it."""
    for r in runs:
        r.begin()
    total = float(index.video.duration)
    while True:
        going = [r for r in runs if r.report is None and r.cursor < total - 1e-6]
        if not going:
            break
        start = min(r.cursor for r in going)
        here = [r for r in going if abs(r.cursor - start) < 1e-6]
        span = TimeSpan(start, min(total, start + here[0].stage.chunk_s))
        before = [len(r.damaged) for r in here]
        for r, n, result in zip(here, before, read_chunk(index.video, here, span)):
            r.add(span, result, n, progress)
    for r in runs:
        if r.report is None:
            r.finish()
    return [r.report for r in runs]  # type: ignore[misc]
