"""``shots``: the video's shots (cuts and scene changes), from the ``shots`` index stage."""
from __future__ import annotations

from typing import Optional

from mcr.types import TimeSpan

from .base import ToolContext, ToolResult, tool


@tool
def shots(ctx: ToolContext, span: Optional[TimeSpan] = None) -> ToolResult:
    """The shots of the video (between camera cuts or scene changes), with their spans.

    Args:
        span: Only shots overlapping this span (default: the whole video).
    """
    from mcr.memory.shots import shot_spans

    from .perception_stages import check_span, stage_data

    video = ctx.require_video()
    window = check_span(video, span)
    data = stage_data(ctx, "shots")
    cuts = [e for e in data.entries if e.span is not None]
    spans = [s for s in shot_spans(cuts, video.duration) if s.overlaps(window) and min(s.end, window.end) >
             max(s.start, window.start)] or [window]
    lines = [f"{i}. {s} ({s.duration:.1f} s)" for i, s in enumerate(spans, 1)]
    cut_times = sorted(round(e.span.end, 3) for e in cuts if window.start < e.span.end < window.end)
    head = f"{len(spans)} shots in {window}" + (f", cuts at {len(cut_times)} times" if cut_times else ", no cuts")
    return ToolResult(head + ":\n" + "\n".join(lines), spans=spans, metadata={"cuts": cut_times})
