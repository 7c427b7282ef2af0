"""The model protocol every backend follows, and ``load_model`` to pick one by name.

A model is any object with ``name`` and
``generate(messages, tools=None, **options) -> ModelOutput``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mcr.types import Message, ToolCall, Usage

from .parse import ParsedText, parse_tool_calls, split_reasoning

DEFAULT_MODEL = "OpenGVLab/InternVideo3-8B-Instruct"


class ModelError(RuntimeError):
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

    def generate(self, messages: list[Message], tools: list[dict] | None = None, **options: Any) -> ModelOutput:
        ...


def _hub_snapshot(model_id: str) -> Path | None:
    """A local snapshot of a hub model in the Hugging Face cache, if one is there."""
    cache = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    folder = cache / ("models--" + model_id.replace("/", "--")) / "snapshots"
    if not folder.is_dir():
        return None
    for snap in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if (snap / "config.json").exists():
            return snap
    return None


def load_model(spec: Any = None) -> Model:
    """A model from a spec: an object with ``generate``, ``replay:FILE``, a local path or a hub id.

    Nothing is downloaded here. A hub id must already be in the local Hugging Face
    cache; otherwise ``ModelNotAvailable`` says how to get it.
    """
    if spec is None:
        spec = os.environ.get("MCR_MODEL") or DEFAULT_MODEL
    if not isinstance(spec, str):
        if callable(getattr(spec, "generate", None)):
            return spec
        raise ModelError(f"not a model: {spec!r} (pass an object with generate(), a hub id, a path or 'replay:FILE')")
    spec = spec.strip()
    if spec.startswith("replay:"):
        from .replay import ReplayModel

        return ReplayModel.from_file(spec[len("replay:"):])
    local = Path(spec).expanduser()
    if local.exists():
        if not (local / "config.json").exists():
            raise ModelError(f"{local} is not a model folder: it has no config.json")
        return _transformers_model(str(local))
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        snapshot = _hub_snapshot(spec)
        if snapshot is None:
            raise ModelNotAvailable(
                f"model {spec} is not available offline: it is not in the local Hugging Face cache. "
                f"Download it where the hub is reachable (`hf download {spec}`) and pass its folder with "
                "--model /path/to/weights, or replay a recorded run with --model replay:TRACE.jsonl"
            )
        return _transformers_model(str(snapshot))
    raise ModelError(
        f"unknown model {spec!r}: pass a hub id like {DEFAULT_MODEL}, a local model folder, or replay:FILE"
    )


def _transformers_model(path: str) -> Model:
    from .local import TransformersModel

    return TransformersModel(path)


__all__ = [
    "DEFAULT_MODEL",
    "Model",
    "ModelError",
    "ModelNotAvailable",
    "ModelOutput",
    "ParsedText",
    "load_model",
    "parse_tool_calls",
    "split_reasoning",
]
