"""Typed events the loop yields. The trace writes them; the renderer draws them.

Every event is plain data: ``to_dict()`` gives one JSON object (frames only as
references) and ``event_from_dict`` reads it back.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from mcr.run.result import RunResult


@dataclass
class Event:
    kind: ClassVar[str] = "event"
    run_id: str = ""
    depth: int = 0
    step: int = 0
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return {"event": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Event":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    question: str = ""
    options: list[str] = field(default_factory=list)
    video: dict = field(default_factory=dict)
    model: str = ""
    tools: list[str] = field(default_factory=list)
    budget: dict = field(default_factory=dict)
    parent_run_id: str | None = None
    policy: dict = field(default_factory=dict)  # the Policy's fields, so the run can be resumed as it was
    memory: str | None = None  # the memory database's path; None: no memory


@dataclass
class ModelCalled(Event):
    kind: ClassVar[str] = "model_called"
    latency_s: float = 0.0
    output: dict = field(default_factory=dict)  # ModelOutput.to_dict()
    input_messages: int = 0
    context_tokens: int = 0
    forced_answer: bool = False
    phase: str = "act"  # act | plan | reflect | verify


@dataclass
class ModelDelta(Event):
    """A piece of the model's reply while it is being generated, for live display.

    Not written to the trace: the ``model_called`` event that follows holds the whole reply.
    """

    kind: ClassVar[str] = "model_delta"
    text: str = ""


@dataclass
class ToolCalled(Event):
    kind: ClassVar[str] = "tool_called"
    call_id: str = ""
    name: str = ""
    arguments: dict = field(default_factory=dict)


@dataclass
class ToolReturned(Event):
    kind: ClassVar[str] = "tool_returned"
    call_id: str = ""
    name: str = ""
    text: str = ""
    is_error: bool = False
    spans: list[list[float]] = field(default_factory=list)
    frames: dict | None = None  # Frames.ref(): source, video id, timestamps; never pixels
    metadata: dict = field(default_factory=dict)
    latency_s: float = 0.0
    trust: str = "trusted"  # "untrusted": the text quotes the video, the web or memory as data


@dataclass
class AnswerProposed(Event):
    kind: ClassVar[str] = "answer_proposed"
    call_id: str = ""
    answer: str = ""
    evidence: list[list[float]] = field(default_factory=list)
    accepted: bool = True
    reason: str = ""


@dataclass
class RunFinished(Event):
    """The end of a run (or of a child run): its ``RunResult``.

    Its trace line is the result's fields beside the event's, as it always was, and those
    fields read through the event as they always did (``event.status``; ``event.evidence`` as
    ``[start, end]`` lists, ``event.usage`` as a dict): ``event.result`` has them typed.
    """

    kind: ClassVar[str] = "run_finished"
    result: RunResult = field(default_factory=RunResult)

    def __getattr__(self, name: str) -> Any:  # only called for names the event itself lacks
        if name in _TRACE_FIELDS and "result" in self.__dict__:
            return self.result.to_trace()[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self) -> dict:
        return {
            "event": self.kind,
            "run_id": self.run_id,
            "depth": self.depth,
            "step": self.step,
            "time": self.time,
            **self.result.to_trace(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RunFinished":
        ids = {k: d[k] for k in ("run_id", "depth", "step", "time") if k in d}
        return cls(**ids, result=RunResult.from_trace(d, d.get("run_id", "")))


_TRACE_FIELDS = frozenset(RunResult().to_trace())


@dataclass
class PhaseEntry(Event):
    """A perception overview, a plan or a reflection, as added to the context."""

    kind: ClassVar[str] = "phase"
    phase: str = ""  # perceive | plan | reflect
    text: str = ""
    frames: dict | None = None
    memory_ref: str | None = None


@dataclass
class Verification(Event):
    """A check of a proposed answer: by rules, or by the model over the cited spans."""

    kind: ClassVar[str] = "verification"
    round: int = 0
    source: str = ""
    verdict: str = ""
    confidence: float = 0.0
    reason: str = ""
    checks: list[str] = field(default_factory=list)
    passed: bool | None = None  # None in traces from before it was kept: read it from the verdict
    # per cited span: {"span": [a, b], "frames": [times], "readings": [{"source", "span", "ref"?}]}
    support: list[dict] = field(default_factory=list)


@dataclass
class IndexStage(Event):
    """One stage of the video index: built, resumed, reused from an earlier run, or skipped.
    ``info``: what the stage counted (a captioning stage's model calls, tokens, seconds...)."""

    kind: ClassVar[str] = "index_stage"
    video_id: str = ""
    stage: str = ""
    status: str = ""
    entries: int = 0
    seconds: float = 0.0
    reason: str = ""
    info: dict = field(default_factory=dict)


@dataclass
class IndexProgress(Event):
    """An index stage built while the run waits on a tool that first needs it: how far it is, in
    seconds of the video. The tool's result follows once the stage is built."""

    kind: ClassVar[str] = "index_progress"
    video_id: str = ""
    stage: str = ""
    done: float = 0.0
    total: float = 0.0


@dataclass
class MemoryWritten(Event):
    """An entry the run wrote to memory (by a tool, or the answer at the end)."""

    kind: ClassVar[str] = "memory_written"
    entry_id: int = 0
    entry_kind: str = ""
    text: str = ""
    span: list[float] | None = None


@dataclass
class ContextCompacted(Event):
    """The context neared its token or frame budget and was compacted once: older frames became
    references, older results were shortened; the view is appended to from here."""

    kind: ClassVar[str] = "context_compacted"
    entries: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    frames_before: int = 0
    frames_after: int = 0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RunStarted,
        ModelCalled,
        ModelDelta,
        ToolCalled,
        ToolReturned,
        AnswerProposed,
        RunFinished,
        IndexStage,
        IndexProgress,
        MemoryWritten,
        PhaseEntry,
        Verification,
        ContextCompacted,
    )
}


def event_from_dict(d: dict) -> Event:
    """Read an event back from its JSON object; unknown fields are ignored."""
    cls = EVENT_TYPES.get(d.get("event", ""))
    if cls is None:
        raise ValueError(f"unknown event type {d.get('event')!r}")
    return cls.from_dict(d)


def jsonable(value: Any) -> Any:
    """Make metadata safe for JSON: arrays become shapes, unknown objects their repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    shape = getattr(value, "shape", None)
    if shape is not None:
        return {"array": list(shape), "dtype": str(getattr(value, "dtype", ""))}
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except Exception:
            pass
    return str(value)
