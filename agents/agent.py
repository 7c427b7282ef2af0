"""``Agent``: a model, tools and budgets; ``run`` answers a question about a video."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from mcr.errors import MCRError
from mcr.models import ModelError, load_model
from mcr.models.background import LoadingModel
from mcr.run.context import Context, RenderProfile
from mcr.run.events import Event, IndexStage, MemoryWritten, RunFinished
from mcr.run.loop import INTERRUPTED, Budget
from mcr.run.loop import run as run_loop
from mcr.run.policy import Policy
from mcr.run.result import RunResult
from mcr.run.trace import TraceWriter, default_trace_path
from mcr.tools import Tool, ToolContext
from mcr.types import TimeSpan

from .wiring import _as_list, _Emitter, _open_memory, _registry, open_library, render_profile_of

Subscriber = Callable[[Event], Any]
log = logging.getLogger(__name__)


class Agent:
    """Answers questions about videos with a model and tools, in one shared context.

    Args:
        model: a model object, a hub id, a local model folder or ``replay:FILE``.
        tools: extra tools (``@tool`` functions, toolset instances, or one of them alone) next to
            the built-in ones; names of built-in tools among them
            (``tools=["asr", "inspect_frames", my_tool]``) keep only those. Two tools of one name
            are an error here; so is a tool named like a built-in one, unless it says
            ``@tool(replaces="asr")`` or ``replace_builtins`` is set.
        replace_builtins: let the tools given replace the built-in tools of the same names.
        max_steps: model turns before the run is asked for its answer.
        builtin: include the built-in tools (``inspect_frames``).
        trace_dir: where traces go (default ``.mcr/traces``); ``False`` writes none.
        subscribers: functions called with every event of a run. They run inline, on the run's
            thread and in order, before the run goes on: a slow one slows the run, so hand slow
            work (a network post, a render) to a queue or thread of your own. One that raises is
            logged once and gets no more events of that run.
        policy: the phases around the loop (``Policy()``: perceive, plan, reflect, verify,
            investigate; ``"plain"``: a bare tool loop; ``"baseline"``: uniform frames, one call).
        memory: a ``Memory``, a database path, or ``False`` for none; by default the
            workspace memory ``.mcr/memory.db`` of the current directory.
        index: video index stages to build (or reuse) before the run starts. By default
            ``shots``, and ``transcript`` too when the policy opens with an overview and the
            ``asr`` tool is on (so the overview can quote what is said); on-screen text
            (``ocr``) and frame embeddings are built when a tool first needs them, or up front
            with ``index=("shots", "transcript", "ocr", "embeddings")`` or ``mcr-agent index``.
            ``"captions"`` captions every clip of at most 10 s with ``caption_model``.
        caption_model: the model (an object or a spec, as ``model``) that captions clips for the
            ``captions`` stage; by default the agent's own model.
    """

    def __init__(
        self,
        model: Any = None,
        tools: Sequence[Any] | Any = (),
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
        memory: Any = None,
        index: Sequence[str] | None = None,
        policy: Policy | str | None = None,
        caption_model: Any = None,
        replace_builtins: bool = False,
    ) -> None:
        if max_steps < 0:
            raise ValueError("max_steps must be 0 or more")
        if isinstance(policy, str):
            if policy not in ("mcr", "plain", "baseline"):
                raise ValueError(f"unknown policy {policy!r}: 'mcr', 'plain' or 'baseline' (or a Policy)")
            policy = {"mcr": Policy(), "plain": Policy.plain(), "baseline": Policy.baseline()}[policy]
        self.policy = policy or Policy()
        self.model = load_model(model, background=True)  # weights load while the video is probed and indexed
        self.caption_model = load_model(caption_model, background=True) if caption_model is not None else None
        self.memory = _open_memory(memory)
        self.registry = _registry(_as_list(tools), builtin, self.memory is not None, replace_builtins)
        if index is None:
            index = ("shots", "transcript") if self.policy.perceive and "asr" in self.registry.names else ("shots",)
        from mcr.memory.index import check_stages

        check_stages(index)
        self.index_stages = tuple(index) if self.memory is not None else ()
        self.budget = Budget(max_steps=max_steps, max_wall_s=max_wall_s, max_tokens=max_tokens)
        self.system_prompt = system_prompt
        self._profile = profile
        self.trace_dir = trace_dir
        self.work_dir = Path(work_dir) if work_dir else Path(".mcr") / "work"
        self.subscribers = list(subscribers)
        self.device = device
        self.generate_options = dict(generate_options or {})

    @property
    def profile(self) -> RenderProfile:
        """The context budgets: the ones given, else the model's (waits for a model still loading)."""
        return self._profile or render_profile_of(self.model)

    @property
    def tools(self) -> list[Tool]:
        return list(self.registry)

    def stream(
        self,
        video: Any = None,
        question: str = "",
        options: Sequence[str] | None = None,
        trace: str | os.PathLike | None = None,
        answer_form: str | None = None,
        run_id: str | None = None,
        library: str | None = None,
    ) -> Iterator[Event]:
        """Run and hand out each event as it happens. Every event is also written to the trace.

        An interrupt (Ctrl-C) ends the run with status ``interrupted`` in the trace and goes on
        as ``KeyboardInterrupt``; ``resume(trace)`` continues such a run."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty")
        if library is not None:
            if video is not None:
                raise ValueError("give a video or library=NAME, not both")
            video = self.named_library(library)
        return self._stream(video, question, options, trace, answer_form, run_id)

    def named_library(self, name: str) -> Any:
        """The ``Library`` recorded under ``name`` in this agent's memory (``mcr-agent index DIR
        --library NAME``); a video that is no longer where it was indexed is left out, with a warning."""
        if self.memory is None:
            raise ValueError("a named library is kept in the memory: not with memory=False")
        from mcr.tools.library import Library

        found, gone = self.memory.store.library_files(name)
        if gone:
            log.warning("library %r: left out, not where it was indexed (moved or deleted): %s", name, ", ".join(gone))
        return Library.open(found)

    def watch(self, source: str, **options: Any) -> Any:
        """Watch a live source into this agent's memory: a started ``LiveSession`` (see
        :mod:`mcr.agents.live`; ``options``: ``stages``, ``segment_s``, ``when``, ``webhook``,
        ``on_event``). ``session.ask(question)`` answers with this agent's model; ``stop()`` ends it."""
        from .live import LiveSession

        if self.memory is None:
            raise ValueError("watching needs a memory: an Agent made with memory=False cannot watch")
        return LiveSession(source, memory=self.memory, model=self.model, agent=self, **options).start()

    def resume(self, trace: str | os.PathLike) -> RunResult:
        """Continue a run that was interrupted or killed (even with ``kill -9``) from its trace.

        The context is rebuilt from the trace: recorded model outputs and tool results are used
        again (frames decoded at the recorded times), nothing already done runs again, and the
        run goes on from its next step with this agent's model and tools, writing on in the
        same trace. Give the agent the tools the run had."""
        return _finished(self.resume_stream(trace))

    def resume_stream(self, trace: str | os.PathLike) -> Iterator[Event]:
        """``resume`` that hands out each event of the continued run as it happens."""
        from mcr.media.video import Video
        from mcr.run.resume import RecordedModel, RecordedTools, ResumeError, SkipRecorded, load_unfinished

        run = load_unfinished(trace)
        started = run.started
        if "library" in (started.video or {}):
            raise ResumeError(f"the run in {run.path} asked a library: it cannot be continued; ask the question again")
        missing = [t for t in started.tools if t not in self.registry.names]
        if missing:
            raise ResumeError(
                f"the run in {run.path} used tools this agent does not have: {', '.join(missing)}; "
                "give them to the agent (mcr-agent resume --tools FILE)"
            )
        video = None
        if started.video:
            video = Video(started.video.get("path", ""))
            if started.video.get("id") and video.id != started.video["id"]:
                raise ResumeError(f"{video.path} changed since the run in {run.path}: it cannot be continued")
        model = RecordedModel(self.model, run.outputs)
        registry = RecordedTools(self.registry, run.results)
        form = started.budget.get("form")
        return self._stream(
            video,
            started.question,
            started.options,
            run.path,
            form,
            run.run_id,
            model,
            registry,
            SkipRecorded(run.events),
        )

    def _stream(
        self,
        video: Any,
        question: str,
        options: Sequence[str] | None,
        trace: str | os.PathLike | None,
        answer_form: str | None,
        run_id: str | None = None,
        model: Any = None,
        registry: Any = None,
        skip: Callable[[Event], bool] | None = None,
    ) -> Iterator[Event]:
        from mcr.media.sources import open_video

        library = open_library(video)
        if library is not None and self.memory is None:
            raise ValueError("asking a library needs a memory (its videos' index): not memory=False")
        # one video: a path, a URL, a page yt-dlp reads
        handle = None if video is None or library is not None else open_video(video)
        run_id = run_id or uuid.uuid4().hex[:12]
        context = Context(self.system_prompt)
        loading = isinstance(self.model, LoadingModel)  # its budgets are taken once the index is built
        info = handle.info() if handle is not None else None
        if info is not None:
            info = {**info, "name": (handle.source or {}).get("url") or Path(info["path"]).name}
        context.add_task(question.strip(), list(options or []), info)
        tool_ctx = ToolContext(
            video=handle,
            work_dir=self.work_dir / run_id,
            run_id=run_id,
            device=self.device,
            memory=self.memory,
            library=library,
        )
        if library is not None and registry is None and "library_search" not in self.registry:
            from mcr.tools.library import library_search

            registry = self.registry.with_tools([library_search])

        def use_model() -> None:  # the model's budgets, token counter and frame size
            context.use(self.profile, getattr(self.model, "count_tokens", None))
            max_pixels = getattr(getattr(self.model, "profile", None), "max_pixels", None)
            if max_pixels:  # frames are decoded no larger than the model takes them
                tool_ctx.max_pixels = max_pixels

        if not loading:
            use_model()
        writer = None
        if trace is not None or self.trace_dir is not False:
            path = Path(trace) if trace is not None else default_trace_path(run_id, self.trace_dir or None)
            writer = TraceWriter(path)
        self.last_context = context
        self.last_trace = writer.path if writer is not None else None

        emit = _Emitter(writer, list(self.subscribers), skip)
        finished = False
        try:
            gen = run_loop(
                model or self.model,
                context,
                registry or self.registry,
                tool_ctx,
                self.budget,
                run_id=run_id,
                generate_options=self.generate_options,
                before=self._prepare(handle, question, context, use_model if loading else None, library),
                policy=self.policy,
                answer_form=answer_form,
            )
            for event in gen:
                if isinstance(event, RunFinished) and event.depth == 0:
                    finished = True
                    if self.memory is not None and event.result.status != "interrupted":
                        for written in self._write_back(handle, question, event.result, library):
                            yield emit(written)
                yield emit(event)
        except (KeyboardInterrupt, GeneratorExit):  # stopped outside the loop's own steps: the trace says so too
            if not finished:
                emit(
                    RunFinished(run_id=run_id, result=RunResult(run_id=run_id, status="interrupted", error=INTERRUPTED))
                )
            raise
        except MCRError as exc:  # before the first step: a model that failed to load, a read-only index...
            if finished:
                raise
            failed = RunFinished(run_id=run_id, result=RunResult(run_id=run_id, status="error", error=exc.one_line()))
            if not isinstance(exc, ModelError):
                emit(failed)
                raise
            yield emit(failed)  # like a model that fails during the run: the run ends with its error
        finally:
            if writer is not None:
                writer.close()

    def _prepare(
        self, video: Any, question: str, context: Context, use_model: Callable[[], None] | None, library: Any = None
    ) -> Iterator[Event]:
        """Before the first model call: build or reuse the index of the video (of each video of a
        ``library``) while the model loads, then take the model's budgets (``use_model``, when it
        was still loading) and add the memory digest."""
        with_memory = self.memory is not None and video is not None
        for each in library.videos if library is not None and self.memory is not None else []:
            yield from self._index(each)
        if with_memory:
            yield from self._index(video)
        if use_model is not None:
            use_model()  # waits for the load; a load that failed raises here
        digest = self.memory.digest(question, video.id) if with_memory else None
        if digest:
            context.add("memory", digest)

    def _index(self, video: Any) -> Iterator[Event]:
        """Build or reuse the agent's index stages for ``video``, an event for each stage."""
        if self.index_stages:
            from mcr.memory import VideoIndex
            from mcr.memory.index import make_stage

            model = self.caption_model if self.caption_model is not None else self.model
            captioner = {"model": model, "memory": self.memory}
            device = {"device": self.device} if self.device != "auto" else {}
            stages = [
                make_stage(s, **captioner, **device) if s == "captions" else s for s in self.index_stages
            ]  # the captions stage captions with a model: the agent's unless caption_model names one
            from mcr.media.sources import with_subtitles

            for report in VideoIndex(video, self.memory).build(with_subtitles(video, stages)):
                yield IndexStage(
                    video_id=video.id,
                    stage=report.stage,
                    status=report.status,
                    entries=report.entries,
                    seconds=round(report.seconds, 3),
                    reason=report.reason,
                    info=report.info,
                )

    def _write_back(self, video: Any, question: str, finished: RunResult, library: Any = None) -> Iterator[Event]:
        """Keep the answer for later questions about the same video (in a library run, about each
        video it cites, with the spans cited in it)."""
        if not finished.answer or finished.status in ("error", "no_answer"):
            return
        cited: dict[Any, list[TimeSpan]] = {video: list(finished.evidence)}
        if library is not None:
            cited = {}
            for span, name in zip(finished.evidence, finished.evidence_videos):
                cited.setdefault(library.find(name), []).append(span)
        for n, (each, spans) in enumerate(cited.items()):
            span = TimeSpan(min(s.start for s in spans), max(s.end for s in spans)) if spans else None
            entry = self.memory.write(
                f"Q: {question.strip()} A: {finished.answer}",
                "answer",
                each.id if each is not None else None,
                span,
                source=f"run:{finished.run_id}",
                # kept once, however the run was resumed
                origin=f"{finished.run_id}:{finished.steps}:answer" + (f":{n}" if n else ""),
                status=finished.status,
                evidence=[s.to_list() for s in spans],
            )
            yield MemoryWritten(
                run_id=finished.run_id,
                step=finished.steps,
                entry_id=entry.id,
                entry_kind="answer",
                text=entry.text,
                span=span.to_list() if span else None,
            )

    def run(
        self,
        video: Any = None,
        question: str = "",
        options: Sequence[str] | None = None,
        trace: str | os.PathLike | None = None,
        answer_form: str | None = None,
        library: str | None = None,
    ) -> RunResult:
        """Answer ``question`` about ``video`` (a path, an http(s) URL of a media file or of a page
        yt-dlp understands, or a ``Video``) or about a library of videos (a list of them, a folder
        or a glob pattern: the run starts from an overview of every video, searches them with
        ``library_search``, and each evidence span names its video); returns a RunResult.
        ``library="NAME"`` (no video) asks the library recorded under that name in the memory.

        ``answer_form`` is ``text``, ``choice``, ``span`` or ``count``; by default it follows
        from the options and the question ("when ..." asks for a span, "how many" for a count).
        """
        return _finished(self.stream(video, question, options, trace, answer_form, library=library))


def _finished(events: Iterator[Event]) -> RunResult:
    """The result of the run whose events these are."""
    finished: RunFinished | None = None
    for event in events:
        if isinstance(event, RunFinished) and event.depth == 0:
            finished = event
    assert finished is not None, "the loop ended without a run_finished event"
    return finished.result


class BaselineAgent(Agent):
    """Answers from ``frames`` uniformly sampled frames in one model call, the way VLMs are
    usually evaluated; the same loop, trace and result as ``Agent``, for comparison."""

    def __init__(self, model: Any = None, frames: int = 32, max_steps: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("memory", False)
        kwargs.setdefault("policy", Policy.baseline(frames))
        kwargs.setdefault("builtin", False)
        super().__init__(model, max_steps=max_steps, **kwargs)


__all__ = ["Agent", "BaselineAgent", "RunResult"]
