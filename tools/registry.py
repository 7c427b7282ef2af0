"""The tool registry: lists tools and their schemas, and runs a call into exactly one result.

A tool with a ``timeout`` runs on its own thread. When the time is up, the registry sets
the call's ``ctx.cancelled`` event (each call gets its own, so calls running side by side
are not touched) and answers the model at once. A tool marked ``cancellable`` checks that
event between chunks of work and stops; the registry gives it ``cancel_grace_s`` seconds
to end and says in the result whether the call was stopped. Any other tool cannot be
stopped from outside its thread: the call is abandoned there, may still be running, and
the result says so. An ``async def`` tool runs on its own event loop on such a thread; when
its time is up, its task is cancelled there.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from typing import Any, Iterable, Sequence

from mcr.errors import ToolNameError
from mcr.quoting import UNTRUSTED, cut, is_quoted, quote
from mcr.types import ToolCall

from .base import Tool, ToolContext, ToolError, ToolResult, ToolRetry
from .toolset import Toolset, tools_of

DEFAULT_MAX_OUTPUT_CHARS = 12000
DEFAULT_CANCEL_GRACE_S = 2.0
VIDEO_FREE = ("library_search", "web_search")  # tools that look at no video: in a library run they take no ``video``
PERCEPTION = ("asr", "ocr", "shots", "temporal_grounding", "segment", "web_search")
BUILTIN_NAMES = ("inspect_frames", "memory_write", "memory_search", "memory_events") + PERCEPTION


def format_validation_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for err in errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(arguments)"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unexpected argument"
        elif err.get("type") == "missing":
            msg = "missing required argument"
        lines.append(f"- {loc}: {msg}")
    return "\n".join(lines)


def cut_text(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return cut(text, limit) + f"\n[... {len(text) - limit} more characters cut; ask for a narrower span or less output]"


class ToolRegistry:
    """Named tools. ``execute`` never raises for anything the model did."""

    def __init__(
        self,
        tools: Iterable[Tool] = (),
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        cancel_grace_s: float = DEFAULT_CANCEL_GRACE_S,
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self.max_output_chars = max_output_chars
        self.cancel_grace_s = cancel_grace_s  # how long a cancelled call may take to stop
        for t in tools:
            self.add(t)

    def add(self, t: Tool, replace: bool = False) -> None:
        if not isinstance(t, Tool):
            raise TypeError(f"{t!r} is not a tool: decorate the function with @tool")
        if t.is_method and t.instance is None:
            raise ToolNameError(
                f"tool {t.name!r} is a method: add the tools of an instance (tools_of(obj) or obj.tools())"
            )
        if t.name in self._tools and not replace and self._tools[t.name] is not t:
            raise ValueError(f"two tools are named {t.name!r}")
        self._tools[t.name] = t

    def add_user_tools(self, tools: Iterable[Any], replace_builtins: bool = False) -> None:
        """Add a user's tools (``@tool`` functions, toolset instances) to the built-in ones here.

        A user's tool named like a tool already here is an error unless it says
        ``@tool(replaces=NAME)`` or ``replace_builtins`` is set; ``replaces`` takes the named
        built-in out even when the tool has a name of its own. Two of the user's tools of one
        name are always an error: the model could call only one of them.
        """
        mine: dict[str, Tool] = {}
        for t in _flatten(tools):
            if t.name in mine and mine[t.name] is not t:
                raise ToolNameError(f"two of the tools given are named {t.name!r}; rename one (@tool(name=...))")
            mine[t.name] = t
        for t in mine.values():
            if t.replaces is not None:
                if t.replaces not in self._tools and t.replaces not in BUILTIN_NAMES:
                    raise ToolNameError(
                        f"tool {t.name!r} replaces {t.replaces!r}, which is not a built-in tool "
                        f"(they are {', '.join(BUILTIN_NAMES)})"
                    )
                self._tools.pop(t.replaces, None)
            here = self._tools.get(t.name)
            if here is not None and here is not t and not replace_builtins:
                raise ToolNameError(
                    f"tool {t.name!r} has the name of a built-in tool: say @tool(replaces={t.name!r}) "
                    "to replace it, or pick another name"
                )
            self.add(t, replace=True)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def __iter__(self):
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self, videos: Iterable[str] | None = None) -> list[dict]:
        """The function schemas the model sees (nothing about timeouts or cancelling). With the
        names of a library's ``videos``, each tool that looks at a video takes a ``video``."""
        names = list(videos or [])
        return [
            with_video_argument(t.schema(), names) if names and t.name not in VIDEO_FREE else t.schema()
            for t in self._tools.values()
        ]

    def with_tools(self, tools: Iterable[Tool]) -> "ToolRegistry":
        """A registry holding these tools as well, with the same limits (this one is unchanged)."""
        out = copy.copy(self)
        out._tools = dict(self._tools)
        for t in tools:
            out.add(t)
        return out

    def listing(self) -> list[dict]:
        """Each tool for people and programs (``mcr-agent tools``): its name, description and
        parameters, its timeout, and whether a timed-out call can be stopped (``cancellable``)
        or is abandoned on its thread."""
        return [
            {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "timeout": t.timeout,
                "cancellable": t.cancellable,
                "reads": t.reads,
            }
            for t in self._tools.values()
        ]

    def execute(self, call: ToolCall, ctx: ToolContext) -> ToolResult:
        """Run one call. Unknown tools, bad arguments, retries, errors and timeouts
        all come back as a result that says what went wrong."""
        started = time.perf_counter()
        pointed = None
        if ctx.library is not None and call.name in self._tools and call.name not in VIDEO_FREE:
            if isinstance(call.arguments, dict):
                pointed = point_at_video(ctx, call)  # the video the call names is the one the tool sees
        if isinstance(pointed, ToolResult):
            result = pointed
        else:
            if pointed is not None:
                ctx, call = pointed
            result = self._execute(call, ctx)
            if ctx.library is not None and ctx.video is not None:
                result.metadata.setdefault("video", ctx.library.name_of(ctx.video))
                result.metadata.setdefault("video_id", ctx.video.id)
        result.metadata.setdefault("latency_s", round(time.perf_counter() - started, 4))
        t = self._tools.get(call.name)
        if t is not None and t.reads and ctx.video is not None and not result.is_error and result.spans:
            result.metadata.setdefault("reads", t.reads)  # its spans are what it looked at or read
        return result

    def _execute(self, call: ToolCall, ctx: ToolContext) -> ToolResult:
        t = self._tools.get(call.name)
        if t is None:
            known = ", ".join(self.names + ["answer"])
            return ToolResult.error(f"error: unknown tool {call.name!r}. Available tools: {known}.")
        if not isinstance(call.arguments, dict):
            return ToolResult.error(f"error: arguments for {t.name!r} must be a JSON object, got {call.arguments!r}")
        try:
            t.validate(call.arguments)
        except Exception as exc:
            return ToolResult.error(
                f"error: invalid arguments for {t.name!r}:\n{format_validation_error(exc)}\n"
                "Fix the arguments and call again."
            )
        outcome: dict[str, Any] = {}
        if t.timeout is not None or t.is_async:  # its own cancellation event, so a timeout stops this call only
            ctx = copy.copy(ctx)
            ctx.cancelled = threading.Event()
        waiting = AsyncCall(t, ctx, call.arguments) if t.is_async else None

        def target() -> None:
            try:
                outcome["result"] = waiting.run() if waiting else t.invoke(ctx, call.arguments)
            except BaseException as exc:  # noqa: BLE001 - every failure becomes a result
                outcome["error"] = exc

        if t.timeout is None and waiting is None:
            target()
        else:  # an async tool gets a thread and an event loop of its own, whatever runs on this one
            worker = threading.Thread(target=target, name=f"tool-{t.name}", daemon=True)
            worker.start()
            worker.join(t.timeout)
            if worker.is_alive():
                return self._timed_out(t, ctx, worker, waiting)
        exc = outcome.get("error")
        if isinstance(exc, asyncio.CancelledError):
            return ToolResult.error(f"error: tool {t.name!r} was cancelled")
        if isinstance(exc, ToolRetry):
            return ToolResult.error(f"retry: {exc}", retry=True)
        if isinstance(exc, ToolError):
            return ToolResult.error(f"error: {exc}")
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        if exc is not None:
            return ToolResult.error(
                f"error: tool {t.name!r} failed: {type(exc).__name__}: {exc}", exception=type(exc).__name__
            )
        result: ToolResult = outcome["result"]
        if is_quoted(result.text):
            result.trust = UNTRUSTED
        elif result.trust == UNTRUSTED:  # a tool that says so, quoted whole
            result.text = quote(result.text, t.name)
        limit = t.max_output_chars or self.max_output_chars
        result.text = cut_text(result.text, limit)
        return result

    def _timed_out(
        self, t: Tool, ctx: ToolContext, worker: threading.Thread, waiting: AsyncCall | None = None
    ) -> ToolResult:
        """Ask the call to stop; say whether it did (cancellable tools) or was abandoned."""
        ctx.cancelled.set()
        if waiting is not None:
            waiting.cancel()
        head = f"error: tool {t.name!r} timed out after {t.timeout:g} s"
        advice = "try a narrower span or a cheaper call."
        if not t.cancellable:
            return ToolResult.error(
                f"{head} and was abandoned (it cannot be stopped, so it may still be running); {advice}",
                timed_out=True,
                stopped=False,
            )
        worker.join(self.cancel_grace_s)
        if worker.is_alive():
            return ToolResult.error(
                f"{head} and was abandoned (asked to stop, it was still running "
                f"{self.cancel_grace_s:g} s later); {advice}",
                timed_out=True,
                stopped=False,
            )
        return ToolResult.error(f"{head} and was stopped; {advice}", timed_out=True, stopped=True)


