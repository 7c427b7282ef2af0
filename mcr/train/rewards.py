"""Episode rewards for training, computed from the episode's eval record.

Each function has the signature TRL's trainers call (``reward(completions, **columns)``, one
float per completion, ``None`` where it does not apply). They read ``mcr_record``: the record
:func:`mcr.eval.question.make_record` wrote for the episode's run, so a question is scored in
training exactly as ``mcr-agent eval`` scores it. The format term is
:func:`mcr.eval.rewards.format_reward` on the committed answer.
"""

from __future__ import annotations

from typing import Any, Sequence

from mcr.eval.rewards import format_reward

COMMITTED = ("verified", "unverified", "answered")  # the model called the answer tool itself

DEFAULT_WEIGHTS = {"correct": 1.0, "iou": 1.0, "format": 0.2, "frames": 0.0, "calls": 0.0}


def correct_reward(completions: Sequence[Any], mcr_record: Sequence[dict], **_: Any) -> list[float]:
    """1.0 when the eval record says correct (choice, count, text; a span from IoU 0.5)."""
    return [1.0 if r.get("correct") else 0.0 for r in mcr_record]


def iou_reward(completions: Sequence[Any], mcr_record: Sequence[dict], **_: Any) -> list[float | None]:
    """The answered span's IoU with the gold span; ``None`` for questions that are not spans."""
    return [float(r.get("iou") or 0.0) if r.get("form") == "span" else None for r in mcr_record]


def format_term(completions: Sequence[Any], mcr_record: Sequence[dict], **_: Any) -> list[float]:
    """The answer fits its form, was committed with the answer tool, and cites well-formed spans."""
    made = []
    for r in mcr_record:
        if r.get("status") in COMMITTED:
            args = {"answer": r.get("answer") or "", "evidence": r.get("evidence") or []}
            made.append({"role": "assistant", "tool_calls": [{"function": {"name": "answer", "arguments": args}}]})
        else:
            made.append({"role": "assistant", "content": r.get("answer") or ""})
    return format_reward(
        made, form=[r.get("form") for r in mcr_record], options=[r.get("options") or [] for r in mcr_record]
    )


def frames_cost(completions: Sequence[Any], mcr_record: Sequence[dict], **_: Any) -> list[float]:
    """Minus the frames the model was shown (weight it to make frames cost)."""
    return [-float(r.get("frames_seen") or 0) for r in mcr_record]


def calls_cost(completions: Sequence[Any], mcr_record: Sequence[dict], **_: Any) -> list[float]:
    """Minus the model calls the episode made."""
    return [-float((r.get("usage") or {}).get("model_calls") or 0) for r in mcr_record]


REWARDS = {
    "correct": correct_reward,
    "iou": iou_reward,
    "format": format_term,
    "frames": frames_cost,
    "calls": calls_cost,
}


def parse_weights(text: str | None) -> dict[str, float]:
    """``"correct=1,iou=1,format=0.2,frames=0.001"`` over the defaults; unknown names are an error."""
    weights = dict(DEFAULT_WEIGHTS)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r}: {', '.join(REWARDS)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"reward weight {part.strip()!r} is not NAME=NUMBER") from None
    return weights


def chosen(weights: dict[str, float]) -> tuple[list, list[float]]:
    """The reward functions with a weight other than 0, and their weights, for ``GRPOConfig``."""
    names = [n for n in REWARDS if weights.get(n, 0.0) != 0.0]
    return [REWARDS[n] for n in names], [weights[n] for n in names]
