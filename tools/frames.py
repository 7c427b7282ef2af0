"""``inspect_frames``: put frames of a span into the context for the model to look at."""
from __future__ import annotations

from mcr.types import TimeSpan, format_time

from .base import ToolContext, ToolResult, ToolRetry, tool

MAX_FRAMES_PER_CALL = 64


@tool
def inspect_frames(ctx: ToolContext, span: TimeSpan, fps: float = 1.0, max_frames: int = 8) -> ToolResult:
    """Look at frames of the video in a time span.

    The frames are added to the conversation with their timestamps, so later
    answers can cite what was seen.

    Args:
        span: The time span to look at, e.g. "00:01:05-00:01:20".
        fps: Frames per second to sample inside the span.
        max_frames: At most this many frames, spread evenly over the span (1-64).
    """
    video = ctx.require_video()
    if fps <= 0:
        raise ToolRetry("fps must be above 0, e.g. 1.0")
    if not 1 <= max_frames <= MAX_FRAMES_PER_CALL:
        raise ToolRetry(f"max_frames must be between 1 and {MAX_FRAMES_PER_CALL}")
    clamped = span.clamp(video.duration)
    if span.start >= video.duration:
        raise ToolRetry(
            f"the span {span} starts after the video ends ({format_time(video.duration)}); "
            f"choose a span inside 00:00:00.0-{format_time(video.duration)}"
        )
    max_pixels = ctx.state.get("max_pixels")
    frames = video.frames(clamped, fps=fps, max_frames=max_frames, max_pixels=max_pixels)
    if len(frames) == 0:
        raise ToolRetry(f"no frames in {clamped}; widen the span")
    times = ", ".join(format_time(t) for t in frames.timestamps)
    note = "" if clamped == span else f" (span clamped to the video: {clamped})"
    text = f"{len(frames)} frames from {clamped}{note} at {times}."
    return ToolResult(text=text, frames=frames, spans=[clamped], metadata={"frames": len(frames)})
