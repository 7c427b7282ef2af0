"""``inspect_frames``: put frames of a span into the context for the model to look at.

When the span holds more frames (at the asked rate) than ``max_frames``, the frames
are chosen by shot: the span's shots (from the ``shots`` index stage, or found on the
spot in spans up to two minutes) share the frames by length, every shot gets at least
one while there are enough, and each frame is taken from the middle of its part of a
shot. A span of one shot gets evenly spread frames.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import numpy as np

from mcr.types import Frames, TimeSpan, format_time

from .base import ToolContext, ToolError, ToolResult, ToolRetry, tool
from .shots import SAMPLE_PIXELS, find_cuts
from .stages import check_span, stage_data

MAX_FRAMES_PER_CALL = 64
MIN_PIXELS = 32 * 32
ON_THE_SPOT_SHOTS_S = 120.0  # find shots on the spot only in spans up to this long


def span_cuts(ctx: ToolContext, video: Any, span: TimeSpan) -> list[float] | None:
    """Times of the shot cuts inside ``span``: from the index when it is built, else found
    now in spans up to two minutes; None when neither is possible."""
    if ctx.memory is not None:
        data = stage_data(ctx, "shots", build=False)
        if data is not None and data.status == "done":
            return sorted(e.span.end for e in data.entries if e.span is not None and span.start < e.span.end < span.end)
    if span.duration > ON_THE_SPOT_SHOTS_S:
        return None
    fps = min(4.0, 240.0 / max(span.duration, 1e-3))
    sampled = video.frames(span, fps=fps, max_pixels=SAMPLE_PIXELS)
    return [b.end for b in find_cuts(sampled.timestamps, sampled.images) if span.start < b.end < span.end]


def representative_times(span: TimeSpan, cuts: list[float], n: int) -> list[float]:
    """``n`` times spread over the shots between ``cuts``: each shot gets frames by its length
    (at least one while ``n`` allows; the longest shots first when it does not)."""
    bounds = [span.start] + [c for c in cuts if span.start < c < span.end] + [span.end]
    shots = [TimeSpan(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
    if len(shots) >= n:
        chosen = sorted(sorted(shots, key=lambda s: -s.duration)[:n])
        return [s.middle for s in chosen]
    total = sum(s.duration for s in shots)
    share = [n * s.duration / total for s in shots]
    counts = [max(1, int(x)) for x in share]
    while sum(counts) > n:  # take back from the shots with the most frames
        counts[int(np.argmax(counts))] -= 1
    order = np.argsort([-(x - int(x)) for x in share])
    k = 0
    while sum(counts) < n:
        counts[int(order[k % len(order)])] += 1
        k += 1
    times = []
    for s, c in zip(shots, counts):
        times += [s.start + (i + 0.5) * s.duration / c for i in range(c)]
    return times


def stop_if_cancelled(cancelled: threading.Event | None) -> None:
    """Raise ``ToolError`` when the call was cancelled (the registry sets the event when its time is up)."""
    if cancelled is not None and cancelled.is_set():
        raise ToolError("the call was cancelled")


def frames_at(
    video: Any, times: list[float], max_pixels: int | None, cancelled: threading.Event | None = None
) -> Frames:
    """The frames on screen at ``times``, each once, in time order (a time whose frame cannot be
    decoded gives none); stops between frames once ``cancelled`` is set."""
    parts = []
    for t in sorted(times):
        stop_if_cancelled(cancelled)
        parts.append(video.frame_at(t, max_pixels=max_pixels))
    seen, keep = set(), []
    for p in parts:
        if len(p) and p.indices[0] not in seen:
            seen.add(p.indices[0])
            keep.append(p)
    images = np.concatenate([p.images for p in keep]) if keep else np.zeros((0, 1, 1, 3), np.uint8)
    return Frames(
        images=images,
        timestamps=[p.timestamps[0] for p in keep],
        indices=[p.indices[0] for p in keep],
        source=str(video.path),
        video_id=video.id,
    )


@tool(cancellable=True)
def inspect_frames(
    ctx: ToolContext, span: TimeSpan, fps: float = 1.0, max_frames: int = 8, max_pixels: Optional[int] = None
) -> ToolResult:
    """Look at frames of the video in a time span.

    The frames are added to the conversation with their timestamps, so later
    answers can cite what was seen. When the span holds more frames than max_frames,
    one or more frames are taken from each shot in it.

    Args:
        span: The time span to look at, e.g. "00:01:05-00:01:20".
        fps: Frames per second to sample inside the span.
        max_frames: At most this many frames, spread evenly over the span (1-64).
        max_pixels: Make each frame at most this many pixels (e.g. 200704 for 448x448); default: the model's size.
    """
    video = ctx.require_video()
    if fps <= 0:
        raise ToolRetry("fps must be above 0, e.g. 1.0")
    if not 1 <= max_frames <= MAX_FRAMES_PER_CALL:
        raise ToolRetry(f"max_frames must be between 1 and {MAX_FRAMES_PER_CALL}")
    if max_pixels is not None and max_pixels < MIN_PIXELS:
        raise ToolRetry(f"max_pixels must be at least {MIN_PIXELS} (e.g. 200704 for 448x448)")
    clamped = check_span(video, span)
    limit = ctx.max_pixels
    if max_pixels is not None:
        limit = min(limit, max_pixels) if limit else max_pixels
    how = "evenly spread"
    frames = None
    if clamped.duration * fps > max_frames and max_frames > 1:
        stop_if_cancelled(ctx.cancelled)
        cuts = span_cuts(ctx, video, clamped)
        if cuts:
            frames = frames_at(video, representative_times(clamped, cuts, max_frames), limit, ctx.cancelled)
            how = f"chosen across {len(cuts) + 1} shots"
    if frames is None:
        stop_if_cancelled(ctx.cancelled)
        frames = video.frames(clamped, fps=fps, max_frames=max_frames, max_pixels=limit)
    if len(frames) == 0:
        raise ToolRetry(f"no frames in {clamped}; widen the span")
    times = ", ".join(format_time(t) for t in frames.timestamps)
    note = "" if clamped == span else f" (span clamped to the video: {clamped})"
    text = f"{len(frames)} frames from {clamped}{note} at {times}."
    if how != "evenly spread":
        text += f" Frames {how}."
    return ToolResult(text=text, frames=frames, spans=[clamped], metadata={"frames": len(frames), "picked": how})
