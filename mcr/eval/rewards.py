"""Rewards for training on MCR trajectories, in the signature reward libraries use:
``reward(completions, **kwargs) -> list[float]``, one float per completion.

A completion is a string (the model's raw text, tool calls as ``<tool_call>`` blocks or
JSON) or a list of chat messages (the last assistant message counts; its ``tool_calls``
are read first). The dataset's other columns arrive as keyword lists, one item per
completion — the ``rl`` export writes the ones read here: ``gold`` (a letter, an option
index, ``"start-end"`` seconds, a count or text), ``options`` and ``form``.

- :func:`choice_reward`: 1.0 when the chosen option is the gold one, else 0.0.
- :func:`temporal_iou_reward`: the temporal IoU of the answered span with the gold span.
- :func:`correctness_reward`: 1.0/0.0 for any form (a span counts from IoU 0.5).

The first three score through :func:`mcr.eval.samples.score`, the one function ``mcr-agent
eval`` scores runs with; training on MCR episodes (:mod:`mcr.train.rewards`) reads the eval
record of each episode itself.
- :func:`format_reward`: 0.5 when the answer fits its form (one option, a span, one number),
  + 0.25 when it is committed with the ``answer`` tool, + 0.25 when it cites evidence and
  every cited span is well formed.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from mcr.run.answers import ANSWER_NAMES, interpret
from mcr.run.replies import ANSWER_KEYS
from mcr.types import TimeSpan, TimeSpanError

from .adapters import letter_index
from .samples import predicted_value, score


class Answer:
    """What a completion answered: the text, the evidence it cited, and whether the answer tool was used."""

    def __init__(self, text: str | None, evidence: Any = None, via_tool: bool = False) -> None:
        self.text, self.evidence, self.via_tool = text, evidence, via_tool


def _arguments(raw: Any) -> dict:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _from_calls(calls: Sequence[Any]) -> Answer | None:
    for call in reversed(list(calls or [])):
        if isinstance(call, dict):
            fn = call.get("function") or call
            name, args = fn.get("name"), _arguments(fn.get("arguments", fn.get("parameters")))
        else:
            name, args = getattr(call, "name", None), _arguments(getattr(call, "arguments", {}))
        if name in ANSWER_NAMES:
            text = next((args[k] for k in ANSWER_KEYS if k in args), None)
            return Answer(None if text is None else str(text), args.get("evidence"), True)
    return None


def extract_answer(completion: Any) -> Answer:
    """The answer a completion gives (``Answer(None)`` when it gives none)."""
    from mcr.models import parse_tool_calls

    if isinstance(completion, list):
        assistant = [m for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
        if not assistant:
            return Answer(None)
        last = assistant[-1]
        found = _from_calls(last.get("tool_calls") or [])
        if found is not None:
            return found
        completion = last.get("content") or ""
        if isinstance(completion, list):  # content parts
            completion = " ".join(p.get("text", "") for p in completion if isinstance(p, dict))
    text = str(completion or "")
    parsed = parse_tool_calls(text, known=set(ANSWER_NAMES))
    found = _from_calls(parsed.tool_calls)
    if found is not None:
        return found
    if parsed.tool_calls:  # it called some other tool: no answer yet
        return Answer(None)
    plain = parsed.text.strip()
    return Answer(plain or None)


def _column(kwargs: dict, name: str, n: int, default: Any = None) -> list:
    value = kwargs.get(name)
    if value is None:
        return [default] * n
    if not isinstance(value, (str, bytes, dict)) and hasattr(value, "__len__") and hasattr(value, "__iter__"):
        items = list(value)  # a list, or a column object such as a datasets Column
        if len(items) == n:
            return items
    return [value] * n


def _form(form: Any, options: Any) -> str:
    if form in ("choice", "span", "count", "text"):
        return form
    return "choice" if options else "text"


def _gold_span(gold: Any) -> list[float] | None:
    if gold is None or gold == "":
        return None
    try:
        span = TimeSpan.parse(gold)
    except TimeSpanError:
        return None
    return [span.start, span.end]


def _gold(kind: str, gold: Any, options: list) -> Any:
    """The gold column's value as an evaluation sample holds it (an option index, ``[start, end]``,
    an int or text); None when it cannot be read."""
    if gold is None or gold == "":
        return None
    if kind == "choice":
        return letter_index(gold, options) if options else None
    if kind == "span":
        return _gold_span(gold)
    if kind == "count":
        try:
            return int(str(gold).strip())
        except ValueError:
            return None
    return str(gold)


def _scored(completion: Any, gold: Any, options: Any, kind: str) -> dict:
    """The completion scored by :func:`mcr.eval.samples.score`, as ``mcr-agent eval`` scores a run."""
    options = list(options or [])
    want = _gold(kind, gold, options)
    answer = extract_answer(completion)
    if want is None:
        return {"correct": False, "iou": 0.0}
    predicted = predicted_value(kind, answer.text or "", None, options) if answer.text is not None else None
    return score(kind, want, predicted)


def choice_reward(
    completions: Sequence[Any],
    gold: Sequence[Any] | None = None,
    options: Sequence[Sequence[str]] | None = None,
    **kwargs: Any,
) -> list[float]:
    """1.0 when the completion picks the gold option (gold: a letter, an index or the option's text)."""
    n = len(completions)
    golds, opts = _column({"g": gold}, "g", n), _column({"o": options}, "o", n, [])
    return [1.0 if _scored(c, g, o, "choice")["correct"] else 0.0 for c, g, o in zip(completions, golds, opts)]


def temporal_iou_reward(completions: Sequence[Any], gold: Sequence[Any] | None = None, **kwargs: Any) -> list[float]:
    """The IoU of the answered span with the gold span (``[start, end]`` or ``"start-end"``); 0.0 when
    no span can be read from the completion."""
    n = len(completions)
    golds = _column({"g": gold}, "g", n)
    return [float(_scored(c, g, [], "span")["iou"] or 0.0) for c, g in zip(completions, golds)]


def correctness_reward(
    completions: Sequence[Any],
    gold: Sequence[Any] | None = None,
    options: Sequence[Sequence[str]] | None = None,
    form: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[float]:
    """1.0 for a correct answer of any form, exactly as ``mcr-agent eval`` counts it
    (:func:`mcr.eval.samples.score`): the gold option, a span with IoU >= 0.5, the count, or
    text containing the gold text."""
    n = len(completions)
    golds, opts, forms = _column({"g": gold}, "g", n), _column({"o": options}, "o", n, []), _column({"f": form}, "f", n)
    return [
        1.0 if _scored(c, g, o, _form(f, o))["correct"] else 0.0 for c, g, o, f in zip(completions, golds, opts, forms)
    ]


def format_reward(
    completions: Sequence[Any],
    form: Sequence[str] | None = None,
    options: Sequence[Sequence[str]] | None = None,
    **kwargs: Any,
) -> list[float]:
    """0.5 (the answer fits its form) + 0.25 (committed with the answer tool) + 0.25 (evidence cited,
    every span well formed)."""
    n = len(completions)
    forms, opts = _column({"f": form}, "f", n), _column({"o": options}, "o", n, [])
    rewards = []
    for c, f, o in zip(completions, forms, opts):
        answer = extract_answer(c)
        if answer.text is None or not answer.text.strip():
            rewards.append(0.0)
            continue
        kind = _form(f, o)
        _, problem = interpret(kind, answer.text, list(o or []))
        total = 0.5 if not problem else 0.0
        total += 0.25 if answer.via_tool else 0.0
        total += 0.25 if _evidence_ok(answer.evidence) else 0.0
        rewards.append(total)
    return rewards


def _evidence_ok(evidence: Any) -> bool:
    if evidence is None or evidence == [] or evidence == "":
        return False
    items = [evidence] if isinstance(evidence, (str, dict)) else list(evidence)
    if len(items) == 2 and all(isinstance(x, (int, float)) for x in items):
        items = [items]
    try:
        for item in items:
            TimeSpan.parse(item)
    except (TimeSpanError, TypeError):
        return False
    return bool(items)


REWARDS = {
    "choice": choice_reward,
    "temporal_iou": temporal_iou_reward,
    "correctness": correctness_reward,
    "format": format_reward,
}

__all__ = [
    "REWARDS",
    "Answer",
    "choice_reward",
    "correctness_reward",
    "extract_answer",
    "format_reward",
    "temporal_iou_reward",
]
