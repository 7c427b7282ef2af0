"""How a call says its phase: a message appended at the end that starts with a marker.

Every call of a run shows the model the same system prompt and tool list, so a server can
reuse what it has read; what changes from one phase to the next (plan, act, reflect, verify,
answer) is said in a message appended to the context, ``Phase: NAME. ...``. A model that
replays a recording (and a test's scripted model) reads the phase from that marker.
"""

from __future__ import annotations

from typing import Sequence

from mcr.types import Message, TextPart

MARK = "Phase: "
PHASE_NAMES = ("plan", "act", "reflect", "verify", "answer")
NO_TOOL_PHASES = ("plan", "reflect", "verify")  # phases that may call no tool


def said(name: str, text: str) -> str:
    """A phase message: the marker, the phase's name, then what the phase asks for."""
    return f"{MARK}{name}. {text}"


def marked(text: str) -> str | None:
    """The phase a text names with the marker at its start, or None."""
    if not text.startswith(MARK):
        return None
    name = text[len(MARK) :].split(".", 1)[0].strip()
    return name if name in PHASE_NAMES else None


def phase_of(messages: Sequence[Message]) -> str | None:
    """The phase the last message says (its last text part starts with the marker), or None:
    a call whose last message is a tool result or feedback goes on in the phase it was in."""
    if not messages or messages[-1].role != "user":
        return None
    texts = [p.text for p in messages[-1].parts if isinstance(p, TextPart)]
    return marked(texts[-1]) if texts else None


__all__ = ["MARK", "NO_TOOL_PHASES", "PHASE_NAMES", "marked", "phase_of", "said"]
