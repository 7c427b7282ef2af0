"""The loop: one generator that renders the context, asks the model, runs its tools
and yields a typed event for everything that happens, until an answer is committed
or a budget runs out. It never prints: subscribers (trace, renderer) do that.
"""
from __future__ import annotations

import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generator, Iterable

from mcr.context import Context
from mcr.events import (AnswerProposed, Event, ModelCalled, RunFinished, RunStarted, ToolCalled,
                        ToolReturned, jsonable)
from mcr.models import ModelOutput
from mcr.tools import ToolContext, ToolRegistry, ToolResult
from mcr.types import TimeSpan, TimeSpanError, ToolCall, Usage, format_time

ANSWER_NAMES = ("answer", "final_answer")
ANSWER_KEYS = ("answer", "final_answer", "text", "input", "response")


@dataclass
class Budget:
    """When a run must stop. The step budget ends with one last call that asks for an answer."""

    max_steps: int = 12
    max_wall_s: float | None = None
    max_tokens: int | None = None
    max_parallel_tools: int = 4

    def to_dict(self) -> dict:
        return {"max_steps": self.max_steps, "max_wall_s": self.max_wall_s, "max_tokens": self.max_tokens}


@dataclass
class Outcome:
    answer: str = ""
    status: str = "no_answer"
    evidence: list[TimeSpan] = field(default_factory=list)
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    error: str | None = None


def answer_schema(options: list[str] | None = None) -> dict:
    """The answer form, shown to the model as one more tool."""
    answer_prop: dict[str, Any] = {"type": "string", "description": "The final answer."}
    if options:
        answer_prop["description"] = "Exactly one of the options (its letter or its text)."
    return {
        "type": "function",
        "function": {
            "name": "answer",
            "description": "Commit the final answer to the question, citing the spans of the video that show it.",
            "parameters": {
                "type": "object",
                "properties": {
                    "answer": answer_prop,
                    "evidence": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Spans that support the answer, each 'HH:MM:SS.s-HH:MM:SS.s'.",
                    },
                },
                "required": ["answer"],
                "additionalProperties": False,
            },
        },
    }


def read_answer(call: ToolCall, duration: float | None) -> tuple[str, list[TimeSpan], str]:
    """``(answer, evidence, problem)`` from an answer call; ``problem`` is empty when it is well formed."""
    args = call.arguments
    text = next((args[k] for k in ANSWER_KEYS if k in args), None)
    if text is None or (isinstance(text, str) and not text.strip()):
        return "", [], "the answer is empty; pass it as {\"answer\": \"...\"}"
    text = text if isinstance(text, str) else str(text)
    raw = args.get("evidence") or []
    if isinstance(raw, (str, dict)) or (isinstance(raw, (list, tuple)) and len(raw) == 2
                                        and all(isinstance(x, (int, float)) for x in raw)):
        raw = [raw]
    spans: list[TimeSpan] = []
    for item in raw:
        try:
            span = TimeSpan.parse(item)
        except TimeSpanError as exc:
            return text, [], f"evidence {item!r} is not a span ({exc})"
        if duration is not None and span.start > duration:
            return text, [], f"evidence {span} starts after the video ends at {format_time(duration)}"
        spans.append(span.clamp(duration) if duration is not None else span)
    return text.strip(), spans, ""


def _number_calls(calls: list[ToolCall], step: int, seen: set[str]) -> None:
    for i, call in enumerate(calls):
        if not call.id or call.id in seen:
            call.id = f"call_{step}_{i}"
        seen.add(call.id)


