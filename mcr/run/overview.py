"""The perceive phase's overview: representative frames of a span and what the index and
memory already hold about it (shot cuts, clip captions, speech, on-screen text)."""

from __future__ import annotations

from typing import Any

from mcr.quoting import quote
from mcr.types import Frames, TimeSpan, format_time


def overview_times(span: TimeSpan, n: int, cuts: list[float], fps: float | None) -> list[float]:
    """Times for an overview: the middle of each shot when there are shots, else evenly spread."""
    if fps:
        n = max(1, min(n, int(round(span.duration * fps)) or 1))
    bounds = [span.start] + [c for c in cuts if span.start < c < span.end] + [span.end]
    middles = [(a + b) / 2 for a, b in zip(bounds, bounds[1:]) if b > a]
    if 1 < len(middles) <= n:
        extra = n - len(middles)
        even = [span.start + (k + 0.5) * span.duration / max(extra, 1) for k in range(extra)]
        return sorted(set(round(t, 3) for t in middles + even))
    if len(middles) > n:
        import numpy as np

        picks = np.linspace(0, len(middles) - 1, n).round().astype(int)
        return [middles[i] for i in sorted(set(picks.tolist()))]
    return [span.start + (k + 0.5) * span.duration / n for k in range(n)]


def shot_cuts(memory: Any, video_id: str, span: TimeSpan) -> list[float]:
    """Times of the shot cuts the video index holds inside ``span`` (none without memory)."""
    if memory is None:
        return []
    return sorted(e.span.end for e in memory.store.query(video_id, kind="shot", span=span))


def memory_lines(memory: Any, video_id: str, kind: str, span: TimeSpan, limit: int, spread: bool = False) -> list[str]:
    """``[time] text`` for the memory entries of ``kind`` in ``span`` (none without memory): the
    first ``limit``, or with ``spread`` ``limit`` of them spread evenly over the span."""
    if memory is None:
        return []
    entries = memory.store.query(video_id, kind, span, None if spread else limit)
    if len(entries) > limit:
        step = len(entries) / limit
        entries = [entries[int(i * step)] for i in range(limit)]
    return [f"[{format_time(e.span.start)}] {e.text}" for e in entries]


def overview(
    video: Any, span: TimeSpan, n: int, fps: float | None, max_pixels: int | None, memory: Any
) -> tuple[str, Frames]:
    """The overview of ``span``: its text (frame times, cuts, captions, speech, on-screen text) and frames."""
    from mcr.tools.frames import frames_at  # the tool module loads with the first run, not with ``import mcr``

    cuts = shot_cuts(memory, video.id, span)
    frames = frames_at(video, overview_times(span, n, cuts, fps), max_pixels)
    lines = [
        f"Overview of {span}: {len(frames)} frames at " + ", ".join(format_time(t) for t in frames.timestamps) + "."
    ]
    if cuts:
        lines.append(f"{len(cuts) + 1} shots; cuts at " + ", ".join(format_time(c) for c in cuts[:40]) + ".")
    for kind, label in (("caption", "Captions"), ("transcript", "Speech"), ("ocr", "On-screen text")):
        items = memory_lines(memory, video.id, kind, span, 30, spread=kind == "caption")
        if items:
            lines.append(f"{label}:\n" + quote("\n".join(items), kind))
    return "\n".join(lines), frames
