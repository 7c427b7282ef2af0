"""Model doubles for tests of the loop and of your tools: ``ScriptedModel`` follows a script,
``RecordingModel`` wraps a model (or a function) and records every call it receives.

    model = ScriptedModel([
        tool_call("inspect_frames", span="00:00-00:04", max_frames=4),
        answer("a red square", evidence=["00:00-00:04"]),
    ])
    result = Agent(model=model).run("clip.mp4", "What shape is shown?")
    model.assert_complete()

Under the default policy the loop also asks for a plan, a reflection after each turn that
ran tools, and a verdict on the cited spans before it commits an answer. Every call of a run
is offered the same tools; a phase request says its phase in the last message, with the
marker of :mod:`mcr.models.phases` (see :func:`request_kind`). A phase request takes the next step
when that step is a text reply (no tool calls) or a function; otherwise, or when the script
is used up, it gets a neutral reply and the step waits for the next turn: an empty plan, an
empty reflection, a "supported" verdict. So a script holds only the steps a test cares
about. A text step right after a turn that ran tools is read as the reflection when the
policy reflects: script the reflection before a plain-text answer there.
``ScriptedModel(steps, strict=True)`` gives every call, phase requests too, the next step
in order and raises ``ScriptExhausted`` when there is none.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

from mcr.models import ModelOutput
from mcr.models.phases import NO_TOOL_PHASES, phase_of
from mcr.run.verify import VERDICT_SCHEMA, VERIFY_SYSTEM
from mcr.types import Message, ToolCall, Usage

Step = Union[ModelOutput, Callable[[list[Message], list[dict] | None], ModelOutput]]
PHASES = NO_TOOL_PHASES


def tool_call(name: str, /, *, thought: str = "", **arguments: Any) -> ModelOutput:
    """A step that calls one tool; ``thought`` is the text the model writes with the call."""
    return ModelOutput(text=thought, tool_calls=[ToolCall(name, arguments)])


def tool_calls(*calls: tuple[str, dict], thought: str = "") -> ModelOutput:
    """A step that calls several tools at once: ``tool_calls(("a", {...}), ("b", {...}))``."""
    return ModelOutput(text=thought, tool_calls=[ToolCall(n, dict(a)) for n, a in calls])


def answer(text: str, evidence: Sequence[Any] | None = None, **extra: Any) -> ModelOutput:
    """A step that commits an answer, citing evidence spans."""
    args: dict[str, Any] = {"answer": text, **extra}
    if evidence is not None:
        args["evidence"] = list(evidence)
    return ModelOutput(tool_calls=[ToolCall("answer", args)])


def say(text: str) -> ModelOutput:
    """A step whose raw text is parsed as a model's would be (tags, JSON, ``<think>``)."""
    return ModelOutput.from_text(text)


def verdict(kind: str = "supported", confidence: float = 0.9, reason: str = "") -> ModelOutput:
    """A step that answers a verification request: supported, contradicted or insufficient."""
    return ModelOutput(text=json.dumps({"verdict": kind, "confidence": confidence, "reason": reason}))


def request_kind(messages: Sequence[Message], tools: list[dict] | None, options: dict | None = None) -> str:
    """What a model call asks for: a phase request of the loop (``"plan"``, ``"reflect"``,
    ``"verify"``: the phase said by the last message, or the verifier's messages or verdict
    schema), ``"act"`` (a turn that may call tools, the forced answer among them), or
    ``"other"`` (no tools, none of those)."""
    said = phase_of(messages)
    if said in NO_TOOL_PHASES:
        return said
    if (options or {}).get("response_schema") == VERDICT_SCHEMA:
        return "verify"
    if messages and messages[0].role == "system" and messages[0].text == VERIFY_SYSTEM:
        return "verify"
    return "act" if tools or said else "other"


DEFAULT_REPLIES = {  # what a phase request gets when the script has no step for it
    "plan": ModelOutput(text=""),
    "reflect": ModelOutput(text=""),
    "verify": verdict("supported", 0.9, "no verdict was scripted: the default reply"),
}


class ScriptExhausted(AssertionError):
    pass


@dataclass
class RecordedCall:
    """One ``generate`` call: what was sent, what kind of request it was, and what came back.

    ``step`` is the index of the script step that answered it (``ScriptedModel``; ``None``
    for a default reply or an unscripted model); ``error`` is what the call raised.
    """

    messages: list[Message]
    tools: list[dict] | None
    options: dict
    kind: str = "act"
    step: int | None = None
    output: ModelOutput | None = None
    error: BaseException | None = field(default=None, repr=False)


