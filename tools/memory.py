"""Memory tools: write what was learned, search it, ask the event graph."""

from __future__ import annotations

from typing import List, Literal, Optional

from mcr.quoting import UNTRUSTED, quote
from mcr.types import TimeSpan, TimeSpanError, parse_time

from .base import ToolContext, ToolError, ToolResult, ToolRetry, tool
from .stages import check_span

Kind = Literal["observation", "transcript", "caption", "ocr", "fact", "entity", "event", "answer", "shot", "summary"]


def _memory(ctx: ToolContext):
    if ctx.memory is None:
        raise ToolError("memory is off in this run")
    return ctx.memory


def _video_id(ctx: ToolContext) -> str | None:
    return ctx.video.id if ctx.video is not None else None


def _clamp(ctx: ToolContext, span: TimeSpan | None) -> TimeSpan | None:
    if span is None or ctx.video is None:
        return span
    return check_span(ctx.video, span)


@tool
def memory_write(
    ctx: ToolContext,
    text: str,
    span: Optional[TimeSpan] = None,
    kind: Kind = "observation",
    entities: List[str] = [],  # noqa: B006 (arguments are validated and copied before the call)
) -> ToolResult:
    """Save something you learned about the video, so later steps and later questions can use it.

    Args:
        text: What you learned, in one or two plain sentences.
        span: The span it holds for, if any.
        kind: What sort of memory it is.
        entities: People or things taking part, for kind "event" (they join the event graph).
    """
    memory = _memory(ctx)
    if not text.strip():
        raise ToolRetry("text is empty: write what you learned")
    span = _clamp(ctx, span)
    entry = memory.write(text, kind, _video_id(ctx), span, source=f"run:{ctx.run_id}")
    if kind == "event" or entities:
        memory.graph.add_event(text, span, entities, _video_id(ctx), entry_id=entry.id)
    return ToolResult(f"saved as {entry.ref}.", spans=[span] if span else [], metadata={"entry_id": entry.id})


@tool
def memory_search(
    ctx: ToolContext, query: str, span: Optional[TimeSpan] = None, kind: Optional[Kind] = None, k: int = 5
) -> ToolResult:
    """Search the memory of this video by meaning, optionally within a span or of one kind.

    Args:
        query: What you are looking for, in words.
        span: Only entries overlapping this span.
        kind: Only entries of this kind.
        k: How many entries to return (1-50).
    """
    memory = _memory(ctx)
    if not query.strip() and span is None:
        raise ToolRetry("give a query, a span, or both")
    if not 1 <= k <= 50:
        raise ToolRetry("k must be between 1 and 50")
    hits = memory.search(query, video_id=_video_id(ctx), span=_clamp(ctx, span), kind=kind, k=k)
    if not hits:
        return ToolResult("no memory entries matched.")
    text = quote("\n".join(h.line() for h in hits), "memory")
    spans = [h.entry.span for h in hits if h.entry.span is not None]
    return ToolResult(text, spans=spans, metadata={"entry_ids": [h.entry.id for h in hits]}, trust=UNTRUSTED)


@tool
def memory_events(
    ctx: ToolContext,
    entity: str,
    relation: Literal["before", "after", "during", "any"] = "any",
    time: Optional[str] = None,
    span: Optional[TimeSpan] = None,
) -> ToolResult:
    """What happened to a person or thing: its events before or after a time, during a span, or all.

    Args:
        entity: The person or thing, as named when the events were saved.
        relation: Which events: before or after `time`, during `span`, or any.
        time: A time like "00:20:00", for before and after.
        span: A span, for during.
    """
    from mcr.memory.graph import describe_events

    memory = _memory(ctx)
    at = None
    if time is not None:
        try:
            at = parse_time(time)
        except TimeSpanError as exc:
            raise ToolRetry(str(exc)) from None
    try:
        events = memory.graph.query(entity, relation, time=at, span=span, video_id=_video_id(ctx))
    except ValueError as exc:
        raise ToolRetry(str(exc)) from None
    if not events:
        known = memory.graph.entities(_video_id(ctx))
        hint = f" Known: {', '.join(known[:20])}." if known else " No entities are saved for this video yet."
        return ToolResult(f"no events of {entity!r} {relation} the given time.{hint}")
    return ToolResult(
        quote(describe_events(events), "memory"), spans=[e.span for e in events if e.span is not None], trust=UNTRUSTED
    )


def memory_tools() -> list:
    return [memory_write, memory_search, memory_events]
