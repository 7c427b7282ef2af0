"""``ToolResult``, and turning whatever a tool returned into one.

A tool may return a ``ToolResult``, text, frames, a span, or a plain or typed value: a pydantic
model, a dataclass, numpy numbers and arrays, lists and dicts of them. A typed value reaches the
model as JSON text and stays typed in ``metadata["value"]``; every ``TimeSpan`` inside it becomes
one of the result's spans.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import PurePath
from typing import Any

from mcr.types import Frames, TimeSpan

MAX_DEPTH = 32  # deeper values are written as text: a value that holds itself must not loop


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


def _is_model(value: Any) -> bool:
    return hasattr(type(value), "model_fields") and hasattr(value, "model_dump")


def _is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "tolist")


def _fields(value: Any) -> list[tuple[str, Any]]:
    """The named parts of a pydantic model or a dataclass instance (by the model's aliases)."""
    if _is_model(value):
        return [(f.alias or k, getattr(value, k)) for k, f in type(value).model_fields.items()]
    return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]


def is_typed(value: Any) -> bool:
    return _is_model(value) or (dataclasses.is_dataclass(value) and not isinstance(value, type))


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready Python: spans as the text the model writes, numpy as numbers and lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth > MAX_DEPTH:
        return str(value)
    if isinstance(value, TimeSpan):
        return str(value)
    if _is_numpy(value):
        return plain(value.tolist(), depth + 1)
    if is_typed(value):
        return {k: plain(v, depth + 1) for k, v in _fields(value)}
    if isinstance(value, dict):
        return {str(plain(k, depth + 1)): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, enum.Enum):
        return plain(value.value, depth + 1)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (PurePath, bytes)):
        return str(value)
    return value


def spans_in(value: Any, depth: int = 0) -> list[TimeSpan]:
    """Every span inside ``value``: itself, or in its fields, items and values, in order."""
    if isinstance(value, TimeSpan):
        return [value]
    if depth > MAX_DEPTH or value is None or isinstance(value, (bool, int, float, str, bytes)) or _is_numpy(value):
        return []
    if is_typed(value):
        parts = [v for _, v in _fields(value)]
    elif isinstance(value, dict):
        parts = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        parts = list(value)
    else:
        return []
    return [s for part in parts for s in spans_in(part, depth + 1)]


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
    metadata = {"value": value} if is_typed(value) else {}
    try:
        text = json.dumps(plain(value), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = str(value)
    return ToolResult(text, spans=spans_in(value), metadata=metadata)
