"""``Agent``: a model, tools and budgets; ``run`` answers a question about a video."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from mcr.context import Context, RenderProfile
from mcr.events import Event, RunFinished
from mcr.loop import Budget, Outcome
from mcr.loop import run as run_loop
from mcr.models import load_model
from mcr.tools import Tool, ToolContext, ToolRegistry, builtin_tools
from mcr.trace import TraceWriter, default_trace_path
from mcr.types import TimeSpan, Usage

Subscriber = Callable[[Event], Any]


@dataclass
class RunResult:
    answer: str
    status: str  # answered | max_steps | timeout | max_tokens | no_answer | error
    evidence: list[TimeSpan] = field(default_factory=list)
    steps: int = 0
    trace_path: str | None = None
    usage: Usage = field(default_factory=Usage)
    run_id: str = ""
    wall_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status not in ("error", "no_answer")

    def to_dict(self) -> dict:
        return {
            "answer": self.answer,
            "status": self.status,
            "evidence": [str(s) for s in self.evidence],
            "evidence_seconds": [s.to_list() for s in self.evidence],
            "steps": self.steps,
            "trace_path": self.trace_path,
            "usage": self.usage.to_dict(),
            "run_id": self.run_id,
            "wall_s": self.wall_s,
            "error": self.error,
        }


class Agent:
    """Answers questions about videos with a model and tools, in one shared context.

    Args:
        model: a model object, a hub id, a local model folder or ``replay:FILE``.
        tools: extra tools (``@tool`` functions) next to the built-in ones.
        max_steps: model turns before the run is asked for its answer.
        builtin: include the built-in tools (``inspect_frames``).
        trace_dir: where traces go (default ``.mcr/traces``); ``False`` writes none.
    """

    def __init__(
        self,
        model: Any = None,
        tools: Sequence[Tool] = (),
        max_steps: int = 12,
        max_wall_s: float | None = None,
        max_tokens: int | None = None,
        builtin: bool = True,
        system_prompt: str | None = None,
        profile: RenderProfile | None = None,
        trace_dir: str | os.PathLike | bool | None = None,
        work_dir: str | os.PathLike | None = None,
        subscribers: Iterable[Subscriber] = (),
        device: str = "auto",
        generate_options: dict | None = None,
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self.model = load_model(model)
        self.registry = ToolRegistry(list(builtin_tools()) if builtin else [])
        for t in tools:
            self.registry.add(t, replace=True)
        self.budget = Budget(max_steps=max_steps, max_wall_s=max_wall_s, max_tokens=max_tokens)
        self.system_prompt = system_prompt
        self.profile = profile or getattr(self.model, "profile", None) or RenderProfile()
        self.trace_dir = trace_dir
        self.work_dir = Path(work_dir) if work_dir else Path(".mcr") / "work"
        self.subscribers = list(subscribers)
        self.device = device
        self.generate_options = dict(generate_options or {})

    @property
    def tools(self) -> list[Tool]:
        return list(self.registry)

    def stream(
        self,
        video: Any,
        question: str,
        options: Sequence[str] | None = None,
        trace: str | os.PathLike | None = None,
    ) -> Iterator[Event]:
        """Run and hand out each event as it happens. Every event is also written to the trace."""
        from mcr.video import Video

        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty")
        handle = video if isinstance(video, Video) or video is None else Video(video)
        run_id = uuid.uuid4().hex[:12]
        context = Context(self.system_prompt, self.profile)
        info = handle.info() if handle is not None else None
        if info is not None:
            info = {**info, "name": Path(info["path"]).name}
        context.add_task(question.strip(), list(options or []), info)
        tool_ctx = ToolContext(video=handle, work_dir=self.work_dir / run_id, run_id=run_id, device=self.device)
        writer = None
        if trace is not None or self.trace_dir is not False:
            path = Path(trace) if trace is not None else default_trace_path(run_id, self.trace_dir or None)
            writer = TraceWriter(path)
        self.last_context = context
        try:
            gen = run_loop(self.model, context, self.registry, tool_ctx, self.budget, run_id=run_id,
                           generate_options=self.generate_options)
            for event in gen:
                if isinstance(event, RunFinished) and writer is not None:
                    event.trace_path = str(writer.path)
                if writer is not None:
                    writer.write(event)
                for sub in self.subscribers:
                    sub(event)
                yield event
        finally:
            if writer is not None:
                writer.close()

    def run(
        self,
        video: Any,
        question: str,
        options: Sequence[str] | None = None,
        trace: str | os.PathLike | None = None,
    ) -> RunResult:
        """Answer ``question`` about ``video`` (a path or a ``Video``); returns a RunResult."""
        finished: RunFinished | None = None
        for event in self.stream(video, question, options, trace):
            if isinstance(event, RunFinished) and event.depth == 0:
                finished = event
        assert finished is not None, "the loop ended without a run_finished event"
        return RunResult(
            answer=finished.answer,
            status=finished.status,
            evidence=[TimeSpan(*s) for s in finished.evidence],
            steps=finished.steps,
            trace_path=finished.trace_path,
            usage=Usage.from_dict(finished.usage),
            run_id=finished.run_id,
            wall_s=finished.wall_s,
            error=finished.error,
        )


__all__ = ["Agent", "Outcome", "RunResult"]
