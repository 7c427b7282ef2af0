"""``shots``: the video's shots (cuts and scene changes), and the detector behind them.

The ``shots`` index stage samples frames at ``fps`` at low resolution; each gets a joint
colour histogram (4 levels per channel) and a 16x12 grey thumbnail. A cut is a sampled
step where both the histogram distance (half the L1 distance, 0..1) and the thumbnail
change are large and the histogram distance is the largest of its neighbourhood. Each
cut is stored as a ``shot`` entry whose span runs from the last frame before the cut to
the first frame after it. The ``shots`` tool reads the stage.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from mcr.memory import ChunkResult, MemoryEntry, register_stage
from mcr.types import TimeSpan, format_time

from .base import ToolContext, ToolResult, tool
from .stages import check_span, stage_data

SAMPLE_PIXELS = 96 * 72


def frame_signature(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = (image // 64).astype(np.int32)
    codes = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]
    hist = np.bincount(codes.ravel(), minlength=64).astype(np.float32)
    hist /= max(hist.sum(), 1.0)
    grey = image.mean(axis=2)
    h, w = grey.shape
    ys = np.arange(12) * h // 12
    xs = np.arange(16) * w // 16
    thumb = grey[np.ix_(ys, xs)].astype(np.float32) / 255.0
    return hist, thumb


def find_cuts(
    timestamps: list[float], images: np.ndarray, hist_threshold: float = 0.3, pixel_threshold: float = 0.08
) -> list[tuple[float, float, float]]:
    """``(time before, time after, strength)`` for each cut between consecutive frames."""
    if len(timestamps) < 2:
        return []
    sigs = [frame_signature(img) for img in images]
    hist_d = np.array([0.5 * np.abs(a[0] - b[0]).sum() for a, b in zip(sigs, sigs[1:])])
    pix_d = np.array([np.abs(a[1] - b[1]).mean() for a, b in zip(sigs, sigs[1:])])
    cuts = []
    for i, (hd, pd) in enumerate(zip(hist_d, pix_d)):
        if hd < hist_threshold or pd < pixel_threshold:
            continue
        lo, hi = max(0, i - 2), min(len(hist_d), i + 3)
        if hd < hist_d[lo:hi].max():
            continue
        cuts.append((timestamps[i], timestamps[i + 1], float(hd)))
    return cuts


class ShotStage:
    """The ``shots`` index stage: cut entries (kind ``shot``), a minute of video at a time."""

    name = "shots"
    version = "1"

    def __init__(self, fps: float = 4.0, chunk_s: float = 60.0, device: str | None = None, models: Any = None) -> None:
        self.fps = fps
        self.chunk_s = chunk_s

    def skip_reason(self, video: Any) -> str | None:
        return None

    def run_chunk(self, video: Any, span: TimeSpan) -> ChunkResult:
        # start one sample early so a cut right at the chunk's start is seen
        start = max(0.0, span.start - 1.0 / self.fps)
        frames = video.frames(TimeSpan(start, span.end), fps=self.fps, max_pixels=SAMPLE_PIXELS)
        entries = []
        for before, after, strength in find_cuts(frames.timestamps, frames.images):
            if not span.start <= after < span.end + 1e-6 or (span.start > 0 and after <= span.start):
                continue
            entries.append(
                MemoryEntry(
                    f"shot cut at {format_time(after)} (change {strength:.2f})",
                    "shot",
                    span=TimeSpan(before, after),
                    confidence=min(1.0, strength),
                )
            )
        return ChunkResult(entries)


def shot_spans(cuts: list[MemoryEntry], duration: float) -> list[TimeSpan]:
    """The shots between the stored cuts, covering the whole video."""
    bounds = [0.0] + [c.span.end for c in sorted(cuts, key=lambda e: e.span.end)] + [duration]
    return [TimeSpan(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


register_stage("shots", ShotStage)


@tool
def shots(ctx: ToolContext, span: Optional[TimeSpan] = None) -> ToolResult:
    """The shots of the video (between camera cuts or scene changes), with their spans.

    Args:
        span: Only shots overlapping this span (default: the whole video).
    """
    video = ctx.require_video()
    window = check_span(video, span)
    data = stage_data(ctx, "shots")
    cuts = [e for e in data.entries if e.span is not None]
    spans = [
        s
        for s in shot_spans(cuts, video.duration)
        if s.overlaps(window) and min(s.end, window.end) > max(s.start, window.start)
    ] or [window]
    lines = [f"{i}. {s} ({s.duration:.1f} s)" for i, s in enumerate(spans, 1)]
    cut_times = sorted(round(e.span.end, 3) for e in cuts if window.start < e.span.end < window.end)
    head = f"{len(spans)} shots in {window}" + (f", cuts at {len(cut_times)} times" if cut_times else ", no cuts")
    return ToolResult(head + ":\n" + "\n".join(lines), spans=spans, metadata={"cuts": cut_times})
