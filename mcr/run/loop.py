"""The loop: one generator that perceives, plans, acts and reflects over the shared context,
verifies a proposed answer before committing it, and recurses into sub-spans. It yields a
typed event for everything that happens and never prints: subscribers (trace, renderer) do.
"""

from __future__ import annotations

import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Generator, Iterable

from mcr.models import ModelOutput
from mcr.run.answers import (
    ANSWER_NAMES,
    TypedAnswer,
    answer_schema,
    detect_form,
    read_answer,
)
from mcr.run.checking import AnswerChecking, perceived
from mcr.run.context import Context
from mcr.run.events import (
    Event,
    ModelCalled,
    PhaseEntry,
    RunFinished,
    RunStarted,
    ToolCalled,
    ToolReturned,
)
from mcr.run.overview import overview
from mcr.run.policy import PLAN_PROMPT, REFLECT_PROMPT, Policy
from mcr.run.result import RunResult
from mcr.run.steps import generate, run_tools
from mcr.tools import ToolContext, ToolRegistry, ToolResult
from mcr.types import TimeSpan, ToolCall, Usage

__all__ = ["Budget", "RunResult", "answer_schema", "read_answer", "run"]


@dataclass
class Budget:
    """When a run must stop. A spent budget ends with one last call that asks for an answer."""

    max_steps: int = 12
    max_wall_s: float | None = None
    max_tokens: int | None = None
    max_parallel_tools: int = 4

    def to_dict(self) -> dict:
        return {"max_steps": self.max_steps, "max_wall_s": self.max_wall_s, "max_tokens": self.max_tokens}


INTERRUPTED = "stopped by an interrupt (Ctrl-C or SIGTERM); it can be continued from its trace"


class _Stop(Exception):
    """The model failed; the run ends with status ``error``."""


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
    policy: Policy | None = None,
    answer_form: str | None = None,
    focus: TimeSpan | None = None,
    calls: dict | None = None,
) -> Generator[Event, None, RunResult]:
    """Run the agent over ``context`` and yield events; the generator's return value is the
    ``RunResult`` that the last event, ``RunFinished``, carries.

    ``before`` yields events of work done once the run has started (indexing, memory);
    ``focus`` limits a child run's overview to a span; ``calls`` is the model-call count
    shared by a run and its children.
    """
    state = _Run(
        model,
        context,
        registry,
        tool_ctx,
        budget or Budget(),
        run_id or uuid.uuid4().hex[:12],
        depth,
        parent_run_id,
        dict(generate_options or {}),
        policy or Policy.plain(),
        answer_form,
        focus,
        calls if calls is not None else {"used": 0},
    )
    return (yield from state.drive(before))


