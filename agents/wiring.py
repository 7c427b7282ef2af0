"""What an ``Agent`` is put together from: its context budgets, its memory, its library, its
tool registry, and the emitter that hands each event to the trace and the subscribers."""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from mcr.errors import ToolNameError
from mcr.run.context import RenderProfile
from mcr.run.events import Event, ModelDelta, RunFinished
from mcr.tools import BUILTIN_NAMES, Tool, ToolRegistry, Toolset, builtin_tools

log = logging.getLogger("mcr.agents.agent")  # one logger for the agent and what it is put together from


def render_profile_of(model: Any) -> RenderProfile:
    """The context budgets for a model: its ``profile`` (a model profile or a RenderProfile), else defaults."""
    found = getattr(model, "profile", None)
    if isinstance(found, RenderProfile):
        return found
    budgets = getattr(found, "render_budgets", None)
    return RenderProfile(**budgets()) if callable(budgets) else RenderProfile()


def open_library(spec: Any) -> Any:
    """The ``Library`` that ``spec`` names (a list of videos, a folder, a glob pattern), or None
    when it names one video."""
    from mcr.media.collection import names_many
    from mcr.tools.library import Library

    if isinstance(spec, Library):
        return spec
    if spec is None or not names_many(spec):
        return None
    return Library.open(list(spec) if isinstance(spec, (list, tuple)) else [spec])


def _open_memory(memory: Any):
    if memory is False:
        return None
    from mcr.memory import Memory

    if isinstance(memory, Memory):
        return memory
    return Memory(memory)  # None: .mcr/memory.db in the current directory


def _name_of(subscriber: Any) -> str:
    """A subscriber's name for a log line: a function's qualified name, else its class's."""
    name = getattr(subscriber, "__qualname__", None) or type(subscriber).__qualname__
    return f"{getattr(subscriber, '__module__', None) or type(subscriber).__module__}.{name}"


def _as_list(tools: Any) -> list[Any]:
    """``tools`` as a list: one tool, toolset or name given alone is a list of one."""
    if isinstance(tools, (str, Tool, Toolset)) or not isinstance(tools, Iterable):
        return [tools]
    return list(tools)


class _Emitter:
    """Hands each event of a run to its trace and its subscribers, in order, on the run's thread."""

    def __init__(self, writer: Any, subscribers: list, skip: Callable[[Event], bool] | None) -> None:
        self.writer, self.subscribers, self.skip = writer, subscribers, skip

    def __call__(self, event: Event) -> Event:
        writer = self.writer
        if isinstance(event, RunFinished) and writer is not None:
            event.result.trace_path = str(writer.path)
        if isinstance(event, ModelDelta):  # model_called holds the whole reply; deltas are not written
            written = True
        else:  # a resumed run's events the trace already holds are not written again
            written = self.skip is not None and self.skip(event)
        if writer is not None and not written:
            writer.write(event)
        for sub in list(self.subscribers):
            try:
                sub(event)
            except Exception as exc:  # a broken subscriber must not end the run
                self.subscribers.remove(sub)
                log.warning(
                    "subscriber %s raised %s: %s on a %s event; it gets no more events of this run",
                    _name_of(sub),
                    type(exc).__name__,
                    exc,
                    event.kind,
                )
                log.debug("subscriber %s failed", _name_of(sub), exc_info=True)
        return event


def _registry(tools: list[Any], builtin: bool, memory: bool, replace_builtins: bool = False) -> ToolRegistry:
    """The built-in tools (all, or the ones named in ``tools``) and the tools and toolsets in ``tools``.

    A user's tool named like a built-in tool is refused (unless it says ``replaces=`` or
    ``replace_builtins`` is set) even where that built-in is left out for a missing library, so
    the same tools build the same agent on every machine."""
    names = [t for t in tools if isinstance(t, str)]
    available = {t.name: t for t in builtin_tools(memory=memory)} if builtin or names else {}
    unknown = [n for n in names if n not in available and n not in ("investigate", "answer")]
    if unknown:
        raise ToolNameError(
            f"unknown tool {unknown[0]!r}: the built-in tools here are {', '.join(available)} "
            "(a tool whose library or model is missing is left out, with a warning saying why)"
        )
    chosen = [available[n] for n in names if n in available] if names else list(available.values())
    registry = ToolRegistry(chosen)
    registry.add_user_tools([t for t in tools if not isinstance(t, str)], replace_builtins=replace_builtins)
    if builtin and not names and not replace_builtins:
        for t in registry:
            if t.name in BUILTIN_NAMES and t.name not in available and t.replaces != t.name:
                raise ToolNameError(
                    f"tool {t.name!r} has the name of a built-in tool (left out on this machine): "
                    f"say @tool(replaces={t.name!r}) to replace it, or pick another name"
                )
    return registry
