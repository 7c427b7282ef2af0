"""MCR: Multimodal Contextual Reasoning over long videos.

``from mcr import Agent, BaselineAgent, Policy, tool, ToolContext, ToolResult, TimeSpan, Video``

Names are resolved on first use so that ``import mcr`` stays fast: torch,
transformers and the decoders load only inside the code that needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcr.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Agent": "mcr.agents",
    "BaselineAgent": "mcr.agents",
    "Policy": "mcr.run.policy",
    "RunResult": "mcr.agents",
    "tool": "mcr.tools",
    "Tool": "mcr.tools",
    "ToolContext": "mcr.tools",
    "ToolResult": "mcr.tools",
    "ToolRetry": "mcr.tools",
    "TimeSpan": "mcr.types",
    "Usage": "mcr.types",
    "ToolCall": "mcr.types",
    "Message": "mcr.types",
    "Video": "mcr.media.video",
    "VideoError": "mcr.media.video",
    "MCRError": "mcr.errors",
    "ModelOutput": "mcr.models",
    "write_report": "mcr.outputs.report_page",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from mcr.agents import Agent, BaselineAgent, RunResult
    from mcr.errors import MCRError
    from mcr.media.video import Video, VideoError
    from mcr.models import ModelOutput
    from mcr.outputs.report_page import write_report
    from mcr.run.policy import Policy
    from mcr.tools import Tool, ToolContext, ToolResult, ToolRetry, tool
    from mcr.types import Message, TimeSpan, ToolCall, Usage
