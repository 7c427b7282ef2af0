"""Tools the model calls: ``@tool``, the registry and the built-in tools."""
from __future__ import annotations

from .base import ModelCache, Tool, ToolContext, ToolError, ToolResult, ToolRetry, shared_models, to_result, tool
from .registry import ToolRegistry

__all__ = [
    "ModelCache",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolRetry",
    "builtin_tools",
    "shared_models",
    "to_result",
    "tool",
]


def builtin_tools() -> list[Tool]:
    """The tools every Agent has unless told otherwise."""
    from .frames import inspect_frames

    return [inspect_frames]
