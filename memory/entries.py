"""Memory entries: one thing the agent learned, where in which video, from what source."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mcr.types import TimeSpan

KINDS = ("observation", "transcript", "caption", "ocr", "fact", "entity", "event", "answer", "shot", "summary")


@dataclass
class MemoryEntry:
    """One memory. ``span`` is None for things that hold for the whole video (or none)."""

    text: str
    kind: str = "observation"
    video_id: str | None = None
    span: TimeSpan | None = None
    source: str = ""
    confidence: float | None = None
    created_at: float = field(default_factory=time.time)
    id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError("a memory entry needs some text")
        if self.kind not in KINDS:
            raise ValueError(f"unknown memory kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.span is not None and not isinstance(self.span, TimeSpan):
            self.span = TimeSpan.parse(self.span)
        if self.confidence is not None:
            self.confidence = float(self.confidence)  # a numpy number would be stored as bytes
            if not 0.0 <= self.confidence <= 1.0:
                raise ValueError(f"confidence must be between 0 and 1, got {self.confidence}")

    @property
    def ref(self) -> str:
        """How the model cites this entry: ``m12``."""
        return f"m{self.id}" if self.id is not None else "m?"

    def line(self) -> str:
        """One line for the model: reference, kind, span and text."""
        where = f" {self.span}" if self.span is not None else ""
        return f"[{self.ref} {self.kind}{where}] {self.text}"

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "video_id": self.video_id,
            "span": self.span.to_list() if self.span is not None else None,
            "kind": self.kind,
            "text": self.text,
            "source": self.source,
            "confidence": self.confidence,
            "created_at": self.created_at,
            "data": self.data,
        }
