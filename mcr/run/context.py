"""The one shared context: ordered, typed entries, and ``render()``, the model's view of it.

Entries are never rewritten, and neither is what was sent: the view is append-only between
calls, so each call's prompt begins with the last call's and a model server's cache of it
stays good. When the view nears a profile's budgets it is compacted once: the task, the
memory digest, the latest plan and the latest reflection stay whole; newer turns are shown
whole, older ones shortened, the oldest folded into one line; frames beyond the frame budget
become references to the memory entry written for them. Everything left out says where its
content went. A compaction is one pass over the entries.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from mcr.quoting import DATA_RULE, cut, quote
from mcr.types import Frames, FramesPart, Message, Part, TextPart, ToolCall, format_time

ENTRY_KINDS = (
    "task",
    "perception",
    "plan",
    "thought",
    "tool_call",
    "tool_result",
    "reflection",
    "verification",
    "memory",
    "feedback",
    "answer",
    "phase",
)

TOOL_PROTOCOL = """To use a tool, reply with one or more blocks, each holding one JSON object:
<tool_call>
{"name": "TOOL_NAME", "arguments": {...}}
</tool_call>
When you know the answer, call the tool "answer" with the answer and the evidence spans you saw.
Write every time as HH:MM:SS.s and every span as HH:MM:SS.s-HH:MM:SS.s."""

DEFAULT_SYSTEM_PROMPT = (
    """You answer questions about a video by looking at it with tools.
You cannot see the video until you call a tool that shows it to you. Plan what to look at,
look, and reflect on what you saw before you answer. Cite the spans that support your answer.
Answer with the "answer" tool; do not guess when you can look.
"""
    + DATA_RULE
)

LINE_TOKENS = 30  # a folded item
# A compaction renders the context again within these parts of its token and frame budgets, so
# the entries that follow are appended to the new view for a while before the next one.
COMPACT_TOKENS = 0.6
COMPACT_FRAMES = 0.5
REFERRING = ("perception", "tool_result")  # the kinds the loop gives a memory reference
SHORT_NOTE = " [... shortened; full text: trace entry #{id}{mem}]"


@dataclass
class RenderProfile:
    """Budgets for one model's view of the context."""

    max_context_tokens: int = 32768
    max_frames: int = 64  # frames shown at once; older ones become references
    tokens_per_frame: int = 256
    keep_recent_results: int = 4  # tool results shown whole; older ones are shortened
    short_result_chars: int = 400
    native_tools: bool = False  # True: schemas go through the API, not the system prompt
    reserve_tokens: int = 2048  # left for the reply


@dataclass
class Entry:
    id: int
    kind: str
    text: str
    step: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    frames: Frames | None = None
    tokens: int = 0


@dataclass
class _View:
    """What was sent: the messages of the view so far, the units they hold, and their cost; the
    last unit's share, so a unit that grew after it was sent is rendered again at the end."""

    key: tuple
    messages: list[Message]
    units: int = 0
    last_size: int = 0
    last_messages: int = 0
    tokens: int = 0
    frames: int = 0
    last_tokens: int = 0
    last_frames: int = 0