def run(
    model: Any,
    context: Context,
    registry: ToolRegistry,
    tool_ctx: ToolContext,
    budget: Budget | None = None,
    run_id: str | None = None,
    depth: int = 0,
    parent_run_id: str | None = None,
    generate_options: dict | None = None,
    before: Iterable[Event] = (),
) -> Generator[Event, None, Outcome]:
    """Run the agent over ``context`` and yield events; the return value is the Outcome.

    ``before`` yields events of work done after the run starts and before the first
    model call (indexing, memory); they are stamped with this run's id.
    """
    budget = budget or Budget()
    run_id = run_id or uuid.uuid4().hex[:12]
    tool_ctx.run_id, tool_ctx.depth = run_id, depth
    options = dict(generate_options or {})
    started = time.perf_counter()
    task = context.task
    question = task.data.get("question", "") if task else ""
    choices = task.data.get("options", []) if task else []
    video = tool_ctx.video
    duration = video.duration if video is not None else None
    schemas = registry.schemas() + [answer_schema(choices)]
    known = set(registry.names) | set(ANSWER_NAMES)
    out = Outcome()
    seen_ids: set[str] = set()

    def base(step: int) -> dict:
        return {"run_id": run_id, "depth": depth, "step": step}

    yield RunStarted(**base(0), question=question, options=list(choices),
                     video=video.info() if video is not None else {}, model=getattr(model, "name", type(model).__name__),
                     tools=list(registry.names), budget=budget.to_dict(), parent_run_id=parent_run_id)
    for event in before:
        event.run_id, event.depth = run_id, depth
        yield event

    def finish(status: str, error: str | None = None) -> Generator[Event, None, Outcome]:
        out.status, out.error = status, error
        yield RunFinished(**base(out.steps), answer=out.answer, status=status,
                          evidence=[s.to_list() for s in out.evidence], steps=out.steps,
                          usage=out.usage.to_dict(), wall_s=round(time.perf_counter() - started, 3), error=error)
        return out

    def over_budget() -> str | None:
        if out.steps >= budget.max_steps:
            return "max_steps"
        if budget.max_wall_s is not None and time.perf_counter() - started > budget.max_wall_s:
            return "timeout"
        if budget.max_tokens is not None and out.usage.total_tokens >= budget.max_tokens:
            return "max_tokens"
        return None

    stop_reason: str | None = None
    while True:
        stop_reason = over_budget()
        forced = stop_reason is not None
        if forced:
            context.add("feedback", f"The budget is spent ({stop_reason.replace('_', ' ')}). Call the answer tool now "
                        "with your best answer from what you have seen, and cite the spans.", out.steps)
        step = out.steps + 1
        messages = context.render(tools=[answer_schema(choices)] if forced else schemas)
        t0 = time.perf_counter()
        try:
            output: ModelOutput = model.generate(messages, tools=[answer_schema(choices)] if forced else schemas, **options)
        except Exception as exc:  # a model failure ends the run with its message, never a bare traceback
            out.steps = step
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            return (yield from finish("error", detail))
        latency = time.perf_counter() - t0
        if not output.tool_calls and output.text:
            parsed = ModelOutput.from_text(output.text, output.usage, known=known)
            output = ModelOutput(parsed.text, parsed.tool_calls, output.reasoning or parsed.reasoning, output.usage, output.text)
        out.steps = step
        out.usage = out.usage + Usage(output.usage.input_tokens, output.usage.output_tokens, 1)
        _number_calls(output.tool_calls, step, seen_ids)
        yield ModelCalled(**base(step), latency_s=round(latency, 4), output=output.to_dict(),
                          input_messages=len(messages), context_tokens=context.tokens, forced_answer=forced)
        answer_calls = [c for c in output.tool_calls if c.name in ANSWER_NAMES]
        work_calls = [c for c in output.tool_calls if c.name not in ANSWER_NAMES]
        context.add_model_turn(step, output.text if output.tool_calls else "", output.tool_calls)

        if work_calls and not forced:
            yield from _run_tools(work_calls, registry, tool_ctx, context, budget, base(step))
        elif work_calls:
            for call in work_calls:
                context.add_tool_result(step, call, "error: the budget is spent; only the answer tool can be called now.",
                                        is_error=True)

        if answer_calls:
            call = answer_calls[-1]
            for extra in answer_calls[:-1]:
                context.add_tool_result(step, extra, "error: only the last answer of a turn counts.", is_error=True)
            text, evidence, problem = read_answer(call, duration)
            yield AnswerProposed(**base(step), call_id=call.id, answer=text, evidence=[s.to_list() for s in evidence],
                                 accepted=not problem, reason=problem)
            if not problem:
                context.add_tool_result(step, call, "answer committed.")
                context.add("answer", text, step, evidence=[s.to_list() for s in evidence])
                out.answer, out.evidence = text, evidence
                return (yield from finish(stop_reason or "answered"))
            context.add_tool_result(step, call, f"error: answer not accepted: {problem}. Fix it and answer again.",
                                    is_error=True)
        elif not output.tool_calls:
            if output.text.strip():
                context.add("answer", output.text.strip(), step)
                out.answer = output.text.strip()
                yield AnswerProposed(**base(step), answer=out.answer)
                return (yield from finish(stop_reason or "answered"))
            context.add("feedback", "Your reply was empty. Call a tool, or call the answer tool.", step)

        if forced:
            return (yield from finish("no_answer"))


def _run_tools(calls: list[ToolCall], registry: ToolRegistry, tool_ctx: ToolContext, context: Context,
               budget: Budget, ids: dict) -> Generator[Event, None, None]:
    """Run the calls (in parallel where several) and append exactly one result for each."""
    for call in calls:
        yield ToolCalled(**ids, call_id=call.id, name=call.name, arguments=jsonable(call.arguments))
    if len(calls) == 1 or budget.max_parallel_tools <= 1:
        results = [registry.execute(c, tool_ctx) for c in calls]
    else:
        with ThreadPoolExecutor(max_workers=min(len(calls), budget.max_parallel_tools)) as pool:
            results = list(pool.map(lambda c: registry.execute(c, tool_ctx), calls))
    for call, result in zip(calls, results):
        result: ToolResult
        context.add_tool_result(ids["step"], call, result.text, frames=result.frames, is_error=result.is_error)
        meta = dict(result.metadata)
        latency = float(meta.pop("latency_s", 0.0))
        yield ToolReturned(**ids, call_id=call.id, name=call.name, text=result.text, is_error=result.is_error,
                           spans=[s.to_list() for s in result.spans],
                           frames=result.frames.ref() if result.frames is not None else None,
                           metadata=jsonable(meta), latency_s=round(latency, 4))