def point_at_video(ctx: ToolContext, call: ToolCall) -> tuple[ToolContext, ToolCall] | ToolResult:
    """The context and call a tool runs with in a library run: ``ctx.video`` is the video the
    call's ``video`` argument names (taken out of the arguments the tool sees). Without one, the
    library's only video, or none (a tool that needs one asks for it). An unknown name is a
    retry that lists the videos."""
    library = ctx.library  # a mcr.tools.library.Library
    arguments = dict(call.arguments)
    ref = arguments.pop("video", None)
    video = library.find(ref)
    if ref not in (None, "") and video is None:
        return ToolResult.error(
            f"retry: there is no video {str(ref)!r} in this library; its videos are: {library.listing()}", retry=True
        )
    if video is None and len(library.videos) == 1:
        video = library.videos[0]
    pointed = copy.copy(ctx)
    pointed.video = video
    return pointed, ToolCall(call.name, arguments, call.id)


def with_video_argument(schema: dict, names: Sequence[str]) -> dict:
    """A tool's schema with the ``video`` argument of a library run added."""
    schema = copy.deepcopy(schema)
    parameters = schema["function"].setdefault("parameters", {"type": "object", "properties": {}})
    parameters.setdefault("properties", {})["video"] = {
        "type": "string",
        "enum": list(names),
        "description": "The video of the library to look at, by its name.",
    }
    return schema


