"""``replay:FILE``: re-run the model turns recorded in a trace (or a small JSON script).

Re-running a recorded run against the current tools shows what a tool change does
without calling the model again.

A recording fits any policy: each call reads its phase from the phase message the loop
appends (:mod:`.phases`). A plan, reflection or verification request takes the next step when
that step is a text of its phase (a trace records each call's phase; in a script, a step may
say ``"phase"``, a verdict is a verification, and a text step before a later tool step is a
plan or reflection), else it gets the neutral reply a test's scripted model gives: an empty
plan, an empty reflection, a "supported" verdict. An acting call skips the texts of phases
the policy does not run. So a script of tool and answer steps runs under every policy, and a
script of every phase, in order, replays exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcr.types import Message, ToolCall, Usage

from .base import ModelError, ModelOutput
from .parse import json_values
from .phases import NO_TOOL_PHASES, PHASE_NAMES, phase_of

THINKING = "think"  # a script's text step before a later tool step: a plan or a reflection
DEFAULT_REPLIES = {  # what a phase request gets when the recording has no text for it
    "plan": "",
    "reflect": "",
    "verify": json.dumps(
        {"verdict": "supported", "confidence": 0.9, "reason": "no verdict was recorded: the default reply"}
    ),
}


def _text_of(item: dict, n: int) -> str:
    text = item.get("text", "")
    if not isinstance(text, str):
        raise ModelError(f"replay script step {n}: 'text' must be a string, got {type(text).__name__}")
    return text


def _call_of(name: Any, arguments: Any, n: int) -> ToolCall:
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"replay script step {n}: a tool's name must be a non-empty string, got {name!r:.60}")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ModelError(
            f"replay script step {n}: 'arguments' of {name} must be an object of named arguments, "
            f"got {type(arguments).__name__}"
        )
    return ToolCall(name, dict(arguments))


def _step_from_script(item: Any, n: int) -> ModelOutput:
    if isinstance(item, str):
        return ModelOutput.from_text(item)
    if not isinstance(item, dict):
        raise ModelError(f"replay script step {n}: expected an object or a string, got {type(item).__name__}")
    if "answer" in item:
        args = {"answer": item["answer"]}
        if "evidence" in item:
            args["evidence"] = item["evidence"]
        return ModelOutput(text=_text_of(item, n), tool_calls=[ToolCall("answer", args)])
    if "tool" in item:
        return ModelOutput(text=_text_of(item, n), tool_calls=[_call_of(item["tool"], item.get("arguments"), n)])
    if "tool_calls" in item:
        calls = item["tool_calls"]
        if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
            raise ModelError(f"replay script step {n}: 'tool_calls' must be a list of {{'name', 'arguments'}} objects")
        return ModelOutput(
            text=_text_of(item, n), tool_calls=[_call_of(c.get("name"), c.get("arguments"), n) for c in calls]
        )
    if "text" in item:
        return ModelOutput.from_text(_text_of(item, n))
    raise ModelError(f"replay script step {n}: needs one of 'tool', 'tool_calls', 'answer' or 'text'")


def _script_phases(steps: list[Any], outputs: list[ModelOutput]) -> list[str | None]:
    """The phase of each script step (see the module's notes); None: an acting step."""
    phases: list[str | None] = []
    for n, (item, out) in enumerate(zip(steps, outputs), 1):
        given = item.get("phase") if isinstance(item, dict) else None
        if given is not None and given not in PHASE_NAMES:
            raise ModelError(f"replay script step {n}: 'phase' must be one of {', '.join(PHASE_NAMES)}, got {given!r}")
        if given is None and not out.tool_calls:
            if any(isinstance(v, dict) and "verdict" in v for v in json_values(out.text)):
                given = "verify"
            elif any(o.tool_calls for o in outputs[n:]):
                given = THINKING
        phases.append(given)
    return phases


class ReplayModel:
    """Hands out recorded model outputs in order, each call to the step of its phase."""

    def __init__(
        self, outputs: list[ModelOutput], source: str = "replay", phases: list[str | None] | None = None
    ) -> None:
        self.outputs = list(outputs)
        self.phases = list(phases) if phases is not None else [None] * len(self.outputs)
        self.position = 0
        self.name = f"replay:{source}"

    @classmethod
    def from_file(cls, path: str | Path) -> "ReplayModel":
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelError(f"replay file not found: {p}")
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            outputs, phases = [], []
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ModelError(f"{p}:{n}: not a trace line ({exc.msg})") from None
                if not isinstance(event, dict):
                    raise ModelError(f"{p}:{n}: not a trace line (a JSON object per line)")
                if event.get("event") == "model_called":
                    try:
                        outputs.append(ModelOutput.from_dict(event.get("output") or {}))
                        phases.append(event.get("phase") if event.get("phase") in PHASE_NAMES else None)
                    except (AttributeError, KeyError, TypeError, ValueError):
                        raise ModelError(
                            f"{p}:{n}: a model_called line whose output is not a recorded output"
                        ) from None
            if not outputs:
                raise ModelError(f"{p} holds no recorded model calls to replay")
            return cls(outputs, p.name, phases)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{p}: not JSON ({exc.msg} at line {exc.lineno})") from None
        steps = data.get("steps") if isinstance(data, dict) else data
        if not isinstance(steps, list) or not steps:
            raise ModelError(f"{p}: a replay script is a list of steps (or {{'steps': [...]}})")
        outputs = [_step_from_script(s, i) for i, s in enumerate(steps, 1)]
        return cls(outputs, p.name, _script_phases(steps, outputs))

    def fresh(self) -> "ReplayModel":
        """The same recording from its first step: one for each run a service starts."""
        copy = ReplayModel(self.outputs, phases=self.phases)
        copy.name = self.name
        return copy

    def generate(self, messages: list[Message], tools: list[dict] | None = None, **options: Any) -> ModelOutput:
        asked = phase_of(messages)
        if asked in NO_TOOL_PHASES:
            kept = self.phases[self.position] if self.position < len(self.outputs) else None
            fits = kept == asked or (kept == THINKING and asked != "verify")
            if not fits or self.outputs[self.position].tool_calls:
                return ModelOutput(DEFAULT_REPLIES[asked], usage=Usage(0, 0, 1))
        else:  # an acting call: the texts of phases this policy does not run are passed over
            while self.position < len(self.outputs) and self.phases[self.position] in NO_TOOL_PHASES + (THINKING,):
                self.position += 1
        if self.position >= len(self.outputs):
            raise ModelError(
                f"{self.name}: the recording has no step {self.position + 1} (it holds {len(self.outputs)})"
            )
        out = self.outputs[self.position]
        self.position += 1
        return ModelOutput(
            out.text,
            [ToolCall(c.name, dict(c.arguments), c.id) for c in out.tool_calls],
            out.reasoning,
            Usage(out.usage.input_tokens, out.usage.output_tokens, 1),
        )
