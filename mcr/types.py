"""Core value types: how time, frames, messages, tool calls and usage travel.

Everything here is plain data with no heavy imports, so every layer can use it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence, Union

from mcr.errors import MCRError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


class TimeSpanError(MCRError, ValueError):
    """A time or span the model (or a user) wrote could not be understood."""


def parse_time(value: Any) -> float:
    """Seconds from ``"1:02:03"``, ``"02:03"``, ``"75.5"``, ``"75.5s"`` or a number."""
    if isinstance(value, bool):
        raise TimeSpanError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise TimeSpanError(f"a time must be a finite number of seconds >= 0, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise TimeSpanError(f"not a time: {value!r} (write seconds like 75.5 or HH:MM:SS)")
    text = value.strip()
    parts = text.rstrip("sS").strip().split(":")
    if not 1 <= len(parts) <= 3 or not text:
        raise TimeSpanError(f"not a time: {value!r} (write seconds like 75.5 or HH:MM:SS)")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise TimeSpanError(f"not a time: {value!r} (write seconds like 75.5 or HH:MM:SS)") from None
    if any(n < 0 or not math.isfinite(n) for n in nums):
        raise TimeSpanError(f"not a time: {value!r}")
    if len(nums) > 1 and any(n >= 60 for n in nums[1:-1]) or (len(nums) > 1 and nums[-1] >= 60):
        raise TimeSpanError(f"not a time: {value!r} (minutes and seconds must be below 60)")
    seconds = 0.0
    for n in nums:
        seconds = seconds * 60 + n
    return seconds


def format_time(seconds: float) -> str:
    """``HH:MM:SS.s``, the one format the model sees."""
    tenths = int(round(max(0.0, float(seconds)) * 10))
    h, rem = divmod(tenths, 36000)
    m, rem = divmod(rem, 600)
    s, t = divmod(rem, 10)
    return f"{h:02d}:{m:02d}:{s:02d}.{t}"


_SPAN_SEP = re.compile(r"\s*(?:-|–|—|\bto\b|,)\s*")


@dataclass(frozen=True, order=True)
class TimeSpan:
    """A span of video time in seconds, ``start <= end``."""

    start: float
    end: float

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise TimeSpanError(f"span {name} must be seconds >= 0, got {v!r}")
        if self.end < self.start:
            raise TimeSpanError(
                f"span ends before it starts: {format_time(self.start)} > {format_time(self.end)}"
                " (write start-end with start first)"
            )
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "end", float(self.end))

    @classmethod
    def parse(cls, value: Any) -> "TimeSpan":
        """Read a span as a model writes it.

        Accepts ``"00:02-00:04"``, ``"1:02:03-1:05:00"``, ``"2-4"``, ``"2 to 4"``,
        ``[2, 4]``, ``(2, 4)``, ``{"start": 2, "end": 4}`` or a ``TimeSpan``.
        """
        if isinstance(value, TimeSpan):
            return value
        if isinstance(value, dict):
            keys = {k.lower(): v for k, v in value.items()}
            if "start" not in keys or "end" not in keys:
                raise TimeSpanError(f"a span object needs 'start' and 'end', got {value!r}")
            return cls(parse_time(keys["start"]), parse_time(keys["end"]))
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise TimeSpanError(f"a span list needs exactly [start, end], got {value!r}")
            return cls(parse_time(value[0]), parse_time(value[1]))
        if isinstance(value, str):
            text = value.strip().strip("[]()")
            if text.startswith("{"):
                try:
                    return cls.parse(json.loads(text))
                except json.JSONDecodeError:
                    pass
            pieces = [p for p in _SPAN_SEP.split(text) if p]
            if len(pieces) != 2:
                raise TimeSpanError(f"not a span: {value!r} (write start-end, e.g. '00:01:05-00:01:20' or '65-80')")
            return cls(parse_time(pieces[0]), parse_time(pieces[1]))
        raise TimeSpanError(f"not a span: {value!r}")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict:
        return {
            "type": "string",
            "description": "a time span 'HH:MM:SS-HH:MM:SS' (or seconds 'start-end')",
        }

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2

    def clamp(self, duration: float) -> "TimeSpan":
        """The part of this span inside ``[0, duration]``; a span wholly past the end
        collapses onto the end."""
        end = min(self.end, duration)
        start = min(self.start, end)
        return TimeSpan(start, end)

    def contains(self, t: float) -> bool:
        return self.start <= t <= self.end

    def overlaps(self, other: "TimeSpan") -> bool:
        return self.start <= other.end and other.start <= self.end

    def iou(self, other: "TimeSpan") -> float:
        inter = max(0.0, min(self.end, other.end) - max(self.start, other.start))
        union = max(self.end, other.end) - min(self.start, other.start)
        return inter / union if union > 0 else float(self == other)

    def to_list(self) -> list[float]:
        return [round(self.start, 3), round(self.end, 3)]

    def __str__(self) -> str:
        return f"{format_time(self.start)}-{format_time(self.end)}"


SpanLike = Union[TimeSpan, str, Sequence[float], dict]


# --------------------------------------------------------------------- frames


@dataclass
class Frames:
    """Decoded frames with the real timestamps they were shown at.

    ``images`` is an ``(N, H, W, 3)`` uint8 array; ``timestamps`` and ``indices``
    have N items. ``source`` is the video's path and ``video_id`` its content hash;
    the trace keeps only those and the timestamps (see :meth:`ref`).
    """

    images: "np.ndarray"
    timestamps: list[float]
    indices: list[int] = field(default_factory=list)
    source: str | None = None
    video_id: str | None = None

    def __len__(self) -> int:
        return len(self.timestamps)

    def __iter__(self) -> Iterator[tuple[float, "np.ndarray"]]:
        return iter(zip(self.timestamps, self.images))

    @property
    def span(self) -> TimeSpan | None:
        if not self.timestamps:
            return None
        return TimeSpan(min(self.timestamps), max(self.timestamps))

    def ref(self) -> dict:
        """A reference to these frames for traces: never the pixels."""
        size = list(self.images.shape[1:3]) if len(self) else []
        return {
            "source": self.source,
            "video_id": self.video_id,
            "timestamps": [round(t, 3) for t in self.timestamps],
            "size": size,
        }


# ------------------------------------------------------------------- messages


@dataclass
class TextPart:
    text: str
    type: str = "text"


@dataclass
class ImagePart:
    """One image (``(H, W, 3)`` uint8 array, PIL image or file path) with its time."""

    image: Any
    timestamp: float | None = None
    type: str = "image"


@dataclass
class FramesPart:
    """Frames of a video, in time order, each with its timestamp."""

    frames: Frames
    type: str = "frames"


Part = Union[TextPart, ImagePart, FramesPart]


@dataclass
class ToolCall:
    """A tool call as the model made it. ``id`` is unique within a run."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, d: dict) -> "ToolCall":
        return cls(name=d["name"], arguments=dict(d.get("arguments") or {}), id=d.get("id", ""))


@dataclass
class Message:
    """A chat message. ``content`` is a string or a list of parts."""

    role: str  # "system" | "user" | "assistant" | "tool"
    content: str | list[Part] = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def parts(self) -> list[Part]:
        if isinstance(self.content, str):
            return [TextPart(self.content)] if self.content else []
        return list(self.content)

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.parts if isinstance(p, TextPart))


@dataclass
class Usage:
    """Tokens and calls spent on the model."""

    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.model_calls + other.model_calls,
        )

    def to_dict(self) -> dict:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "model_calls": self.model_calls,
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> "Usage":
        d = d or {}
        return cls(int(d.get("input_tokens", 0)), int(d.get("output_tokens", 0)), int(d.get("model_calls", 0)))
