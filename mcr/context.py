"""The one shared context: ordered, typed entries, and ``render()``, the model's view of it.

Entries are never rewritten. Rendering shortens or elides old material to fit a
profile's budgets, and each shortened item says where its full content lives.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mcr.types import Frames, FramesPart, Message, Part, TextPart, ToolCall, format_time

ENTRY_KINDS = (
    "task", "perception", "plan", "thought", "tool_call", "tool_result",
    "reflection", "verification", "memory", "feedback", "answer",
)

TOOL_PROTOCOL = """To use a tool, reply with one or more blocks, each holding one JSON object:
<tool_call>
{"name": "TOOL_NAME", "arguments": {...}}
</tool_call>
When you know the answer, call the tool "answer" with the answer and the evidence spans you saw.
Write every time as HH:MM:SS.s and every span as HH:MM:SS.s-HH:MM:SS.s."""

DEFAULT_SYSTEM_PROMPT = """You answer questions about a video by looking at it with tools.
You cannot see the video until you call a tool that shows it to you. Plan what to look at,
look, and reflect on what you saw before you answer. Cite the spans that support your answer.
Answer with the "answer" tool; do not guess when you can look."""


@dataclass
class RenderProfile:
    """Budgets for one model's view of the context."""

    max_context_tokens: int = 32768
    max_frames: int = 64  # frames shown at once; older ones become references
    tokens_per_frame: int = 256
    keep_recent_results: int = 4  # tool results shown whole; older ones are shortened
    short_result_chars: int = 400
    native_tools: bool = False  # True: schemas go through the API, not the system prompt


@dataclass
class Entry:
    id: int
    kind: str
    text: str
    step: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    frames: Frames | None = None
    tokens: int = 0


