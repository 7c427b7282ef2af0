"""Continuing a run from its trace: after Ctrl-C, SIGTERM or ``kill -9``.

The trace holds every model output and every tool result of the run so far. Resuming runs
the same question again with both recorded: the model's first turns are its recorded
outputs, and a tool call the run already made gets its recorded result (frames decoded
again at the recorded times; nothing re-computed), so the context is rebuilt exactly as it
was. Past the recording, the real model and the real tools take over from the next step.
Events the trace already holds are not written again; the trace goes on in the same file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcr.errors import MCRError
from mcr.models import ModelOutput
from mcr.run.events import Event, ModelCalled, RunFinished, RunStarted, ToolCalled, ToolReturned
from mcr.run.trace import TraceError, read_trace
from mcr.types import Frames, Message, TimeSpan

RESUMABLE = ("interrupted",)  # a finished run with one of these statuses may go on


class ResumeError(MCRError):
    """A run that cannot be continued as asked (its tools or its video are not here)."""


@dataclass
class Unfinished:
    """What a trace recorded of a run that did not finish."""

    path: Path
    events: list[Event]  # as written, less the closing ``interrupted`` events
    started: RunStarted
    outputs: list[ModelOutput] = field(default_factory=list)
    results: list[tuple[str, str, ToolReturned]] = field(default_factory=list)  # (name, arguments, result)

    @property
    def run_id(self) -> str:
        return self.started.run_id


def mend_torn_end(path: Path) -> None:
    """Drop a last line cut off mid-write (a killed process), so the trace can go on."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def load_unfinished(path: str | os.PathLike) -> Unfinished:
    """The recorded part of an unfinished run; ``TraceError`` when there is nothing to resume."""
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"trace not found: {p}")
    mend_torn_end(p)
    events = read_trace(p)
    starts = [e for e in events if isinstance(e, RunStarted) and e.depth == 0]
    if not starts:
        raise TraceError(f"{p} holds no run to resume (no run_started event)")
    ends = [e for e in events if isinstance(e, RunFinished) and e.depth == 0]
    if ends and ends[-1].result.status not in RESUMABLE:
        raise TraceError(
            f"the run in {p} already finished (status {ends[-1].result.status}); nothing to resume: "
            "run the question again instead"
        )
    while events and isinstance(events[-1], RunFinished) and events[-1].result.status in RESUMABLE:
        events.pop()  # the interrupted run's ends: the resumed run writes its own
    run = Unfinished(p, events, starts[0])
    called: dict[tuple[str, str], ToolCalled] = {}
    for e in events:
        if isinstance(e, ModelCalled):
            run.outputs.append(ModelOutput.from_dict(e.output or {}))
        elif isinstance(e, ToolCalled):
            called[(e.run_id, e.call_id)] = e
        elif isinstance(e, ToolReturned) and (e.run_id, e.call_id) in called:
            call = called.pop((e.run_id, e.call_id))
            run.results.append((call.name, _key(call.arguments), e))
    return run


def _key(arguments: Any) -> str:
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=str)


class RecordedModel:
    """The recorded outputs first, in order, then ``inner`` (the real model)."""

    def __init__(self, inner: Any, outputs: list[ModelOutput]) -> None:
        from mcr.models.replay import ReplayModel

        self.inner, self.outputs, self.position = inner, list(outputs), 0
        if isinstance(inner, ReplayModel):  # a recording goes on from the step after those already used
            inner.position = max(inner.position, len(self.outputs))

    def __getattr__(self, attr: str) -> Any:
        inner = self.__dict__.get("inner")
        if inner is None or attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(inner, attr)

    @property
    def replaying(self) -> bool:
        return self.position < len(self.outputs)

    def generate(self, messages: list[Message], tools: list[dict] | None = None, **options: Any) -> ModelOutput:
        if self.position < len(self.outputs):
            self.position += 1
            return self.outputs[self.position - 1]
        return self.inner.generate(messages, tools, **options)


class RecordedTools:
    """A registry whose calls already made in the recorded run give their recorded results."""

    def __init__(self, registry: Any, results: list[tuple[str, str, ToolReturned]]) -> None:
        self.registry, self.results = registry, list(results)
        self.reused = 0

    def __getattr__(self, attr: str) -> Any:
        registry = self.__dict__.get("registry")
        if registry is None or attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(registry, attr)

    def __iter__(self):
        return iter(self.registry)

    def execute(self, call: Any, ctx: Any) -> Any:
        key = _key(call.arguments)
        for i, (name, arguments, recorded) in enumerate(self.results):
            if name == call.name and arguments == key:
                del self.results[i]
                self.reused += 1
                return _result_of(recorded, ctx)
        return self.registry.execute(call, ctx)


def _result_of(recorded: ToolReturned, ctx: Any) -> Any:
    from mcr.tools import ToolResult

    frames = None
    ref = recorded.frames or {}
    if ref.get("timestamps") and ctx.video is not None:
        from mcr.tools.frames import frames_at

        frames: Frames | None = frames_at(ctx.video, list(ref["timestamps"]), ctx.max_pixels)
    return ToolResult(
        recorded.text,
        frames=frames,
        spans=[TimeSpan(*s) for s in recorded.spans],
        metadata={**recorded.metadata, "latency_s": recorded.latency_s, "reused": True},
        is_error=recorded.is_error,
        trust=recorded.trust,
    )


class SkipRecorded:
    """Says whether an event is one the trace already holds, so a resumed run appends only what
    is new. An event is known by what it is, not by where it falls: its kind, its run (the n-th
    run started: a child run gets a new id when run again), its step and what tells it from its
    neighbours (the call id of a tool call, the phase of a model call, the stage of an index
    event), counted, so the k-th such event of the resumed run is the k-th of the recording.
    Events the recording has and the resumed run does not make (an index stage the resumed run
    reuses without saying so, progress of a stage built then) change nothing."""

    def __init__(self, recorded: list[Event]) -> None:
        self.held: dict[tuple, int] = {}
        runs: dict[str, int] = {}
        for event in recorded:
            key = _identity(event, runs)
            self.held[key] = self.held.get(key, 0) + 1
        self.runs: dict[str, int] = {}

    def __call__(self, event: Event) -> bool:
        key = _identity(event, self.runs)
        if self.held.get(key, 0) > 0:
            self.held[key] -= 1
            return True
        return False


def _identity(event: Event, runs: dict[str, int]) -> tuple:
    """What tells ``event`` apart in its trace (see ``SkipRecorded``); ``runs`` numbers the runs
    in the order they started."""
    if isinstance(event, RunStarted) and event.run_id not in runs:
        runs[event.run_id] = len(runs)
    which = ""
    for name in ("call_id", "phase", "stage", "entry_kind", "source", "round"):
        value = getattr(event, name, None)
        if value not in (None, ""):
            which += f"{name}={value};"
    return (event.kind, runs.get(event.run_id, event.run_id), event.depth, event.step, which)
