"""Frame stages read together: one decode of a chunk feeds every stage that works on frames.

A frame stage says which frames a chunk needs (:meth:`FrameStage.request`: times, a size,
and whether undecodable packets must fail it) and computes the chunk from them
(:meth:`FrameStage.from_frames`). Built alone, a stage decodes its own frames; built with
others (``VideoIndex.build`` groups stages that share ``read_together`` and a chunk
length), one pass over the chunk (:func:`mcr.tools.sampling.stream_many`) decodes each
frame once and hands every stage the frames it asked for, at its own size. A stage gets
exactly the same frames either way, so the index is the same.

A stage may use what another stage found in the same chunk (``uses``: their names; on-screen
text reads each shot's representative frame, so it uses the shot cuts). In one pass it waits
for that stage's result of the chunk; otherwise the index gives it the other stage's stored
entries for the chunk (``known``, set by the build before each chunk).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from mcr.memory import ChunkResult
from mcr.types import TimeSpan

from .sampling import Request, stream_many

Frames = list[tuple[float, np.ndarray]]


def read_frames(video: Any, requests: Sequence[Request]) -> list[Frames]:
    """The ``(timestamp, image)`` frames of each request, from one decoding pass."""
    out: list[Frames] = [[] for _ in requests]
    for t, images in stream_many(video, requests):
        for i, image in images.items():
            out[i].append((t, image))
    return out


def read_together(video: Any, span: TimeSpan, stages: Sequence["FrameStage"]) -> list[ChunkResult]:
    """Each stage's result for the chunk ``span``, from one decode of the frames they ask for.
    A ``DamagedMedia`` from a strict request fails the whole pass (the index then reads each
    stage alone, narrowing down the damaged span).

    The stages then work on their frames at the same time, each in a thread (their engines,
    onnxruntime and numpy, release the interpreter while they compute), so a slow reader such
    as OCR on one core does not hold up the others. Each result's info gains ``seconds_work``,
    the time the stage spent on its frames."""
    frames = _frames_ahead(video, span, stages)
    position = {st.name: i for i, st in enumerate(stages)}
    done: dict[int, Future] = {}

    def work(i: int) -> ChunkResult:
        for name in getattr(stages[i], "uses", ()):
            if name in position:  # this chunk's result of a stage in the same pass
                stages[i].known[name] = done[position[name]].result().entries
        t0 = time.perf_counter()
        result = stages[i].from_frames(video, span, frames[i])
        frames[i] = []  # the frames go as soon as their stage is done with them
        result.info["seconds_work"] = round(time.perf_counter() - t0, 3)
        return result

    if len(stages) == 1:
        return [work(0)]
    waits = [i for i, st in enumerate(stages) if any(n in position for n in getattr(st, "uses", ()))]
    with ThreadPoolExecutor(max_workers=len(stages), thread_name_prefix="frame-stage") as pool:
        for i in [i for i in range(len(stages)) if i not in waits] + waits:  # those used are started first
            done[i] = pool.submit(work, i)
        return [done[i].result() for i in range(len(stages))]


_ahead: dict[tuple, Future] = {}  # the next chunk's frames, decoded while this chunk's are worked on
_ahead_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frames-ahead")
_ahead_lock = threading.Lock()


def _frames_ahead(video: Any, span: TimeSpan, stages: Sequence["FrameStage"]) -> list[Frames]:
    """The stages' frames for ``span`` (decoded ahead by the call for the chunk before, when
    there was one), after starting to decode the next chunk's. Only a walk of several stages
    decodes ahead; a decode nobody asks for is dropped at the next call."""
    ids = tuple((id(st), st.name, st.version) for st in stages)
    with _ahead_lock:
        found = _ahead.pop((str(video.path), span.start, span.end, ids), None)
        for stale in _ahead.values():
            stale.cancel()
        _ahead.clear()
        if len(stages) > 1 and span.end < video.duration - 1e-6:
            nxt = TimeSpan(span.end, min(float(video.duration), span.end + span.duration))
            requests = [st.request(video, nxt) for st in stages]
            _ahead[(str(video.path), nxt.start, nxt.end, ids)] = _ahead_pool.submit(read_frames, video, requests)
    if found is not None:
        return found.result()
    return read_frames(video, [st.request(video, span) for st in stages])


class FrameStage:
    """Base of the index stages computed from frames (shots, on-screen text, embeddings)."""

    read_together = staticmethod(read_together)
    uses: tuple[str, ...] = ()  # stages whose entries of the same chunk this one reads from ``known``

    @property
    def known(self) -> dict[str, list | None]:
        """The entries of each stage in ``uses`` for the chunk being read (None: not built there)."""
        if "_known" not in self.__dict__:
            self._known: dict[str, list | None] = {}
        return self._known

    def request(self, video: Any, span: TimeSpan) -> Request:
        raise NotImplementedError

    def from_frames(self, video: Any, span: TimeSpan, frames: Frames) -> ChunkResult:
        raise NotImplementedError

    def run_chunk(self, video: Any, span: TimeSpan) -> ChunkResult:
        return read_together(video, span, [self])[0]
