"""The model protocol every backend follows: ``Model``, ``ModelOutput`` and the model errors.

Backends import these from here; ``mcr.models`` re-exports them with ``load_model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mcr.errors import MCRError
from mcr.types import Message, ToolCall, Usage

from .parse import parse_tool_calls


class ModelError(MCRError, RuntimeError):
    """A model could not be loaded or called; the message says what to do."""


class ModelNotAvailable(ModelError):
    """The named model is not on this machine and cannot be fetched."""


@dataclass
class ModelOutput:
    """One model turn: answer text, tool calls, reasoning kept apart, and usage."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str = ""
    usage: Usage = field(default_factory=Usage)
    raw: str | None = None

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "tool_calls": [c.to_dict() for c in self.tool_calls],
            "reasoning": self.reasoning,
            "usage": self.usage.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelOutput":
        return cls(
            text=d.get("text") or "",
            tool_calls=[ToolCall.from_dict(c) for c in d.get("tool_calls") or []],
            reasoning=d.get("reasoning") or "",
            usage=Usage.from_dict(d.get("usage")),
        )

    @classmethod
    def from_text(cls, raw: str, usage: Usage | None = None, known: set[str] | None = None) -> "ModelOutput":
        """Parse raw generated text into answer text, tool calls and reasoning."""
        parsed = parse_tool_calls(raw, known=known)
        return cls(parsed.text, parsed.tool_calls, parsed.reasoning, usage or Usage(), raw=raw)


@runtime_checkable
class Model(Protocol):
    name: str

    def generate(self, messages: list[Message], tools: list[dict] | None = None, **options: Any) -> ModelOutput: ...


__all__ = ["Model", "ModelError", "ModelNotAvailable", "ModelOutput"]