class RecordingModel:
    """Records every ``generate(messages, tools, **options)`` call in ``.calls`` and answers it
    with ``inner``: a model (an object with ``generate``) or a function
    ``(messages, tools, **options) -> ModelOutput``.

    Any other attribute (``profile``, ``count_tokens``, ``streams_text``...) is the inner
    model's, so the wrapper stands in for the model anywhere: ``Agent(RecordingModel(model))``.
    Safe to call from several threads.
    """

    def __init__(self, inner: Any = None, name: str | None = None) -> None:
        self.inner = inner
        self.calls: list[RecordedCall] = []
        self.name = name or getattr(inner, "name", None) or getattr(inner, "__name__", None) or "recording"
        self._lock = threading.Lock()

    def __getattr__(self, attr: str) -> Any:  # only for attributes this wrapper does not have
        inner = self.__dict__.get("inner")
        if inner is None or attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(inner, attr)

    def generate(self, messages: list[Message], tools: list[dict] | None = None, **options: Any) -> ModelOutput:
        call = RecordedCall(list(messages), tools, dict(options), request_kind(messages, tools, options))
        with self._lock:
            self.calls.append(call)
        try:
            call.output = self.reply(call, messages, tools, options)
        except BaseException as exc:
            call.error = exc
            raise
        return call.output

    def reply(
        self, call: RecordedCall, messages: list[Message], tools: list[dict] | None, options: dict
    ) -> ModelOutput:
        """The answer to one recorded call: the inner model's (override in a subclass)."""
        generate = getattr(self.inner, "generate", None)
        if callable(generate):
            return generate(messages, tools=tools, **options)
        if callable(self.inner):
            return self.inner(messages, tools, **options)
        raise TypeError(f"RecordingModel needs a model or a function to answer with, got {self.inner!r}")

    def of_kind(self, *kinds: str) -> list[RecordedCall]:
        """The recorded calls of these kinds (``"act"``, ``"plan"``, ``"reflect"``, ``"verify"``)."""
        return [c for c in self.calls if c.kind in kinds]


class ScriptedModel(RecordingModel):
    """Returns its steps in order and records every call it receives in ``.calls``.

    A step is a ``ModelOutput`` or a function ``(messages, tools) -> ModelOutput``. Phase
    requests the script has no step for get a neutral reply unless ``strict`` (see the module).
    """

    def __init__(
        self,
        steps: Sequence[Step],
        name: str = "scripted",
        tokens_per_call: tuple[int, int] = (100, 20),
        strict: bool = False,
    ) -> None:
        super().__init__(None, name)
        self.steps = list(steps)
        self.used = 0
        self.strict = strict
        self.tokens_per_call = tokens_per_call

    @property
    def remaining(self) -> int:
        return len(self.steps) - self.used

    def reply(
        self, call: RecordedCall, messages: list[Message], tools: list[dict] | None, options: dict
    ) -> ModelOutput:
        with self._lock:
            step = self._take(call)
        if step is None:
            out = DEFAULT_REPLIES[call.kind]
        else:
            out = step(messages, tools) if callable(step) else step
        usage = out.usage if out.usage.total_tokens else Usage(*self.tokens_per_call, 1)
        return ModelOutput(
            out.text,
            [ToolCall(c.name, dict(c.arguments), c.id) for c in out.tool_calls],
            out.reasoning,
            Usage(usage.input_tokens, usage.output_tokens, 1),
            out.raw,
        )

    def _take(self, call: RecordedCall) -> Step | None:
        """The next step for this call (and mark it used), or None for a default phase reply."""
        phase = call.kind in PHASES and not self.strict
        if self.used < len(self.steps):
            step = self.steps[self.used]
            if not phase or callable(step) or not step.tool_calls:
                call.step = self.used
                self.used += 1
                return step
            return None
        if phase:
            return None
        defaults = sum(1 for c in self.calls if c is not call and c.step is None and c.error is None)
        note = f"; {defaults} phase requests got the default reply" if defaults > 0 else ""
        raise ScriptExhausted(f"ScriptedModel was called {len(self.calls)} times but has {len(self.steps)} steps{note}")

    def assert_complete(self) -> None:
        """Fail unless every step was used."""
        if self.remaining:
            raise AssertionError(f"ScriptedModel used {self.used} of {len(self.steps)} steps")
