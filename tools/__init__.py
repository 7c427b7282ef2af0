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


def builtin_tools(memory: bool = False) -> list[Tool]:
    """The tools every Agent has unless told otherwise (with ``memory``: the memory tools too)."""
    from .frames import inspect_frames

    tools = [inspect_frames]
    if memory:
        from .memory import memory_tools

        tools += memory_tools()
    return tools
