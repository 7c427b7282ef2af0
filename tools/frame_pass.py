"""Frame stages read together: one decode of a chunk feeds every stage that works on frames.

A frame stage says which frames a chunk needs (:meth:`FrameStage.request`: times, a size,
and whether undecodable packets must fail it) and computes the chunk from them
(:meth:`FrameStage.from_frames`). Built alone, a stage decodes its own frames; built with
others (``VideoIndex.build`` groups stages that share ``read_together`` and a chunk
length), one pass over the chunk (:func:`mcr.tools.sampling.stream_many`) decodes each
frame once and hands every stage the frames it asked for, at its own size. A stage gets
exactly the same frames either way, so the index is the same.
"""

from __future__ import annotations

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
    stage alone, narrowing down the damaged span)."""
    frames = read_frames(video, [st.request(video, span) for st in stages])
    return [st.from_frames(video, span, f) for st, f in zip(stages, frames)]


class FrameStage:
    """Base of the index stages computed from frames (shots, on-screen text, embeddings)."""

    read_together = staticmethod(read_together)

    def request(self, video: Any, span: TimeSpan) -> Request:
        raise NotImplementedError

    def from_frames(self, video: Any, span: TimeSpan, frames: Frames) -> ChunkResult:
        raise NotImplementedError

    def run_chunk(self, video: Any, span: TimeSpan) -> ChunkResult:
        return read_together(video, span, [self])[0]