def estimate_tokens(text: str) -> int:
    """About four characters a token: used until a model's tokenizer counts exactly."""
    return max(1, (len(text) + 3) // 4) if text else 0


class Context:
    """Everything the model perceived and did in one run, in order."""

    def __init__(self, system_prompt: str | None = None, profile: RenderProfile | None = None) -> None:
        self.system_prompt = system_prompt or DEFAULT_SYSTEM_PROMPT
        self.profile = profile or RenderProfile()
        self.entries: list[Entry] = []

    # ------------------------------------------------------------- writing
    def add(self, kind: str, text: str, step: int = 0, frames: Frames | None = None, **data: Any) -> Entry:
        if kind not in ENTRY_KINDS:
            raise ValueError(f"unknown context entry kind {kind!r}; one of {', '.join(ENTRY_KINDS)}")
        tokens = estimate_tokens(text) + (len(frames) * self.profile.tokens_per_frame if frames is not None else 0)
        entry = Entry(len(self.entries), kind, text, step, dict(data), frames, tokens)
        self.entries.append(entry)
        return entry

    def add_task(self, question: str, options: list[str] | None = None, video: dict | None = None) -> Entry:
        lines = []
        if video:
            lines.append(
                f"Video: {video.get('name', 'video')}, duration {format_time(video.get('duration', 0))}"
                f" (00:00:00.0-{format_time(video.get('duration', 0))}), {video.get('fps', 0):.2f} fps,"
                f" {video.get('width', 0)}x{video.get('height', 0)}, audio: {'yes' if video.get('has_audio') else 'no'}."
            )
        lines.append(f"Question: {question}")
        if options:
            lines.append("Options:")
            lines.extend(f"{chr(65 + i)}. {o}" if len(options) <= 26 else f"- {o}" for i, o in enumerate(options))
            lines.append("Answer with exactly one of the options.")
        return self.add("task", "\n".join(lines), question=question, options=list(options or []))

    def add_model_turn(self, step: int, text: str, calls: list[ToolCall]) -> None:
        if text.strip():
            self.add("thought", text.strip(), step)
        for call in calls:
            self.add("tool_call", json.dumps(call.to_dict(), ensure_ascii=False), step, call=call)

    def add_tool_result(self, step: int, call: ToolCall, text: str, frames: Frames | None = None, is_error: bool = False) -> Entry:
        return self.add("tool_result", text, step, frames=frames, call_id=call.id, name=call.name, is_error=is_error)

    # ------------------------------------------------------------- reading
    @property
    def task(self) -> Entry | None:
        return next((e for e in self.entries if e.kind == "task"), None)

    def of_kind(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]

    @property
    def tokens(self) -> int:
        return sum(e.tokens for e in self.entries)

    def frames_seen(self) -> list[float]:
        """Every timestamp shown to the model in this run."""
        return [t for e in self.entries if e.frames is not None for t in e.frames.timestamps]

    # ----------------------------------------------------------- rendering
    def render(self, tools: list[dict] | None = None, profile: RenderProfile | None = None) -> list[Message]:
        """The model's view: system prompt (with the tool protocol when tools are not
        native), the task, then the turns; old frames and results shortened to budget."""
        p = profile or self.profile
        system = self.system_prompt
        if tools and not p.native_tools:
            listing = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
            system += f"\n\nTools:\n{listing}\n\n{TOOL_PROTOCOL}"
        messages = [Message("system", system)]
        shown_frames = self._frames_to_show(p)
        recent_results = {e.id for e in self.of_kind("tool_result")[-p.keep_recent_results:]}
        budget_short = self._over_budget(p)
        pending: Message | None = None
        for e in self.entries:
            if e.kind in ("thought", "tool_call"):
                if pending is None:
                    pending = Message("assistant", "")
                    messages.append(pending)
                if e.kind == "thought":
                    pending.content = (pending.content + "\n" + e.text).strip() if isinstance(pending.content, str) else e.text
                else:
                    pending.tool_calls.append(e.data["call"])
                continue
            pending = None
            if e.kind == "tool_result":
                text = e.text
                if e.id not in recent_results or budget_short:
                    text = _shorten(text, p.short_result_chars, e.id)
                parts: list[Part] = [TextPart(text)]
                if e.frames is not None and len(e.frames):
                    if e.id in shown_frames:
                        parts.append(FramesPart(e.frames))
                    else:
                        span = e.frames.span
                        parts.append(TextPart(
                            f"[{len(e.frames)} frames {format_time(span.start)}-{format_time(span.end)} elided from view "
                            f"to keep within the frame budget; call inspect_frames on that span to see them again]"))
                messages.append(Message("tool", parts, tool_call_id=e.data.get("call_id"), name=e.data.get("name")))
            elif e.kind == "task":
                messages.append(Message("user", e.text))
            elif e.kind in ("feedback", "verification", "reflection", "plan", "perception", "memory"):
                label = e.kind.capitalize()
                content: list[Part] = [TextPart(f"[{label}] {e.text}")]
                if e.frames is not None and len(e.frames) and e.id in shown_frames:
                    content.append(FramesPart(e.frames))
                messages.append(Message("user", content))
            elif e.kind == "answer":
                messages.append(Message("assistant", e.text))
        return messages

    def _frames_to_show(self, p: RenderProfile) -> set[int]:
        """Ids of entries whose frames fit the frame budget, newest first."""
        shown: set[int] = set()
        used = 0
        for e in reversed(self.entries):
            if e.frames is None or not len(e.frames):
                continue
            if used + len(e.frames) <= p.max_frames:
                shown.add(e.id)
                used += len(e.frames)
        return shown

    def _over_budget(self, p: RenderProfile) -> bool:
        text_tokens = sum(estimate_tokens(e.text) for e in self.entries)
        frame_tokens = min(len(self.frames_seen()), p.max_frames) * p.tokens_per_frame
        return text_tokens + frame_tokens > p.max_context_tokens


def _shorten(text: str, limit: int, entry_id: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + f" [... shortened; full result is context entry #{entry_id} in the trace]"
