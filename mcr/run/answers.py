"""Answer forms: free text, one of several options, a time span, or a count.

The model answers with the ``answer`` tool, whose arguments are a pydantic model
(``mcr.run.replies.AnswerArguments``; its schema per form from ``answer_model``), built the way
``@tool`` builds a tool's. ``read_answer`` validates a call with it; ``interpret`` turns the answer
text into a typed value for the form, or says what is wrong with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mcr.types import TimeSpan, TimeSpanError, ToolCall

ANSWER_NAMES = ("answer", "final_answer")
FORMS = ("text", "choice", "span", "count")

_SPAN_QUESTION = re.compile(r"^\s*(when|at what (time|point|moment)|during which|in which (part|segment|span))\b", re.I)
_COUNT_QUESTION = re.compile(r"\bhow many\b|\bnumber of\b|\bcount\b", re.I)
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
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


def answer_schema(
    form: str = "text", options: list[str] | None = None, cite: bool = False, library: bool = False
) -> dict:
    """The answer tool shown to the model (see ``mcr.run.replies.answer_model``)."""
    from mcr.run.replies import answer_model, function_schema

    return function_schema("answer", answer_model(form, len(options or []), cite, library))


def cited_videos(call: ToolCall) -> list[str]:
    """The video each evidence item of an answer call names ("" where it names none), in the
    order ``read_answer`` reads the spans."""
    from mcr.run.replies import evidence_items

    arguments = call.arguments if isinstance(call.arguments, dict) else {}
    items = evidence_items(arguments.get("evidence"))
    return [str(item.get("video") or "").strip() if isinstance(item, dict) else "" for item in items]


def read_answer(call: ToolCall, duration: float | None) -> tuple[str, list[TimeSpan], str]:
    """``(answer, evidence, problem)`` from an answer call; ``problem`` is empty when it is well formed.

    With a problem in the evidence, the answer text still comes back (a last forced answer keeps it).
    """
    from pydantic import ValidationError

    from mcr.run.replies import ANSWER_KEYS, AnswerArguments, validation_problem

    try:
        args = AnswerArguments.model_validate(call.arguments, context={"duration": duration})
    except ValidationError as exc:
        text = next((call.arguments[k] for k in ANSWER_KEYS if k in call.arguments), None)
        text = "" if text is None else str(text).strip()
        return text, [], validation_problem(exc)
    return args.answer, list(args.evidence), ""


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


def interpret(
    form: str, text: str, options: list[str] | None = None, duration: float | None = None
) -> tuple[TypedAnswer, str]:
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
