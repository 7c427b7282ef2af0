"""``ScriptedModel``: a model that follows a script, for tests of the loop and of your tools.

    model = ScriptedModel([
        tool_call("inspect_frames", span="00:00-00:04", max_frames=4),
        answer("a red square", evidence=["00:00-00:04"]),
    ])
    result = Agent(model=model).run("clip.mp4", "What shape is shown?")
    model.assert_complete()
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

from mcr.models import ModelOutput
from mcr.types import Message, ToolCall, Usage

Step = Union[ModelOutput, Callable[[list[Message], list[dict] | None], ModelOutput]]


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


class ScriptExhausted(AssertionError):
    pass


@dataclass
class RecordedCall:
    messages: list[Message]
    tools: list[dict] | None
    options: dict


class ScriptedModel:
    """Returns its steps in order and records every call it receives in ``.calls``.

    A step is a ``ModelOutput`` or a function ``(messages, tools) -> ModelOutput``.
    """

    def __init__(self, steps: Sequence[Step], name: str = "scripted", tokens_per_call: tuple[int, int] = (100, 20)) -> None:
        self.steps = list(steps)
        self.calls: list[RecordedCall] = []
        self.name = name
        self.tokens_per_call = tokens_per_call

    @property
    def remaining(self) -> int:
        return len(self.steps) - len(self.calls)

    def generate(self, messages: list[Message], tools: list[dict] | None = None, **options: Any) -> ModelOutput:
        index = len(self.calls)
        self.calls.append(RecordedCall(list(messages), tools, dict(options)))
        if index >= len(self.steps):
            raise ScriptExhausted(f"ScriptedModel was called {index + 1} times but has {len(self.steps)} steps")
        step = self.steps[index]
        out = step(messages, tools) if callable(step) else step
        usage = out.usage if out.usage.total_tokens else Usage(*self.tokens_per_call, 1)
        return ModelOutput(out.text, [ToolCall(c.name, dict(c.arguments), c.id) for c in out.tool_calls],
                           out.reasoning, Usage(usage.input_tokens, usage.output_tokens, 1), out.raw)

    def assert_complete(self) -> None:
        """Fail unless every step was used."""
        if self.remaining:
            raise AssertionError(f"ScriptedModel used {len(self.calls)} of {len(self.steps)} steps")