def estimate_tokens(text: str) -> int:
    """About four characters a token: used when no tokenizer is given."""
    return max(1, (len(text) + 3) // 4) if text else 0


class Context:
    """Everything the model perceived and did in one run, in order."""

    def __init__(
        self,
        system_prompt: str | None = None,
        profile: RenderProfile | None = None,
        count_tokens: Callable[[str], int] | None = None,
    ) -> None:
        self.system_prompt = system_prompt or DEFAULT_SYSTEM_PROMPT
        self.profile = profile or RenderProfile()
        self.count_tokens = count_tokens or estimate_tokens
        self.entries: list[Entry] = []
        self._frames_seen: list[float] = []
        self._tokens = 0
        # kept up to date as entries are added, so render() does not regroup the whole run
        self._units: list[list[int]] = []
        self._turn: list[int] | None = None
        self._pending: set[str] = set()
        self._turn_step, self._has_results = -1, False
        self._firsts: dict[str, int] = {}
        self._lasts: dict[str, int] = {}
        self._frames_upto: list[int] = []  # frames in entries 0..i, kept as entries are added
        self._may_refer: list[int] = []  # entries that may be given a memory reference after they are added
        self._scan = 0  # of those, how many were read for folded summaries so far
        self._scan_refs: list[tuple[int, int]] = []  # (entry id, memory entry number)
        self._view: _View | None = None  # what was sent, kept until a compaction
        self.compactions: list[dict] = []  # each: entries, tokens and frames before and after

    def use(self, profile: RenderProfile, count_tokens: Callable[[str], int] | None) -> None:
        """Budgets and a token counter that became known after entries were added (a model
        that loaded in the background): the entries so far are counted again with them."""
        self.profile = profile
        self.count_tokens = count_tokens or estimate_tokens
        for e in self.entries:
            e.tokens = self.count_tokens(e.text) + (
                len(e.frames) * profile.tokens_per_frame if e.frames is not None else 0
            )
        self._tokens = sum(e.tokens for e in self.entries)
        self._view = None

    # ------------------------------------------------------------- writing
    def add(self, kind: str, text: str, step: int = 0, frames: Frames | None = None, **data: Any) -> Entry:
        if kind not in ENTRY_KINDS:
            raise ValueError(f"unknown context entry kind {kind!r}; one of {', '.join(ENTRY_KINDS)}")
        tokens = self.count_tokens(text) + (len(frames) * self.profile.tokens_per_frame if frames is not None else 0)
        entry = Entry(len(self.entries), kind, text, step, dict(data), frames, tokens)
        self.entries.append(entry)
        self._tokens += tokens
        self._frames_upto.append((self._frames_upto[-1] if self._frames_upto else 0) + (len(frames) if frames else 0))
        if kind in REFERRING or "memory_ref" in data:
            self._may_refer.append(entry.id)
        if frames is not None:
            self._frames_seen.extend(frames.timestamps)
        self._group(entry)
        return entry

    def _group(self, e: Entry) -> None:
        """Keep a turn's calls and their results together in one unit."""
        if e.kind in ("task", "memory"):
            self._firsts.setdefault(e.kind, e.id)
        if e.kind in ("plan", "reflection"):
            self._lasts[e.kind] = e.id
        if e.kind in ("thought", "tool_call"):
            if self._turn is None or self._turn_step != e.step or self._has_results:
                self._turn, self._pending, self._turn_step, self._has_results = [e.id], set(), e.step, False
                self._units.append(self._turn)
            else:
                self._turn.append(e.id)
            if e.kind == "tool_call":
                self._pending.add(e.data["call"].id)
        elif e.kind == "tool_result" and self._turn is not None and e.data.get("call_id") in self._pending:
            self._turn.append(e.id)
            self._pending.discard(e.data.get("call_id"))
            self._has_results = True
        else:
            self._turn = None
            self._units.append([e.id])

    def add_task(self, question: str, options: list[str] | None = None, video: dict | None = None) -> Entry:
        lines = []
        if video:
            lines.append(
                f"Video: duration {format_time(video.get('duration', 0))}"
                f" (00:00:00.0-{format_time(video.get('duration', 0))}), {video.get('fps', 0):.2f} fps,"
                f" {video.get('width', 0)}x{video.get('height', 0)}, audio: {'yes' if video.get('has_audio') else 'no'}."
                " Its file name or address, as given (whoever named it wrote it):"
            )
            lines.append(quote(str(video.get("name", "video")), "video name"))
        live = (video or {}).get("live")
        if live:
            lines.append(
                f"A live stream ({live.get('source')}), watched so far: stream time 00:00:00.0 is "
                f"{live.get('stream_start')}; the video ends at {live.get('watched_to')}, "
                f"{live.get('watched_to_wall')}. Signal gaps: {live.get('gaps', 0)} (noted in memory)."
            )
        page = _page_lines((video or {}).get("source") or {})
        if page:
            lines.append("What the page it came from says of it:\n" + quote("\n".join(page), "video page"))
        lines.append(f"Question: {question}")
        if options:
            lines.append("Options:")
            lines.extend(f"{chr(65 + i)}. {o}" for i, o in enumerate(options))
            lines.append("Answer with exactly one of the options.")
        return self.add("task", "\n".join(lines), question=question, options=list(options or []))

    def add_model_turn(self, step: int, text: str, calls: list[ToolCall]) -> None:
        if text.strip():
            self.add("thought", text.strip(), step)
        for call in calls:
            self.add("tool_call", json.dumps(call.to_dict(), ensure_ascii=False), step, call=call)

    def add_tool_result(
        self, step: int, call: ToolCall, text: str, frames: Frames | None = None, is_error: bool = False, **data: Any
    ) -> Entry:
        return self.add(
            "tool_result", text, step, frames=frames, call_id=call.id, name=call.name, is_error=is_error, **data
        )

    # ------------------------------------------------------------- reading
    @property
    def task(self) -> Entry | None:
        return (
            self.entries[0]
            if self.entries and self.entries[0].kind == "task"
            else next((e for e in self.entries if e.kind == "task"), None)
        )

    def of_kind(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]

    @property
    def tokens(self) -> int:
        return self._tokens

    def frames_seen(self) -> list[float]:
        """Every timestamp shown to the model in this run."""
        return list(self._frames_seen)

    # ----------------------------------------------------------- rendering
    def render(self, tools: list[dict] | None = None, profile: RenderProfile | None = None) -> list[Message]:
        """The model's view of the context, within the profile's token and frame budgets.

        The view is append-only between calls: what was sent is kept as it was sent, and each
        new entry is rendered once, whole, after it, so every call's prompt begins with the
        last call's (a server's cache of it stays good). When the next view would pass a
        budget, the context is compacted once (:meth:`_compact`) and the view starts again
        from there; ``compactions`` records each."""
        p = profile or self.profile
        system = self.system_prompt
        if tools and not p.native_tools:
            listing = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
            system += f"\n\nTools:\n{listing}\n\n{TOOL_PROTOCOL}"
        key = (system, id(p))
        view = self._view if self._view is not None and self._view.key == key else None
        if view is None:
            full = self.count_tokens(system) + self._tokens
            if full <= p.max_context_tokens - p.reserve_tokens and len(self._frames_seen) <= p.max_frames:
                view = self._view = _View(key, [Message("system", system)], tokens=self.count_tokens(system))
            else:
                return self._compact(system, p, key, full, len(self._frames_seen))
        units = self._units
        if view.units and len(units[view.units - 1]) != view.last_size:  # the last unit grew since it was sent
            del view.messages[len(view.messages) - view.last_messages :]
            view.tokens, view.frames, view.units = (
                view.tokens - view.last_tokens,
                view.frames - view.last_frames,
                view.units - 1,
            )
        added = [self._full_unit(units[pos], p) for pos in range(view.units, len(units))]
        tokens = view.tokens + sum(a[1] for a in added)
        frames = view.frames + sum(a[2] for a in added)
        if tokens > p.max_context_tokens - p.reserve_tokens or frames > p.max_frames:
            return self._compact(system, p, key, tokens, frames)
        for messages, cost, shown in added:
            view.messages.extend(messages)
            view.last_messages, view.last_tokens, view.last_frames = len(messages), cost, shown
        view.tokens, view.frames, view.units = tokens, frames, len(units)
        view.last_size = len(units[-1]) if units else 0
        return list(view.messages)

    def _full_unit(self, unit: list[int], p: RenderProfile) -> tuple[list[Message], int, int]:
        """A unit as first sent: whole, its frames shown; with its tokens and frames."""
        entries = [self.entries[i] for i in unit]
        shown = {e.id for e in entries if e.frames is not None and len(e.frames)}
        frames = sum(len(self.entries[i].frames) for i in shown)
        return self._unit_messages(unit, "full", shown, p), sum(e.tokens for e in entries), frames

    def _compact(self, system: str, p: RenderProfile, key: tuple, tokens: int, frames: int) -> list[Message]:
        """Compact the view once: it is rendered again within a part of the budgets
        (``COMPACT_TOKENS``, ``COMPACT_FRAMES``), so later entries are appended to it for a
        while before the next compaction; the tokens and frames before and after are recorded."""
        target = int((p.max_context_tokens - p.reserve_tokens) * COMPACT_TOKENS)
        messages, used, shown, last = self._levels(system, p, target, int(p.max_frames * COMPACT_FRAMES))
        units = self._units
        self._view = _View(key, messages, len(units), len(units[-1]) if units else 0, last, used, shown)
        self.compactions.append(
            {"entries": len(self.entries), "tokens_before": tokens, "tokens_after": used,
             "frames_before": frames, "frames_after": shown}
        )  # fmt: skip
        return list(messages)

    def _levels(
        self, system: str, p: RenderProfile, target: int, max_frames: int
    ) -> tuple[list[Message], int, int, int]:
        """The context within ``target`` tokens and ``max_frames`` frames, in one pass from the
        newest unit: newer units whole, older ones shortened, the oldest folded into one line,
        frames past the frame budget as references. Returns the messages, their tokens, the
        frames shown and the number of messages of the last unit."""
        units = self._units
        pinned = self._pinned()
        budget = target - self.count_tokens(system) - sum(self.entries[i].tokens for i in pinned)
        frames_left = max_frames
        recent_results = p.keep_recent_results
        levels: dict[int, str] = {}
        shown_frames: set[int] = set()
        cutoff = -1
        for pos in range(len(units) - 1, -1, -1):
            unit = units[pos]
            if unit[0] in pinned:
                levels[pos] = "full"
                continue
            entries = [self.entries[i] for i in unit]
            for e in entries:
                if e.frames is not None and len(e.frames) and len(e.frames) <= frames_left:
                    shown_frames.add(e.id)
                    frames_left -= len(e.frames)
            text_tokens = sum(
                e.tokens - (len(e.frames) * p.tokens_per_frame if e.frames is not None else 0) for e in entries
            )
            frame_tokens = sum(len(e.frames) * p.tokens_per_frame for e in entries if e.id in shown_frames)
            results = sum(1 for e in entries if e.kind == "tool_result")
            short = sum(min(e.tokens, p.short_result_chars // 4 + 24) for e in entries) + frame_tokens
            if recent_results > 0 and text_tokens + frame_tokens <= budget:
                level, cost = "full", text_tokens + frame_tokens
            elif short <= budget:
                level, cost = "short", short
            elif LINE_TOKENS <= budget:
                level, cost = "line", LINE_TOKENS
                shown_frames.difference_update(e.id for e in entries)
            else:
                cutoff = pos
                shown_frames.difference_update(e.id for e in entries)
                break
            recent_results -= results
            levels[pos] = level
            budget -= cost
        messages = [Message("system", system)]
        if cutoff >= 0:
            for i in sorted(pinned):  # pinned entries that fall in the folded part keep their order
                if i <= units[cutoff][-1]:
                    messages.extend(self._unit_messages([i], "full", shown_frames, p))
            messages.append(self._folded_message(units[cutoff][-1], pinned))
        last = 0
        for pos in range(cutoff + 1, len(units)):
            made = self._unit_messages(units[pos], levels.get(pos, "full"), shown_frames, p)
            messages.extend(made)
            last = len(made)
        return messages, target - budget, sum(len(self.entries[i].frames) for i in shown_frames), last

    def _pinned(self) -> set[int]:
        """Entries always shown whole: the task, the first memory digest, the latest plan and reflection."""
        return set(self._firsts.values()) | set(self._lasts.values())

    def _unit_messages(self, unit: list[int], level: str, shown: set[int], p: RenderProfile) -> list[Message]:
        entries = [self.entries[i] for i in unit]
        first = entries[0]
        if first.kind in ("thought", "tool_call"):
            assistant = Message("assistant", "")
            out = [assistant]
            for e in entries:
                if e.kind == "thought":
                    assistant.content = _cut(e.text, level, p, e) if level != "line" else _one_line(e.text)
                elif e.kind == "tool_call":
                    assistant.tool_calls.append(e.data["call"])
                else:
                    out.append(self._result_message(e, level, shown, p))
            return out
        if first.kind == "tool_result":  # a result whose call is not in the view
            return [self._result_message(first, level, shown, p)]
        if first.kind == "task":
            return [Message("user", first.text)]
        if first.kind == "answer":
            return [Message("assistant", first.text)]
        if first.kind == "phase":  # says the phase in the policy's own words, marker first
            return [Message("user", first.text)]
        text = _at_level(first, level, p, f"[folded; trace entry #{first.id}]")
        content: list[Part] = [TextPart(f"[{first.kind.capitalize()}] {text}")]
        if first.frames is not None and len(first.frames):
            content.append(FramesPart(first.frames) if first.id in shown else TextPart(_elided(first)))
        return [Message("user", content)]

    def _result_message(self, e: Entry, level: str, shown: set[int], p: RenderProfile) -> Message:
        text = _at_level(e, level, p, f"[folded; full result: trace entry #{e.id}{_mem(e)}]")
        parts: list[Part] = [TextPart(text)]
        if e.frames is not None and len(e.frames):
            parts.append(FramesPart(e.frames) if e.id in shown else TextPart(_elided(e)))
        return Message("tool", parts, tool_call_id=e.data.get("call_id"), name=e.data.get("name"))

    def _folded_message(self, last: int, pinned: set[int]) -> Message:
        """One line standing for every entry up to ``last`` (except the pinned ones)."""
        end = bisect.bisect_right(self._may_refer, last, lo=self._scan)
        entries, found = self.entries, self._scan_refs
        for i in self._may_refer[
            self._scan : end
        ]:  # each is read once: its reference is given in the step that added it
            ref = entries[i].data.get("memory_ref")
            if ref and ref[1:].isdigit():
                found.append((i, int(ref[1:])))
        self._scan = end
        upto = bisect.bisect_right(self._scan_refs, (last, float("inf")))
        refs = sorted({r for _, r in self._scan_refs[:upto]})
        frames = self._frames_upto[last]
        first_step, last_step = self.entries[0].step, self.entries[last].step
        where = f"; what was seen is in memory {_ranges(refs)}" if refs else ""
        kept = len([i for i in pinned if i <= last])
        return Message(
            "user",
            f"[{last + 1 - kept} earlier context entries (steps {first_step}-{last_step}, {frames} "
            f"frames) folded to keep within the context budget: trace entries #0-#{last}{where}; "
            "use memory_search to recall them]",
        )


def _page_lines(source: dict, most: int = 40) -> list[str]:
    """The title, uploader and chapters a video page gave (web text: shown as data)."""
    lines = [f"{k}: {source[k]}" for k in ("title", "uploader") if source.get(k)]
    chapters = [c for c in source.get("chapters") or [] if c.get("start") is not None]
    if chapters:
        lines.append("chapters:")
        lines += [f"{format_time(float(c['start']))} {c.get('title', '')}" for c in chapters[:most]]
        if len(chapters) > most:
            lines.append(f"... {len(chapters) - most} more chapters")
    return lines


def _ranges(numbers: list[int]) -> str:
    """``m3-m7, m9``: memory references, runs written as ranges."""
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(f"m{start}" if start == n else f"m{start}-m{n}")
            start = None
    return ", ".join(parts)


def _mem(e: Entry) -> str:
    ref = e.data.get("memory_ref")
    return f"; see memory {ref}" if ref else ""


def _elided(e: Entry) -> str:
    span = e.frames.span
    where = f"see memory {e.data['memory_ref']}, or " if e.data.get("memory_ref") else ""
    return (
        f"[{len(e.frames)} frames {format_time(span.start)}-{format_time(span.end)} elided from view to keep "
        f"within the frame budget; {where}call inspect_frames on that span to see them again]"
    )


def _at_level(e: Entry, level: str, p: RenderProfile, folded: str) -> str:
    """An entry's text as the view shows it: whole, shortened, or folded to one line and a note."""
    if level == "full":
        return e.text
    if level == "short":
        return _cut(e.text, level, p, e)
    return _one_line(e.text) + " " + folded


def _cut(text: str, level: str, p: RenderProfile, e: Entry) -> str:
    if level == "full" or len(text) <= p.short_result_chars:
        return text
    return cut(text, p.short_result_chars).rstrip() + SHORT_NOTE.format(id=e.id, mem=_mem(e))


def _one_line(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else cut(line, limit, " ").rstrip() + "…"