def _flatten(tools: Iterable[Any]) -> list[Tool]:
    """Tools, with each toolset instance given as the tools of it."""
    out: list[Tool] = []
    for t in tools:
        if isinstance(t, Toolset):
            out += t.tools()
        elif isinstance(t, Tool):
            out.append(t)
        else:
            found = tools_of(t) if not isinstance(t, (str, type)) else []
            if not found:
                raise TypeError(f"{t!r} is not a tool: decorate the function with @tool")
            out += found
    return out


class AsyncCall:
    """One call of an ``async def`` tool on an event loop of its own, cancellable from another thread."""

    def __init__(self, t: Tool, ctx: ToolContext, arguments: dict[str, Any]) -> None:
        self.tool, self.ctx, self.arguments = t, ctx, arguments
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self.cancelled = False

    def run(self) -> ToolResult:
        loop = asyncio.new_event_loop()
        try:
            with self.lock:
                if self.cancelled:  # its time ran out before it began
                    raise asyncio.CancelledError()
                self.loop = loop
                self.task = loop.create_task(self.tool.ainvoke(self.ctx, self.arguments))
            return loop.run_until_complete(self.task)
        finally:
            with self.lock:
                self.loop = None
            loop.close()

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            if self.loop is not None and self.task is not None:
                self.loop.call_soon_threadsafe(self.task.cancel)
