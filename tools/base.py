"""``@tool``, ``Tool``, ``ToolContext``, ``ToolResult`` and ``ToolRetry``."""

from __future__ import annotations

import inspect
import json
import re
import threading
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mcr.cache import ModelCache, shared_models
from mcr.types import Frames, TimeSpan

from .schema import build_arguments_model, json_schema_of, parse_docstring

if typing.TYPE_CHECKING:  # pragma: no cover
    from mcr.media.video import Video
    from mcr.memory import Memory

_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_\-]{0,63}$")


class ToolRetry(Exception):
    """Raised by a tool to tell the model what to change and try again.

    The message goes back to the model as the tool's result; the run goes on.
    """


class ToolError(Exception):
    """A tool could not do what was asked, for a reason the model should read."""


@dataclass
class ToolContext:
    """What a tool may use besides its arguments. Injected, never shown to the model."""

    video: Video | None = None
    work_dir: Path = field(default_factory=lambda: Path(".mcr") / "work")
    memory: Memory | None = None
    models: ModelCache = field(default_factory=lambda: shared_models)
    run_id: str = ""
    depth: int = 0
    device: str = "auto"
    max_pixels: int | None = None  # frames are decoded no larger than this (the model's own limit)
    state: dict[str, Any] = field(default_factory=dict)
    # set by the registry when a call with a timeout runs out of time; a tool marked
    # ``cancellable`` checks it between chunks of work and stops (raise ToolError)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def require_video(self) -> Video:
        if self.video is None:
            raise ToolError("no video is open in this run")
        return self.video


@dataclass
class ToolResult:
    """What a tool gives back: text for the model, and what the trace and memory keep."""

    text: str
    frames: Frames | None = None
    spans: list[TimeSpan] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    is_error: bool = False
    # "untrusted": the text holds what the video, the web or memory says (quoted as data blocks;
    # a result marked untrusted without one is quoted whole)
    trust: str = "trusted"

    @classmethod
    def error(cls, text: str, **metadata: Any) -> "ToolResult":
        return cls(text=text, is_error=True, metadata=metadata)


def to_result(value: Any) -> ToolResult:
    """Turn whatever a tool returned into a ToolResult."""
    if isinstance(value, ToolResult):
        return value
    if value is None:
        return ToolResult("done")
    if isinstance(value, str):
        return ToolResult(value)
    if isinstance(value, Frames):
        return ToolResult(f"{len(value)} frames", frames=value)
    if isinstance(value, TimeSpan):
        return ToolResult(str(value), spans=[value])
    try:
        return ToolResult(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        return ToolResult(str(value))


def _is_context_annotation(annotation: Any) -> bool:
    if annotation is ToolContext:
        return True
    if isinstance(annotation, str):
        return annotation.split(".")[-1] == "ToolContext"
    return False


class Tool:
    """A plain typed function the model can call."""

    def __init__(
        self,
        fn: Callable,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        max_output_chars: int | None = None,
        cancellable: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@tool needs a function, got {fn!r}")
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME_RE.match(self.name):
            raise ValueError(f"tool name {self.name!r} must be letters, digits, '_' or '-' (at most 64)")
        if self.name == "answer":
            raise ValueError("tool name 'answer' is reserved for the final answer")
        doc_text, arg_docs = parse_docstring(fn.__doc__)
        self.description = (description or doc_text or self.name.replace("_", " ")).strip()
        self.timeout = timeout
        self.cancellable = cancellable  # stops soon after ctx.cancelled is set
        self.max_output_chars = max_output_chars
        params = list(inspect.signature(fn).parameters.values())
        first = params[0] if params else None
        hint = None
        if first is not None:
            try:
                hint = typing.get_type_hints(fn).get(first.name, first.annotation)
            except Exception:
                hint = first.annotation
        self.takes_context = first is not None and _is_context_annotation(hint)
        self.arguments_model = build_arguments_model(fn, self.name, self.takes_context, arg_docs)
        self.parameters = json_schema_of(self.arguments_model)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__wrapped__ = fn

    def schema(self) -> dict:
        """The OpenAI-style function schema shown to the model."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validated arguments (raises pydantic.ValidationError)."""
        parsed = self.arguments_model.model_validate(arguments or {})
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    def invoke(self, ctx: ToolContext, arguments: dict[str, Any]) -> ToolResult:
        """Validate, call and wrap. Exceptions propagate; the registry turns them into results."""
        kwargs = self.validate(arguments)
        value = self.fn(ctx, **kwargs) if self.takes_context else self.fn(**kwargs)
        return to_result(value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def tool(
    fn: Callable | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_output_chars: int | None = None,
    cancellable: bool = False,
):
    """Make a function a tool: ``@tool`` or ``@tool(name=..., timeout=...)``.

    The schema comes from the type hints and the Google-style docstring. A first
    parameter annotated ``ToolContext`` is injected at call time and never shown.
    With a ``timeout``, ``cancellable=True`` says the tool checks ``ctx.cancelled`` between
    chunks of work and stops when it is set, so a call that runs out of time is stopped
    rather than abandoned on its thread.
    """

    def wrap(f: Callable) -> Tool:
        return Tool(
            f,
            name=name,
            description=description,
            timeout=timeout,
            max_output_chars=max_output_chars,
            cancellable=cancellable,
        )

    if fn is not None:
        return wrap(fn)
    return wrap
