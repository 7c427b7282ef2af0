"""One model turn and one round of tool calls, as event generators the loop yields from."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Generator

from mcr.models import ModelOutput
from mcr.run.context import Context
from mcr.run.events import Event, IndexProgress, ModelDelta, ToolCalled, ToolReturned, jsonable
from mcr.tools import ToolContext, ToolRegistry, ToolResult
from mcr.types import ToolCall


def generate(
    model: Any, messages: list, tools: list[dict], options: dict, ids: dict
) -> Generator[Event, None, ModelOutput]:
    """Ask the model for one turn. A model with ``streams_text`` runs in a worker thread and its
    text is handed out as ``ModelDelta`` events while it is generated (``stream=False`` turns that off)."""
    options = dict(options)
    if not options.pop("stream", True) or not getattr(model, "streams_text", False):
        return model.generate(messages, tools=tools, **options)
    pieces: queue.Queue = queue.Queue()
    done = object()
    result: list = []

    def work() -> None:
        try:
            result.append(model.generate(messages, tools=tools, on_text=pieces.put, **options))
        except BaseException as exc:  # handed to the loop's thread below
            result.append(exc)
        finally:
            pieces.put(done)

    threading.Thread(target=work, name="mcr-generate", daemon=True).start()
    finished = False
    while not finished:
        batch = [pieces.get()]
        while not pieces.empty():
            batch.append(pieces.get_nowait())
        finished = batch[-1] is done
        text = "".join(p for p in batch if p is not done)
        if text:
            yield ModelDelta(**ids, text=text)
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _showing_progress(work: Callable[[], Any], tool_ctx: ToolContext, ids: dict) -> Generator[Event, None, Any]:
    """``work()`` on a thread of its own while the index stages a tool builds for it are handed
    out as ``IndexProgress`` events (at most one each 5 % of a stage); its value, or its error."""
    events: queue.Queue = queue.Queue()
    shown: dict[str, float] = {}
    video_id = getattr(tool_ctx.video, "id", "")

    def progress(stage: str, done: float, total: float) -> None:
        if done - shown.get(stage, -total) >= total / 20 or done >= total:
            shown[stage] = done
            events.put(IndexProgress(**ids, video_id=video_id, stage=stage, done=round(done, 3), total=total))

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # raised again on the loop's thread
            box["error"] = exc
        finally:
            events.put(None)

    tool_ctx.progress = progress
    threading.Thread(target=run, name="mcr-tools", daemon=True).start()
    try:
        while (event := _next(events)) is not None:
            yield event
    finally:
        tool_ctx.progress = None
    if "error" in box:
        raise box["error"]
    return box["value"]


def _next(events: queue.Queue) -> Any:
    """The next item, waiting in short slices so Ctrl-C reaches the loop's thread at once."""
    while True:
        try:
            return events.get(timeout=0.2)
        except queue.Empty:
            continue


def run_tools(
    calls: list[ToolCall],
    registry: ToolRegistry,
    tool_ctx: ToolContext,
    context: Context,
    max_parallel: int,
    ids: dict,
    on_result: Callable[[ToolCall, ToolResult, Any], None] | None = None,
) -> Generator[Event, None, None]:
    """Run the calls (in parallel where several) and append exactly one result for each."""
    for call in calls:
        yield ToolCalled(**ids, call_id=call.id, name=call.name, arguments=jsonable(call.arguments))

    def execute() -> list[ToolResult]:
        if len(calls) == 1 or max_parallel <= 1:
            return [registry.execute(c, tool_ctx) for c in calls]
        with ThreadPoolExecutor(max_workers=min(len(calls), max_parallel)) as pool:
            return list(pool.map(lambda c: registry.execute(c, tool_ctx), calls))

    results = yield from _showing_progress(execute, tool_ctx, ids)
    for call, result in zip(calls, results):
        result: ToolResult
        entry = context.add_tool_result(
            ids["step"],
            call,
            result.text,
            frames=result.frames,
            is_error=result.is_error,
            spans=[s.to_list() for s in result.spans],
            trust=result.trust,
            **({"video": result.metadata["video_id"]} if "video_id" in result.metadata else {}),
        )  # in a library run, the video the call looked at: what it saw counts for that video only
        if on_result is not None:
            on_result(call, result, entry)
        meta = dict(result.metadata)
        latency = float(meta.pop("latency_s", 0.0))
        yield ToolReturned(
            **ids,
            call_id=call.id,
            name=call.name,
            text=result.text,
            is_error=result.is_error,
            spans=[s.to_list() for s in result.spans],
            frames=result.frames.ref() if result.frames is not None else None,
            metadata=jsonable(meta),
            latency_s=round(latency, 4),
            trust=result.trust,
        )
