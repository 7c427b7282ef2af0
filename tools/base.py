"""``@tool``, ``Tool``, ``ToolContext``, ``ToolRetry`` and ``ToolError``."""

from __future__ import annotations

import asyncio
import copy
import inspect
import re
import threading
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mcr.cache import ModelCache, shared_models

from .results import ToolResult, to_result
from .schema import (
    ToolDefinitionError,
    ToolDefinitionWarning,
    build_arguments_model,
    doc_problems,
    is_context_type,
    json_schema_of,
    parse_docstring,
)

if typing.TYPE_CHECKING:  # pragma: no cover
    from mcr.media.video import Video
    from mcr.memory import Memory

_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_\-]{0,63}$")
RESERVED_NAMES = ("answer", "final_answer", "investigate")  # the loop's own tools
READS = ("frames", "speech", "text")  # what a tool's returned spans can be: what it looked at or read


class ToolRetry(Exception):
    """Raised by a tool to tell the model what to change and try again.

    The message goes back to the model as the tool's result; the run goes on.
    """


class ToolError(Exception):
    """A tool could not do what was asked, for a reason the model should read."""


class WorkDir:
    """``ToolContext.work_dir``: a folder made on first use, so a tool can write into it at once."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, ctx: Any, owner: type | None = None) -> Path:
        if ctx is None:  # the dataclass's default
            return Path(".mcr") / "work"
        path = ctx.__dict__[self.slot]
        if not ctx.__dict__.get(self.slot + "_made"):
            try:
                path.mkdir(parents=True, exist_ok=True)  # safe when several calls make it at once
            except OSError as exc:
                raise ToolError(f"cannot make the work folder {path}: {exc.strerror or exc}") from None
            ctx.__dict__[self.slot + "_made"] = True
        return path

    def __set__(self, ctx: Any, value: str | Path) -> None:
        ctx.__dict__[self.slot] = Path(value)
        ctx.__dict__[self.slot + "_made"] = False


@dataclass
class ToolContext:
    """What a tool may use besides its arguments. Injected, never shown to the model."""

    video: Video | None = None
    work_dir: Path = WorkDir()  # made on first use
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
    # told ``(stage, seconds done, seconds total)`` while a tool builds an index stage it needs,
    # so the run can show the wait; None: nobody is watching
    progress: Callable[[str, float, float], None] | None = None
    # a library run's videos (``mcr.tools.library.Library``); ``video`` is the one a call names
    library: Any = None

    def require_video(self) -> Video:
        if self.video is None:
            if self.library is not None:
                raise ToolRetry(f"say which video to look at: video= one of {self.library.listing()}")
            raise ToolError("no video is open in this run")
        return self.video


def run_coroutine(awaitable: Any) -> Any:
    """Await ``awaitable`` from synchronous code: on this thread when no event loop runs here,
    else on a thread of its own (a loop that is running cannot be entered again)."""

    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(wait())
        except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="tool-await", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _in_class_body(fn: Callable, params: list[inspect.Parameter]) -> bool:
    """A function written in a class body whose first parameter is ``self``: a method of a toolset."""
    qualname = getattr(fn, "__qualname__", "")
    owner = qualname.rsplit(".", 1)[0] if "." in qualname else ""
    return bool(owner) and not owner.endswith("<locals>") and bool(params) and params[0].name == "self"


def _hints(fn: Callable, name: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # unresolved forward references
        raise TypeError(f"tool {name!r}: cannot resolve the type hints of {fn.__qualname__}: {exc}") from exc


def _report(problems: list[str], strict: bool, fn: Callable) -> None:
    """Problems a tool's author should fix: an error with ``strict``, else a warning at the function."""
    if not problems:
        return
    if strict:
        raise ToolDefinitionError("; ".join(problems))
    code = getattr(inspect.unwrap(fn), "__code__", None)
    module_globals = getattr(fn, "__globals__", {})
    for problem in problems:
        warnings.warn_explicit(
            problem,
            ToolDefinitionWarning,
            filename=code.co_filename if code else "<tool>",
            lineno=code.co_firstlineno if code else 0,
            module=getattr(fn, "__module__", None) or "<tool>",
            registry=module_globals.setdefault("__warningregistry__", {}) if module_globals else None,
        )


