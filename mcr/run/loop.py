"""The loop: one generator that perceives, plans, acts and reflects over the shared context,
verifies a proposed answer before committing it, and recurses into sub-spans. It yields a
typed event for everything that happens and never prints: subscribers (trace, renderer) do.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import replace
from typing import Any, Generator, Iterable

from mcr.models import ModelOutput
from mcr.run.answers import (
    ANSWER_NAMES,
    TypedAnswer,
    answer_schema,
    detect_form,
    read_answer,
)
from mcr.run.context import Context
from mcr.run.events import (
    ContextCompacted,
    Event,
    ModelCalled,
    PhaseEntry,
    RunFinished,
    RunStarted,
    ToolCalled,
    ToolReturned,
)
from mcr.run.library import LibraryChecker, library_info, survey
from mcr.run.overview import overview
from mcr.run.policy import ACT_PROMPT, PLAN_PROMPT, REFLECT_PROMPT, answer_prompt, refused
from mcr.run.result import RunResult
from mcr.run.settings import Budget, RunSettings
from mcr.run.steps import generate, run_tools
from mcr.run.verify import AnswerChecker, Commit, GiveUp, perceived
from mcr.tools import ToolContext, ToolRegistry, ToolResult
from mcr.types import TimeSpan, ToolCall, Usage

__all__ = ["Budget", "RunResult", "RunSettings", "answer_schema", "read_answer", "run"]


INTERRUPTED = "stopped by an interrupt (Ctrl-C or SIGTERM); it can be continued from its trace"


class _Stop(Exception):
    """The model failed; the run ends with status ``error``."""


def run(
    model: Any,
    context: Context,
    registry: ToolRegistry,
    tool_ctx: ToolContext,
    budget: Budget | None = None,
    *,
    before: Iterable[Event] = (),
    **settings: Any,
) -> Generator[Event, None, RunResult]:
    """Run the agent over ``context`` and yield events; the generator's return value is the
    ``RunResult`` that the last event, ``RunFinished``, carries.

    ``settings`` are fields of ``RunSettings`` (``policy``, ``run_id``, ``answer_form``...; None
    takes the default). ``before`` yields events of work done once the run has started
    (indexing, memory).
    """
    given = {k: v for k, v in settings.items() if v is not None}
    if budget is not None:
        given["budget"] = budget
    state = _Run(model, context, registry, tool_ctx, RunSettings(**given))
    return (yield from state.drive(before))


class _Run:
    """One run's state while its generator runs: what it works on, its settings, its result so
    far, and the checker of its answers."""

    def __init__(
        self, model: Any, context: Context, registry: ToolRegistry, tool_ctx: ToolContext, settings: RunSettings
    ) -> None:
        self.model, self.context, self.registry, self.tool_ctx = model, context, registry, tool_ctx
        self.settings = settings
        self.budget, self.policy = settings.budget, settings.policy
        self.run_id, self.depth = settings.run_id, settings.depth
        tool_ctx.run_id, tool_ctx.depth = self.run_id, self.depth
        task = context.task
        self.question = task.data.get("question", "") if task else ""
        self.choices = task.data.get("options", []) if task else []
        self.form = settings.answer_form or detect_form(self.question, self.choices)
        self.video, self.library = tool_ctx.video, tool_ctx.library  # a library run has no one video
        self.duration = self.video.duration if self.video is not None else None
        self.out = RunResult(run_id=self.run_id, answer_form=self.form)
        self.started = time.perf_counter()
        self.seen_ids: set[str] = set()
        self.remembered = 0  # memory writes so far: with the run and the step, each write's identity
        self.stop_reason: str | None = None  # the spent budget that forced the last call
        self.can_investigate = self.policy.investigate and self.depth < self.policy.max_depth and self.video is not None
        self.known = set(registry.names) | set(ANSWER_NAMES) | {"investigate"}
        checker = AnswerChecker if self.library is None else LibraryChecker
        self.checker = checker(context, self.policy, tool_ctx, self.question, self.choices, self.form, self.call)
        self.said: str | None = None  # the phase the last phase message said
        self.compactions = len(context.compactions)
        self._tools: list[dict] | None = None

    def ids(self, step: int | None = None) -> dict:
        return {"run_id": self.run_id, "depth": self.depth, "step": self.out.steps if step is None else step}

    # ------------------------------------------------------------------ driver
    def drive(self, before: Iterable[Event]) -> Generator[Event, None, RunResult]:
        v = self.video
        yield RunStarted(
            **self.ids(0),
            question=self.question,
            options=list(self.choices),
            video=v.info() if v is not None else library_info(self.library),
            model=getattr(self.model, "name", type(self.model).__name__),
            tools=list(self.registry.names),
            budget={**self.budget.to_dict(), "form": self.form},
            parent_run_id=self.settings.parent_run_id,
            policy=self.policy.to_dict(),
            memory=str(self.tool_ctx.memory.path) if self.tool_ctx.memory is not None else None,
        )
        for event in before:
            event.run_id, event.depth = self.run_id, self.depth
            yield event
        try:
            if self.library is not None:  # the model starts from what each video of the library holds
                text = survey(self.context, self.library, self.tool_ctx.memory)
                yield PhaseEntry(**self.ids(0), phase="perceive", text=text)
            elif self.policy.perceive and v is not None:
                yield from self.perceive()
            if self.policy.plan:
                yield from self.phase("plan", PLAN_PROMPT)
            acted = 0
            while True:
                stop = self.over_budget()
                if stop is not None:
                    return (yield from self.final_call(stop))
                if self.said not in (None, "act"):
                    self.say("act", ACT_PROMPT)
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
        """Every tool of the run, the same list in the same order on every call: a phase that may
        call fewer says so in the call's options (``allowed_tools``), never by a shorter list."""
        if self._tools is None:
            schemas = self.registry.schemas(self.library.names if self.library is not None else None)
            if self.can_investigate:
                from mcr.run.replies import investigate_schema  # pydantic loads when a run first needs it

                schemas.append(investigate_schema())
            library = self.library is not None
            self._tools = schemas + [answer_schema(self.form, self.choices, self.checker.cite, library)]
        return self._tools

    def say(self, phase: str, text: str) -> None:
        """Say a phase in a message appended to the context (the prompt before it stays as sent)."""
        self.context.add("phase", text, self.out.steps)
        self.said = phase

    def over_budget(self) -> str | None:
        b = self.budget
        if self.out.steps >= b.max_steps:
            return "max_steps"
        if b.max_wall_s is not None and time.perf_counter() - self.started > b.max_wall_s:
            return "timeout"
        if b.max_tokens is not None and self.out.usage.total_tokens >= b.max_tokens:
            return "max_tokens"
        if self.settings.calls["used"] >= self.policy.max_model_calls - 1:
            return "max_model_calls"
        return None

    # ------------------------------------------------------------ model calls
    def call(
        self,
        phase: str,
        tools: list[dict] | None,
        messages: list | None = None,
        forced: bool = False,
        allowed: list[str] | None = None,
        **extra: Any,
    ) -> Generator[Event, None, ModelOutput]:
        """One model call. ``allowed``: the names of the tools this phase may call (None: all of
        ``tools``); backends hold the rest back in decoding, and the loop refuses what gets through."""
        if messages is None:
            messages = self.context.render(tools=tools)
            for done in self.context.compactions[self.compactions :]:
                yield ContextCompacted(**self.ids(), **done)
            self.compactions = len(self.context.compactions)
        if allowed is not None:
            extra["allowed_tools"] = list(allowed)
        if phase == "act":
            self.out.steps += 1
        t0 = time.perf_counter()
        self.settings.calls["used"] += 1
        try:
            options = {**self.settings.generate_options, **extra}
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
        """A plan or a reflection: a model call that may call no tool, kept whole in the context.
        The phase is said in a message appended to the context; a tool call that gets through
        is not run, and the next message says so."""
        self.say(name, prompt)
        output = yield from self.call(name, self.offered(), allowed=[])
        text = (output.text or output.reasoning).strip() or "(nothing)"
        self.context.add("reflection" if name == "reflect" else name, text, self.out.steps)
        if output.tool_calls:
            names = sorted({c.name for c in output.tool_calls})
            self.context.add("feedback", refused(name, names), self.out.steps)
        yield PhaseEntry(**self.ids(), phase=name, text=text)

    # --------------------------------------------------------------- perceive
    def perceive(self) -> Generator[Event, None, None]:
        """An overview before the first turn: representative frames and the index's digests."""
        span = self.settings.focus or self.video.span
        text, frames = overview(
            self.video,
            span,
            self.policy.overview_frames,
            self.policy.investigate_fps if self.settings.focus else None,
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
        video_id = self.video.id if self.video is not None else getattr(frames, "video_id", None)
        if memory is None or video_id is None or frames is None or not len(frames):
            return None
        times = [round(float(t), 3) for t in frames.timestamps]
        self.remembered += 1  # a resumed run makes this write again: its origin stores it once
        origin = f"{self.run_id}:{self.out.steps}:{self.remembered}"
        entry = memory.write(
            text, "observation", video_id, frames.span, source=f"run:{self.run_id}", origin=origin, seen_at=times
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
            done = yield from self.settle(answers[-1], forced)
            return bool(work or probes), done
        if not output.tool_calls:
            if output.text.strip() and forced and self.stop_reason:  # the budget is spent and only the
                # answer tool was offered: prose here (a reflection, a plan) is not taken as the answer
                self.context.add(
                    "feedback", "The reply did not call the answer tool; it is not taken as the answer.", step
                )
                return False, None
            if output.text.strip():
                arguments = _bounded({"answer": output.text.strip()}, self.policy.max_answer_chars)
                done = yield from self.settle(ToolCall("answer", arguments, ""), forced)
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
        if (call.name in self.policy.reading_tools or result.metadata.get("reads")) and not result.metadata.get(
            "no_audio"
        ):
            entry.data["read"] = [s.to_list() for s in result.spans]  # the spans whose lines it read

    def investigate(self, call: ToolCall) -> Generator[Event, None, None]:
        """A child run of the same loop over a sub-span; its conclusion is this call's result."""
        step = self.out.steps
        yield ToolCalled(**self.ids(), call_id=call.id, name="investigate", arguments=dict(call.arguments))
        t0 = time.perf_counter()
        asked = self._investigation(call)
        child = None
        if isinstance(asked, ToolResult):
            result = asked
        else:
            child = self._child_run(*asked)
            result = self._fold(child, (yield from child.drive(())), *asked)
        entry = self.context.add_tool_result(
            step, call, result.text, is_error=result.is_error, spans=[s.to_list() for s in result.spans]
        )
        entry.data["memory_ref"] = result.metadata.get("memory_ref")
        if child is not None:  # what the child was shown and read counts as looked at here too
            seen = perceived(child.context)
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

    def _investigation(self, call: ToolCall) -> tuple[TimeSpan, str] | ToolResult:
        """The span and question an investigate call asks about, or the error it gets back."""
        from pydantic import ValidationError  # pydantic loads when a run first needs it

        from mcr.run.replies import InvestigateArguments, validation_problem

        try:
            args = InvestigateArguments.model_validate(call.arguments, context={"duration": self.duration})
        except ValidationError as exc:
            return ToolResult.error(f"error: invalid arguments for 'investigate': {validation_problem(exc)}")
        if not self.can_investigate:
            return ToolResult.error(
                f"error: investigations may nest at most {self.policy.max_depth} deep; "
                "look at the span with inspect_frames instead"
            )
        if args.span.duration <= 0:
            return ToolResult.error(f"error: the span {args.span} is empty; give a span inside the video")
        return args.span, args.question

    def _child_run(self, span: TimeSpan, question: str) -> _Run:
        """A run over ``span`` alone: a fresh context asking ``question``, the same video, memory
        and models, the child policy's steps, what is left of the wall time, and the shared count
        of model calls."""
        context = Context(self.context.system_prompt, self.context.profile, self.context.count_tokens)
        info = {**self.video.info(), "name": self.video.path.name}
        context.add_task(f"{question}\n(Investigate only the span {span} of the video.)", None, info)
        context.entries[0].data["question"] = question
        # its own state and cancel flag: a child's tools must not change or stop the parent's
        tools = replace(self.tool_ctx, state=dict(self.tool_ctx.state), cancelled=threading.Event())
        wall = None
        if self.budget.max_wall_s is not None:
            wall = max(1.0, self.budget.max_wall_s - (time.perf_counter() - self.started))
        settings = replace(
            self.settings,
            budget=Budget(self.policy.investigate_steps, wall, None, self.budget.max_parallel_tools),
            policy=self.policy.for_child(),
            # the same child when the run is resumed from its trace: its events and memory match the recorded ones
            run_id=uuid.uuid5(uuid.NAMESPACE_OID, f"{self.run_id}/{self.out.steps}/{span}/{question}").hex[:12],
            depth=self.depth + 1,
            parent_run_id=self.run_id,
            answer_form=None,
            focus=span,
        )
        return _Run(self.model, context, self.registry, tools, settings)

    def _fold(self, child: _Run, done: RunResult, span: TimeSpan, question: str) -> ToolResult:
        """The child's conclusion as the investigate call's result; its cost joins this run's and
        its answer is kept in memory as a fact about the span."""
        self.out.usage = self.out.usage + done.usage
        cited = ", ".join(str(s) for s in done.evidence) or "none"
        text = f"investigation of {span} ({done.status}): {done.answer or '(no conclusion)'}; evidence: {cited}"
        ref = None
        memory = self.tool_ctx.memory
        if done.answer and memory is not None:
            fact = f"About {span}, asked '{question}': {done.answer}"
            same = [e for e in memory.store.query(self.video.id, "fact", span) if e.text == fact and e.span == span]
            ref = (  # a resumed run finds what it wrote before it was stopped
                same[0].ref
                if same
                else memory.write(fact, "fact", self.video.id, span, source=f"run:{child.run_id}", confidence=None).ref
            )
            text += f" (saved as {ref})"
        return ToolResult(
            text,
            spans=[span] + list(done.evidence),
            metadata={"child_run_id": child.run_id, "status": done.status, "memory_ref": ref},
        )

    # ------------------------------------------------------------- answering
    def settle(self, call: ToolCall, forced: bool) -> Generator[Event, None, RunResult | None]:
        """Hand a proposed answer to the checker; end the run when it is settled, else go on (None)."""
        outcome = yield from self.checker.propose(call, self.ids(), forced, self.stop_reason)
        if isinstance(outcome, Commit):
            self._keep(outcome.text, outcome.evidence, outcome.typed, outcome.videos)
            return (yield from self.finish(outcome.status))
        if isinstance(outcome, GiveUp):
            return (yield from self.end_with_best(outcome.failed))
        return None

    def final_call(self, stop: str) -> Generator[Event, None, RunResult]:
        """The budget is spent (or, with no steps at all, there is nothing to do but answer):
        one last call that may only answer."""
        self.stop_reason = None if stop == "max_steps" and self.budget.max_steps == 0 else stop
        self.say("answer", answer_prompt(self.stop_reason))
        output = yield from self.call("act", self.offered(), forced=True, allowed=["answer"])
        _, done = yield from self.handle(output, forced=True)
        return done if done is not None else (yield from self.end_with_best())

    def end_with_best(self, failed: bool = False) -> Generator[Event, None, RunResult]:
        """End with the best answer so far: ``unverified`` (budget) or ``failed`` (checks kept failing)."""
        best = self.checker.best
        if best is None:
            return (yield from self.finish("no_answer"))
        self._keep(*best)
        if not self.policy.verify:
            return (yield from self.finish(self.stop_reason or "answered"))
        return (yield from self.finish("failed" if failed else "unverified"))

    def _keep(self, text: str, evidence: list[TimeSpan], typed: TypedAnswer | None, videos: list[str]) -> None:
        self.out.answer, self.out.evidence, self.out.evidence_videos = text, evidence, list(videos)
        self.out.value = typed.value if typed is not None else None

    def finish(self, status: str, error: str | None = None) -> Generator[Event, None, RunResult]:
        out = self.out
        out.status, out.error = status, error
        out.wall_s = round(time.perf_counter() - self.started, 3)
        out.frames_seen = len(self.context.frames_seen())
        out.verdicts = list(self.checker.verdicts)
        yield RunFinished(**self.ids(), result=out)
        return out


def _bounded(arguments: dict, limit: int) -> dict:
    """An answer call's arguments with an answer longer than ``limit`` cut there, with a note."""
    text = arguments.get("answer")
    if not isinstance(text, str) or len(text) <= limit:
        return arguments
    note = f" [answer cut at {limit} of {len(text)} characters (Policy.max_answer_chars)]"
    return {**arguments, "answer": text[:limit].rstrip() + note}