class _Run(AnswerChecking):
    def __init__(
        self,
        model,
        context,
        registry,
        tool_ctx,
        budget,
        run_id,
        depth,
        parent_run_id,
        options,
        policy,
        answer_form,
        focus,
        calls,
    ) -> None:
        self.model, self.context, self.registry, self.tool_ctx = model, context, registry, tool_ctx
        self.budget, self.run_id, self.depth, self.parent_run_id = budget, run_id, depth, parent_run_id
        self.options, self.policy, self.focus, self.calls = options, policy, focus, calls
        tool_ctx.run_id, tool_ctx.depth = run_id, depth
        task = context.task
        self.question = task.data.get("question", "") if task else ""
        self.choices = task.data.get("options", []) if task else []
        self.form = answer_form or detect_form(self.question, self.choices)
        self.video = tool_ctx.video
        self.duration = self.video.duration if self.video is not None else None
        self.cite = bool(self.policy.verify and self.policy.require_evidence and self.video is not None)
        self.out = RunResult(run_id=run_id, answer_form=self.form)
        self.started = time.perf_counter()
        self.seen_ids: set[str] = set()
        self.verify_rounds = 0
        self.best: tuple[str, list[TimeSpan], TypedAnswer] | None = None
        self.can_investigate = policy.investigate and depth < policy.max_depth and self.video is not None
        known = set(registry.names) | set(ANSWER_NAMES) | {"investigate"}
        self.known = known

    def ids(self, step: int | None = None) -> dict:
        return {"run_id": self.run_id, "depth": self.depth, "step": self.out.steps if step is None else step}

    # ------------------------------------------------------------------ driver
    def drive(self, before: Iterable[Event]) -> Generator[Event, None, RunResult]:
        v = self.video
        yield RunStarted(
            **self.ids(0),
            question=self.question,
            options=list(self.choices),
            video=v.info() if v is not None else {},
            model=getattr(self.model, "name", type(self.model).__name__),
            tools=list(self.registry.names),
            budget={**self.budget.to_dict(), "form": self.form},
            parent_run_id=self.parent_run_id,
            policy=self.policy.to_dict(),
            memory=str(self.tool_ctx.memory.path) if self.tool_ctx.memory is not None else None,
        )
        for event in before:
            event.run_id, event.depth = self.run_id, self.depth
            yield event
        try:
            if self.policy.perceive and v is not None:
                yield from self.perceive()
            if self.policy.plan:
                yield from self.phase("plan", PLAN_PROMPT)
            acted = 0
            while True:
                stop = self.over_budget()
                if stop is not None:
                    return (yield from self.final_call(stop))
                output = yield from self.call("act", self.offered())
                ran_tools, done = yield from self.handle(output, forced=False)
                if done is not None:
                    return done
                if ran_tools:
                    acted += 1
                    every = self.policy.reflect_every
                    if every and acted % every == 0 and self.over_budget() is None:
                        yield from self.phase("reflect", REFLECT_PROMPT)
        except _Stop as exc:
            return (yield from self.finish("error", str(exc)))
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the trace says so, then the interrupt goes on
            yield from self.finish("interrupted", INTERRUPTED)
            raise

    def offered(self) -> list[dict]:
        schemas = self.registry.schemas()
        if self.can_investigate:
            from mcr.run.replies import investigate_schema  # pydantic loads when a run first needs it

            schemas.append(investigate_schema())
        return schemas + [answer_schema(self.form, self.choices, self.cite)]

    def over_budget(self) -> str | None:
        b = self.budget
        if self.out.steps >= b.max_steps:
            return "max_steps"
        if b.max_wall_s is not None and time.perf_counter() - self.started > b.max_wall_s:
            return "timeout"
        if b.max_tokens is not None and self.out.usage.total_tokens >= b.max_tokens:
            return "max_tokens"
        if self.calls["used"] >= self.policy.max_model_calls - 1:
            return "max_model_calls"
        return None

    # ------------------------------------------------------------ model calls
    def call(
        self, phase: str, tools: list[dict] | None, messages: list | None = None, forced: bool = False, **extra: Any
    ) -> Generator[Event, None, ModelOutput]:
        if messages is None:
            messages = self.context.render(tools=tools)
        if phase == "act":
            self.out.steps += 1
        t0 = time.perf_counter()
        self.calls["used"] += 1
        try:
            options = {**self.options, **extra}
            if self.duration is not None:  # a model that constrains its output keeps spans inside the video
                options.setdefault("max_time", self.duration)
            output: ModelOutput = yield from generate(self.model, messages, tools or [], options, self.ids())
        except Exception as exc:  # a model failure ends the run with its message, never a bare traceback
            raise _Stop("".join(traceback.format_exception_only(type(exc), exc)).strip()) from None
        latency = time.perf_counter() - t0
        if not output.tool_calls and output.text and tools:
            parsed = ModelOutput.from_text(output.text, output.usage, known=self.known)
            output = ModelOutput(
                parsed.text, parsed.tool_calls, output.reasoning or parsed.reasoning, output.usage, output.text
            )
        self.out.usage = self.out.usage + Usage(output.usage.input_tokens, output.usage.output_tokens, 1)
        for i, c in enumerate(output.tool_calls):
            if not c.id or c.id in self.seen_ids:
                c.id = f"call_{self.depth}_{self.out.steps}_{phase}_{i}"
            self.seen_ids.add(c.id)
            if c.name in ANSWER_NAMES and isinstance(c.arguments, dict):
                c.arguments = _bounded(c.arguments, self.policy.max_answer_chars)
        yield ModelCalled(
            **self.ids(),
            latency_s=round(latency, 4),
            output=output.to_dict(),
            input_messages=len(messages),
            context_tokens=self.context.tokens,
            forced_answer=forced,
            phase=phase,
        )
        return output

    def phase(self, name: str, prompt: str) -> Generator[Event, None, None]:
        """A plan or a reflection: a model call without tools, kept whole in the context."""
        messages = self.context.render(tools=None) + [_user(prompt)]
        output = yield from self.call(name, None, messages)
        text = (output.text or output.reasoning).strip() or "(nothing)"
        self.context.add("reflection" if name == "reflect" else name, text, self.out.steps)
        yield PhaseEntry(**self.ids(), phase=name, text=text)

    # --------------------------------------------------------------- perceive
    def perceive(self) -> Generator[Event, None, None]:
        """An overview before the first turn: representative frames and the index's digests."""
        span = self.focus or self.video.span
        text, frames = overview(
            self.video,
            span,
            self.policy.overview_frames,
            self.policy.investigate_fps if self.focus else None,
            self.tool_ctx.max_pixels,
            self.tool_ctx.memory,
        )
        ref = self._remember(f"overview frames of {span}", frames)
        self.context.add("perception", text, 0, frames=frames, memory_ref=ref)
        yield PhaseEntry(**self.ids(0), phase="perceive", text=text, frames=frames.ref(), memory_ref=ref)

    def _remember(self, text: str, frames: Any) -> str | None:
        """A memory entry for frames shown to the model, so the view can point at them once elided;
        it keeps their times (``seen_at``), what later checks count as looked at."""
        memory = self.tool_ctx.memory
        if memory is None or self.video is None or frames is None or not len(frames):
            return None
        times = [round(float(t), 3) for t in frames.timestamps]
        entry = memory.write(
            text, "observation", self.video.id, frames.span, source=f"run:{self.run_id}", seen_at=times
        )
        return entry.ref

    # ------------------------------------------------------------------ acting
    def handle(self, output: ModelOutput, forced: bool) -> Generator[Event, None, tuple[bool, RunResult | None]]:
        step = self.out.steps
        answers = [c for c in output.tool_calls if c.name in ANSWER_NAMES]
        probes = [c for c in output.tool_calls if c.name == "investigate"]
        work = [c for c in output.tool_calls if c.name not in ANSWER_NAMES and c.name != "investigate"]
        self.context.add_model_turn(step, output.text if output.tool_calls else "", output.tool_calls)
        if forced:
            for c in work + probes:
                self.context.add_tool_result(
                    step, c, "error: the budget is spent; only the answer tool can be called now.", is_error=True
                )
        else:
            if work:
                yield from run_tools(
                    work,
                    self.registry,
                    self.tool_ctx,
                    self.context,
                    self.budget.max_parallel_tools,
                    self.ids(),
                    on_result=self._on_result,
                )
            for c in probes:
                yield from self.investigate(c)
        if answers:
            for extra in answers[:-1]:
                self.context.add_tool_result(
                    step, extra, "error: only the last answer of a turn counts.", is_error=True
                )
            done = yield from self.propose(answers[-1], forced)
            return bool(work or probes), done
        if not output.tool_calls:
            if output.text.strip() and forced and self._stop_reason:  # the budget is spent and only the
                # answer tool was offered: prose here (a reflection, a plan) is not taken as the answer
                self.context.add(
                    "feedback", "The reply did not call the answer tool; it is not taken as the answer.", step
                )
                return False, None
            if output.text.strip():
                arguments = _bounded({"answer": output.text.strip()}, self.policy.max_answer_chars)
                done = yield from self.propose(ToolCall("answer", arguments, ""), forced)
                return False, done
            self.context.add("feedback", "Your reply was empty. Call a tool, or call the answer tool.", step)
        return bool(work or probes), None

    def _on_result(self, call: ToolCall, result: ToolResult, entry: Any) -> None:
        if result.is_error:
            return
        if result.frames is not None and len(result.frames):
            span = result.frames.span
            text = f"{call.name} showed frames of {span}: {result.text[:300]}"
            entry.data["memory_ref"] = self._remember(text, result.frames)
        if call.name in self.policy.reading_tools and not result.metadata.get("no_audio"):
            entry.data["read"] = [s.to_list() for s in result.spans]  # the spans whose lines it read

    def investigate(self, call: ToolCall) -> Generator[Event, None, None]:
        """A child run of the same loop over a sub-span; its conclusion is this call's result."""
        step = self.out.steps
        yield ToolCalled(**self.ids(), call_id=call.id, name="investigate", arguments=dict(call.arguments))
        t0 = time.perf_counter()
        result = child = None
        from pydantic import ValidationError

        from mcr.run.replies import InvestigateArguments, validation_problem

        try:
            args = InvestigateArguments.model_validate(call.arguments, context={"duration": self.duration})
        except ValidationError as exc:
            result = ToolResult.error(f"error: invalid arguments for 'investigate': {validation_problem(exc)}")
        else:
            span, question = args.span, args.question
            if not self.can_investigate:
                result = ToolResult.error(
                    f"error: investigations may nest at most {self.policy.max_depth} deep; "
                    "look at the span with inspect_frames instead"
                )
            elif span.duration <= 0:
                result = ToolResult.error(f"error: the span {span} is empty; give a span inside the video")
        if result is None:
            child_ctx = Context(self.context.system_prompt, self.context.profile, self.context.count_tokens)
            info = {**self.video.info(), "name": self.video.path.name}
            child_ctx.add_task(f"{question}\n(Investigate only the span {span} of the video.)", None, info)
            child_ctx.entries[0].data["question"] = question
            child_tool = ToolContext(
                video=self.video,
                work_dir=self.tool_ctx.work_dir,
                memory=self.tool_ctx.memory,
                models=self.tool_ctx.models,
                device=self.tool_ctx.device,
                max_pixels=self.tool_ctx.max_pixels,
                state=dict(self.tool_ctx.state),
            )
            wall = None
            if self.budget.max_wall_s is not None:
                wall = max(1.0, self.budget.max_wall_s - (time.perf_counter() - self.started))
            child = yield from run(
                self.model,
                child_ctx,
                self.registry,
                child_tool,
                Budget(self.policy.investigate_steps, wall, None, self.budget.max_parallel_tools),
                depth=self.depth + 1,
                parent_run_id=self.run_id,
                generate_options=self.options,
                policy=self.policy.for_child(),
                focus=span,
                calls=self.calls,
            )
            self.out.usage = self.out.usage + child.usage
            cited = ", ".join(str(s) for s in child.evidence) or "none"
            text = f"investigation of {span} ({child.status}): {child.answer or '(no conclusion)'}; evidence: {cited}"
            ref = None
            memory = self.tool_ctx.memory
            if child.answer and memory is not None:
                fact = f"About {span}, asked '{question}': {child.answer}"
                same = [e for e in memory.store.query(self.video.id, "fact", span) if e.text == fact and e.span == span]
                ref = (  # a resumed run finds what it wrote before it was stopped
                    same[0].ref
                    if same
                    else memory.write(
                        fact, "fact", self.video.id, span, source=f"run:{child.run_id}", confidence=None
                    ).ref
                )
                text += f" (saved as {ref})"
            result = ToolResult(
                text,
                spans=[span] + list(child.evidence),
                metadata={"child_run_id": child.run_id, "status": child.status, "memory_ref": ref},
            )
        entry = self.context.add_tool_result(
            step, call, result.text, is_error=result.is_error, spans=[s.to_list() for s in result.spans]
        )
        entry.data["memory_ref"] = result.metadata.get("memory_ref")
        if child is not None:  # what the child was shown and read counts as looked at here too
            seen = perceived(child_ctx)
            entry.data["seen_at"] = sorted(set(seen.frames))
            entry.data["read"] = [r["span"] for r in seen.readings]
        yield ToolReturned(
            **self.ids(),
            call_id=call.id,
            name="investigate",
            text=result.text,
            is_error=result.is_error,
            spans=[s.to_list() for s in result.spans],
            metadata=dict(result.metadata),
            latency_s=round(time.perf_counter() - t0, 4),
        )

    def commit(self, text, evidence, typed, call, status, verdicts=()) -> Generator[Event, None, RunResult]:
        if call.id:
            self.context.add_tool_result(self.out.steps, call, "answer committed.")
        self._note_verdicts(list(verdicts))
        self.context.add("answer", text, self.out.steps, evidence=[s.to_list() for s in evidence])
        self._keep(text, evidence, typed)
        return (yield from self.finish(status))

    _stop_reason: str | None = None

    def final_call(self, stop: str) -> Generator[Event, None, RunResult]:
        """The budget is spent (or, with no steps at all, there is nothing to do but answer):
        one last call that may only answer."""
        if stop == "max_steps" and self.budget.max_steps == 0:
            self._stop_reason = None
            note = "Answer the question now from the frames above, with the answer tool, and cite the spans."
        else:
            self._stop_reason = stop
            note = (
                f"The budget is spent ({stop.replace('_', ' ')}). Call the answer tool now with your best "
                "answer from what you have seen, and cite the spans."
            )
        self.context.add("feedback", note, self.out.steps)
        output = yield from self.call("act", [answer_schema(self.form, self.choices, self.cite)], forced=True)
        _, done = yield from self.handle(output, forced=True)
        return done if done is not None else (yield from self.final_status(True))

    def final_status(self, forced: bool, failed: bool = False) -> Generator[Event, None, RunResult]:
        """End with the best answer so far: ``unverified`` (budget) or ``failed`` (checks kept failing)."""
        if self.best is None:
            return (yield from self.finish("no_answer"))
        self._keep(*self.best)
        if not self.policy.verify:
            return (yield from self.finish(self._stop_reason or "answered"))
        return (yield from self.finish("failed" if failed else "unverified"))

    def _keep(self, text: str, evidence: list[TimeSpan], typed: TypedAnswer | None) -> None:
        self.out.answer, self.out.evidence = text, evidence
        self.out.value = typed.value if typed is not None else None

    def finish(self, status: str, error: str | None = None) -> Generator[Event, None, RunResult]:
        out = self.out
        out.status, out.error = status, error
        out.wall_s = round(time.perf_counter() - self.started, 3)
        out.frames_seen = len(self.context.frames_seen())
        yield RunFinished(**self.ids(), result=out)
        return out


def _bounded(arguments: dict, limit: int) -> dict:
    """An answer call's arguments with an answer longer than ``limit`` cut there, with a note."""
    text = arguments.get("answer")
    if not isinstance(text, str) or len(text) <= limit:
        return arguments
    note = f" [answer cut at {limit} of {len(text)} characters (Policy.max_answer_chars)]"
    return {**arguments, "answer": text[:limit].rstrip() + note}


def _user(text: str):
    from mcr.types import Message

    return Message("user", text)