class Tool:
    """A plain typed function the model can call: sync or ``async``, a function or a toolset's method."""

    def __init__(
        self,
        fn: Callable,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        max_output_chars: int | None = None,
        cancellable: bool = False,
        reads: str | None = None,
        replaces: str | None = None,
        strict: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@tool needs a function, got {fn!r}")
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME_RE.match(self.name):
            raise ToolDefinitionError(f"tool name {self.name!r} must be letters, digits, '_' or '-' (at most 64)")
        if self.name in RESERVED_NAMES:
            raise ToolDefinitionError(
                f"tool name {self.name!r} is reserved for the agent's own {self.name!r}; pick another name"
            )
        if reads not in (None, *READS):
            raise ToolDefinitionError(f"tool {self.name!r}: reads={reads!r} must be one of {', '.join(READS)} or None")
        if replaces is not None and (not isinstance(replaces, str) or replaces in RESERVED_NAMES):
            raise ToolDefinitionError(f"tool {self.name!r}: replaces={replaces!r} must name a built-in tool")
        self.reads = reads  # what its spans are: frames it looked at, speech or on-screen text it read
        self.replaces = replaces  # the built-in tool it stands in for
        self.is_async = inspect.iscoroutinefunction(fn)
        doc_text, arg_docs = parse_docstring(fn.__doc__)
        self.description = (description or doc_text or self.name.replace("_", " ")).strip()
        self.timeout = timeout
        # stops soon after ctx.cancelled is set; an async call is cancelled on its event loop
        self.cancellable = cancellable or self.is_async
        self.max_output_chars = max_output_chars
        params = list(inspect.signature(fn).parameters.values())
        self.is_method = _in_class_body(fn, params)
        self.instance: Any = None  # the toolset a method's tool is bound to
        hints = _hints(fn, self.name)
        shown = params[1:] if self.is_method else params
        self.context_names = [p.name for p in shown if is_context_type(hints.get(p.name, p.annotation), ToolContext)]
        self._positional = [p.name for p in shown if p.kind is p.POSITIONAL_ONLY]  # passed in order, by position
        shown = [p for p in shown if p.name not in self.context_names]
        skip = set(self.context_names) | ({params[0].name} if self.is_method else set())
        arguments = build_arguments_model(fn, self.name, skip, arg_docs, hints)
        self.arguments_model = arguments.model
        self._fields = arguments.parameters
        self.parameters = json_schema_of(self.arguments_model, self.name)
        problems = doc_problems(
            self.name, bool(description or doc_text), [p.name for p in shown], list(skip), arg_docs, arguments.described
        )
        _report(problems, strict, fn)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__wrapped__ = fn
        self._attribute = self.__name__

    def __set_name__(self, owner: type, attribute: str) -> None:
        self._attribute = attribute

    def __get__(self, instance: Any, owner: type | None = None) -> "Tool":
        """A method's tool read from a toolset instance is bound to it (and kept on the instance)."""
        if instance is None or not self.is_method or self.instance is not None:
            return self
        bound = copy.copy(self)
        bound.fn = types.MethodType(self.fn, instance)
        bound.instance = instance
        try:
            vars(instance)[self._attribute] = bound
        except TypeError:  # an instance without a __dict__ (__slots__): bound again on each read
            pass
        return bound

    def schema(self) -> dict:
        """The OpenAI-style function schema shown to the model."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validated arguments by parameter name (raises pydantic.ValidationError)."""
        parsed = self.arguments_model.model_validate(arguments or {})
        return {self._fields[f]: getattr(parsed, f) for f in type(parsed).model_fields}

    def start(self, ctx: ToolContext, arguments: dict[str, Any]) -> Any:
        """Validate and call: the function's value, or for an async tool the coroutine to await."""
        if self.is_method and self.instance is None:
            raise ToolDefinitionError(
                f"tool {self.name!r} is a method: use the tools of an instance (tools_of(obj) or obj.tools())"
            )
        kwargs = self.validate(arguments)
        for name in self.context_names:
            kwargs[name] = ctx
        args = [kwargs.pop(n) for n in self._positional]
        return self.fn(*args, **kwargs)

    def invoke(self, ctx: ToolContext, arguments: dict[str, Any]) -> ToolResult:
        """Validate, call (awaiting an async tool) and wrap. Exceptions propagate; the registry
        turns them into results."""
        value = self.start(ctx, arguments)
        if inspect.isawaitable(value):
            value = run_coroutine(value)
        return to_result(value)

    async def ainvoke(self, ctx: ToolContext, arguments: dict[str, Any]) -> ToolResult:
        """``invoke`` for callers on an event loop: an async tool is awaited there."""
        value = self.start(ctx, arguments)
        if inspect.isawaitable(value):
            value = await value
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
    reads: str | None = None,
    replaces: str | None = None,
    strict: bool = False,
):
    """Make a function a tool: ``@tool`` or ``@tool(name=..., timeout=...)``.

    The schema comes from the type hints, pydantic ``Field``s and the Google-style docstring.
    A parameter annotated ``ToolContext`` (anywhere in the signature) is injected at call time
    and never shown. An ``async def`` tool is awaited; on a method of a class the tool is bound
    to the instance it is read from (``tools_of(obj)`` collects them).

    Options: ``timeout`` (seconds); ``cancellable=True`` says the tool checks ``ctx.cancelled``
    between chunks of work, so a call that runs out of time is stopped rather than abandoned on
    its thread (an async tool's task is cancelled in any case). ``reads`` ("frames", "speech" or
    "text") says its returned spans are what it looked at or read, so they count as evidence.
    ``replaces`` names the built-in tool it stands in for. A missing docstring or an undescribed
    parameter is a ``ToolDefinitionWarning``, or with ``strict=True`` a ``ToolDefinitionError``.
    """

    def wrap(f: Callable) -> Tool:
        return Tool(
            f,
            name=name,
            description=description,
            timeout=timeout,
            max_output_chars=max_output_chars,
            cancellable=cancellable,
            reads=reads,
            replaces=replaces,
            strict=strict,
        )

    if fn is not None:
        return wrap(fn)
    return wrap
