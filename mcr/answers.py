"""Answer forms: free text, one of several options, a time span, or a count.

The model answers with the ``answer`` tool, whose arguments are a pydantic model
(``AnswerArguments``; its schema per form from ``answer_model``), built the way ``@tool``
builds a tool's. ``read_answer`` validates a call with it; ``interpret`` turns the answer
text into a typed value for the form, or says what is wrong with it.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from mcr.tools.schema import json_schema_of
from mcr.types import TimeSpan, TimeSpanError, ToolCall, format_time

ANSWER_NAMES = ("answer", "final_answer")
ANSWER_KEYS = ("answer", "final_answer", "text", "input", "response")
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


class Problem(ValueError):
    """What is wrong with a model's output, in a whole sentence shown to it as it is."""


MAX_EVIDENCE = 8
_DESCRIBED = {
    "text": "The final answer, in a sentence or a few words.",
    "choice": 'Exactly one of the options: its letter (e.g. "B").',
    "span": "The span when it happens, 'HH:MM:SS.s-HH:MM:SS.s'.",
    "count": "The number, in digits.",
}
_EVIDENCE = "Spans that support the answer, each 'HH:MM:SS.s-HH:MM:SS.s'."
EMPTY_ANSWER = 'the answer is empty; pass it as {"answer": "..."}'
Span = Annotated[TimeSpan, WithJsonSchema({"type": "string"})]  # a span the model writes as text


def _answer_field(form: str, choices: int = 0) -> Any:
    letters = {"enum": [chr(65 + i) for i in range(choices)]} if form == "choice" and choices else None
    return Field(validation_alias=AliasChoices(*ANSWER_KEYS), description=_DESCRIBED[form], json_schema_extra=letters)


def _evidence_field(cite: bool = False) -> Any:
    limits = {"maxItems": MAX_EVIDENCE, **({"minItems": 1} if cite else {})}
    return Field(description=_EVIDENCE, json_schema_extra=limits)


class AnswerArguments(BaseModel):
    """Commit the final answer to the question, citing the spans of the video that show it."""

    # The schema is what the model is asked to write. Reading tolerates the usual slips: the
    # answer under another key (``final_answer``, ``text`` ...) or not a string, evidence left
    # out, one span instead of a list, spans as seconds. Spans are clamped to the video's length
    # (``context={"duration": seconds}``). Whether the answer fits its form (one of the options,
    # a span, a number) is judged later, by ``interpret`` and the rules, not here.
    model_config = ConfigDict(extra="ignore")

    answer: str = _answer_field("text")
    evidence: list[Span] = _evidence_field()

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        """No answer is an empty answer; no evidence is none cited."""
        if isinstance(data, dict):
            if not any(k in data for k in ANSWER_KEYS):
                data = {**data, "answer": None}
            data = {"evidence": [], **data}
        return data

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_text(cls, value: Any) -> str:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise Problem(EMPTY_ANSWER)
        return (value if isinstance(value, str) else str(value)).strip()

    @field_validator("evidence", mode="before")
    @classmethod
    def _spans(cls, value: Any, info: ValidationInfo) -> list[TimeSpan]:
        duration = (info.context or {}).get("duration")
        raw = value if value is not None else []
        if not isinstance(raw, (list, tuple)) or (
            len(raw) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw)
        ):
            raw = [raw]  # one span: "a-b", {"start": .., "end": ..} or [a, b]
        spans = []
        for item in raw:
            try:
                span = TimeSpan.parse(item)
            except TimeSpanError as exc:
                raise Problem(f"evidence {item!r} is not a span ({exc})") from None
            if duration is not None and span.start > duration:
                raise Problem(f"evidence {span} starts after the video ends at {format_time(duration)}")
            spans.append(span.clamp(duration) if duration is not None else span)
        return spans


@lru_cache(maxsize=64)
def answer_model(form: str = "text", choices: int = 0, cite: bool = False) -> type[AnswerArguments]:
    """The answer tool's arguments for one form: the same reading, a schema that says more.

    ``choices`` options make the answer one of their letters; with ``cite`` at least one
    evidence span is required (a model under constrained decoding then cannot leave it out).
    """
    return create_model(
        f"{form.capitalize()}Answer",
        __base__=AnswerArguments,
        __doc__=AnswerArguments.__doc__,
        answer=(str, _answer_field(form, choices)),
        evidence=(list[Span], _evidence_field(cite)),
    )


def function_schema(name: str, model: type[BaseModel]) -> dict:
    """The OpenAI-style function schema of a typed output, as ``Tool.schema()`` makes a tool's:
    the model's docstring (its lines joined) describes it, its fields are the parameters."""
    parameters = json_schema_of(model)
    parameters.pop("description", None)
    paragraphs = inspect.cleandoc(model.__doc__ or "").split("\n\n")
    description = "\n\n".join(" ".join(p.split()) for p in paragraphs).strip()
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def answer_schema(form: str = "text", options: list[str] | None = None, cite: bool = False) -> dict:
    """The answer tool shown to the model (see ``answer_model``)."""
    return function_schema("answer", answer_model(form, len(options or []), cite))


def validation_problem(exc: ValidationError) -> str:
    """The first problem of a failed validation, in words the model can act on."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, Problem):
        return str(error)
    if error is not None:
        message = str(error)
    else:
        message = "missing required argument" if err.get("type") == "missing" else err.get("msg", "invalid")
    return f"{where}: {message}" if where else message


def read_answer(call: ToolCall, duration: float | None) -> tuple[str, list[TimeSpan], str]:
    """``(answer, evidence, problem)`` from an answer call; ``problem`` is empty when it is well formed.

    With a problem in the evidence, the answer text still comes back (a last forced answer keeps it).
    """
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
