"""Answer forms: free text, one of several options, a time span, or a count.

The model answers with the ``answer`` tool; ``interpret`` turns its text into a typed
value for the form, or says what is wrong with it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mcr.types import TimeSpan, TimeSpanError, ToolCall, format_time

ANSWER_NAMES = ("answer", "final_answer")
ANSWER_KEYS = ("answer", "final_answer", "text", "input", "response")
FORMS = ("text", "choice", "span", "count")

_SPAN_QUESTION = re.compile(r"^\s*(when|at what (time|point|moment)|during which|in which (part|segment|span))\b", re.I)
_COUNT_QUESTION = re.compile(r"\bhow many\b|\bnumber of\b|\bcount\b", re.I)
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_TIME = r"\d+(?::\d{1,2}){0,2}(?:\.\d+)?"
_SPAN_IN_TEXT = re.compile(rf"({_TIME})\s*(?:-|–|—|to)\s*({_TIME})")


def detect_form(question: str, options: list[str] | None = None) -> str:
    """The form a question asks for: ``choice`` with options, else ``span``, ``count`` or ``text``."""
    if options:
        return "choice"
    if _SPAN_QUESTION.search(question or ""):
        return "span"
    if _COUNT_QUESTION.search(question or ""):
        return "count"
    return "text"


def answer_schema(form: str = "text", options: list[str] | None = None, cite: bool = False) -> dict:
    """The answer tool shown to the model; with ``cite`` at least one evidence span is required
    (a model under constrained decoding then cannot leave it out)."""
    described = {
        "text": "The final answer, in a sentence or a few words.",
        "choice": "Exactly one of the options: its letter (e.g. \"B\").",
        "span": "The span when it happens, 'HH:MM:SS.s-HH:MM:SS.s'.",
        "count": "The number, in digits.",
    }[form]
    answer_prop: dict[str, Any] = {"type": "string", "description": described}
    if form == "choice" and options:
        answer_prop["enum"] = [chr(65 + i) for i in range(len(options))]
    return {
        "type": "function",
        "function": {
            "name": "answer",
            "description": "Commit the final answer to the question, citing the spans of the video that show it.",
            "parameters": {
                "type": "object",
                "properties": {
                    "answer": answer_prop,
                    "evidence": {"type": "array", "items": {"type": "string"}, "maxItems": 8,
                                 **({"minItems": 1} if cite else {}),
                                 "description": "Spans that support the answer, each 'HH:MM:SS.s-HH:MM:SS.s'."},
                },
                "required": ["answer", "evidence"],
                "additionalProperties": False,
            },
        },
    }


def read_answer(call: ToolCall, duration: float | None) -> tuple[str, list[TimeSpan], str]:
    """``(answer, evidence, problem)`` from an answer call; ``problem`` is empty when it is well formed."""
    args = call.arguments
    text = next((args[k] for k in ANSWER_KEYS if k in args), None)
    if text is None or (isinstance(text, str) and not text.strip()):
        return "", [], "the answer is empty; pass it as {\"answer\": \"...\"}"
    text = text if isinstance(text, str) else str(text)
    raw = args.get("evidence") or []
    if isinstance(raw, (str, dict)) or (isinstance(raw, (list, tuple)) and len(raw) == 2
                                        and all(isinstance(x, (int, float)) for x in raw)):
        raw = [raw]
    spans: list[TimeSpan] = []
    for item in raw:
        try:
            span = TimeSpan.parse(item)
        except TimeSpanError as exc:
            return text, [], f"evidence {item!r} is not a span ({exc})"
        if duration is not None and span.start > duration:
            return text, [], f"evidence {span} starts after the video ends at {format_time(duration)}"
        spans.append(span.clamp(duration) if duration is not None else span)
    return text.strip(), spans, ""


@dataclass
class TypedAnswer:
    form: str
    text: str
    value: Any = None  # choice: option index; span: TimeSpan; count: int; text: str

    def to_json(self) -> Any:
        if isinstance(self.value, TimeSpan):
            return self.value.to_list()
        return self.value

    def display(self, options: list[str] | None = None) -> str:
        if self.form == "choice" and options and isinstance(self.value, int):
            return f"{chr(65 + self.value)}. {options[self.value]}"
        if self.form == "span" and isinstance(self.value, TimeSpan):
            return str(self.value)
        return str(self.value if self.value is not None else self.text)


def _choice(text: str, options: list[str]) -> tuple[int | None, str]:
    t = text.strip()
    letters = [chr(65 + i) for i in range(len(options))]
    m = re.fullmatch(r"\(?([A-Za-z])\)?[.:)]?", t) or re.fullmatch(r"\(?([A-Za-z])[.:)]\s+.+", t, re.S)
    if m and m.group(1).upper() in letters:
        return letters.index(m.group(1).upper()), ""
    lowered = t.lower().rstrip(".")
    exact = [i for i, o in enumerate(options) if o.strip().lower().rstrip(".") == lowered]
    if len(exact) == 1:
        return exact[0], ""
    mentioned = [i for i, o in enumerate(options) if o.strip() and o.strip().lower() in t.lower()]
    if len(mentioned) == 1:
        return mentioned[0], ""
    listing = "; ".join(f"{letters[i]}. {o}" for i, o in enumerate(options))
    if len(mentioned) > 1:
        return None, f"the answer names several options; answer with exactly one letter of: {listing}"
    return None, f"the answer is not one of the options; answer with exactly one letter of: {listing}"


def interpret(form: str, text: str, options: list[str] | None = None,
              duration: float | None = None) -> tuple[TypedAnswer, str]:
    """The typed answer and a problem ('' when the text fits the form)."""
    if form == "choice":
        idx, problem = _choice(text, options or [])
        return TypedAnswer(form, text, idx), problem
    if form == "span":
        span = None
        try:
            span = TimeSpan.parse(text)
        except TimeSpanError:
            m = _SPAN_IN_TEXT.search(text)
            if m:
                try:
                    span = TimeSpan.parse(f"{m.group(1)}-{m.group(2)}")
                except TimeSpanError as exc:
                    return TypedAnswer(form, text), f"the answer span is not well formed ({exc})"
        if span is None:
            return TypedAnswer(form, text), "a 'when' question needs a span as the answer, 'HH:MM:SS.s-HH:MM:SS.s'"
        if duration is not None and span.start > duration:
            return TypedAnswer(form, text), f"the answer span {span} starts after the video ends"
        return TypedAnswer(form, text, span.clamp(duration) if duration is not None else span), ""
    if form == "count":
        numbers = {int(n) for n in re.findall(r"(?<![\d.:])\d+(?![\d.:])", text)}
        numbers |= {_NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in _NUMBER_WORDS}
        if len(numbers) != 1:
            return TypedAnswer(form, text), "a 'how many' question needs exactly one number as the answer"
        return TypedAnswer(form, text, numbers.pop()), ""
    return TypedAnswer("text", text, text), ""
