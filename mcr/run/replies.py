"""Typed outputs: what the model writes when it answers, investigates or judges an answer, as
pydantic models built the way ``@tool`` builds a tool's arguments (``mcr.tools.schema``).

``AnswerArguments`` (its schema per answer form from ``answer_model``), ``InvestigateArguments``
and ``VerdictReply``: each validates a reply leniently, as a model writes it, and gives the
JSON schema a constrained decoder or a server's ``response_format`` holds the reply to.
This module is imported when a reply is first read or a schema first asked for, so that
``import mcr`` does not load pydantic.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Annotated, Any, Literal

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
from mcr.types import TimeSpan, TimeSpanError, format_time

ANSWER_KEYS = ("answer", "final_answer", "text", "input", "response")
MAX_REASON = 300


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
_CITED = "Spans that support the answer, each with the video it is in."
EMPTY_ANSWER = 'the answer is empty; pass it as {"answer": "..."}'
Span = Annotated[TimeSpan, WithJsonSchema({"type": "string"})]  # a span the model writes as text
CitedSpan = Annotated[  # in a library run: a span and the video it is in
    TimeSpan,
    WithJsonSchema(
        {
            "type": "object",
            "properties": {
                "video": {"type": "string", "description": "The video's name."},
                "span": {"type": "string", "description": "'HH:MM:SS.s-HH:MM:SS.s'"},
            },
            "required": ["video", "span"],
        }
    ),
]


def _answer_field(form: str, choices: int = 0) -> Any:
    letters = {"enum": [chr(65 + i) for i in range(choices)]} if form == "choice" and choices else None
    return Field(validation_alias=AliasChoices(*ANSWER_KEYS), description=_DESCRIBED[form], json_schema_extra=letters)


def _evidence_field(cite: bool = False, library: bool = False) -> Any:
    limits = {"maxItems": MAX_EVIDENCE, **({"minItems": 1} if cite else {})}
    return Field(description=_CITED if library else _EVIDENCE, json_schema_extra=limits)


def evidence_items(value: Any) -> list[Any]:
    """The cited items of an answer's ``evidence``, as a model writes it: a list, or one span alone
    (``"a-b"``, ``{"start": .., "end": ..}``, ``{"video": .., "span": ..}`` or ``[a, b]``)."""
    raw = value if value is not None else []
    if not isinstance(raw, (list, tuple)) or (
        len(raw) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw)
    ):
        raw = [raw]
    return list(raw)


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
        spans = []
        for item in evidence_items(value):
            if isinstance(item, dict) and "span" in item:  # a library run's {"video": .., "span": ..}
                item = item["span"]
            try:
                span = TimeSpan.parse(item)
            except TimeSpanError as exc:
                raise Problem(f"evidence {item!r} is not a span ({exc})") from None
            if duration is not None and span.start > duration:
                raise Problem(f"evidence {span} starts after the video ends at {format_time(duration)}")
            spans.append(span.clamp(duration) if duration is not None else span)
        return spans


@lru_cache(maxsize=64)
def answer_model(
    form: str = "text", choices: int = 0, cite: bool = False, library: bool = False
) -> type[AnswerArguments]:
    """The answer tool's arguments for one form: the same reading, a schema that says more.

    ``choices`` options make the answer one of their letters; with ``cite`` at least one
    evidence span is required (a model under constrained decoding then cannot leave it out);
    in a ``library`` run each evidence item names its video.
    """
    return create_model(
        f"{form.capitalize()}Answer",
        __base__=AnswerArguments,
        __doc__=AnswerArguments.__doc__,
        answer=(str, _answer_field(form, choices)),
        evidence=(list[CitedSpan] if library else list[Span], _evidence_field(cite, library)),
    )


def function_schema(name: str, model: type[BaseModel]) -> dict:
    """The OpenAI-style function schema of a typed output, as ``Tool.schema()`` makes a tool's:
    the model's docstring (its lines joined) describes it, its fields are the parameters."""
    parameters = json_schema_of(model)
    parameters.pop("description", None)
    paragraphs = inspect.cleandoc(model.__doc__ or "").split("\n\n")
    description = "\n\n".join(" ".join(p.split()) for p in paragraphs).strip()
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


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


class InvestigateArguments(BaseModel):
    """Hand a sub-question about one span to a focused sub-agent that looks at that span
    with denser frames and reports its conclusion."""

    # Extra keys are ignored; the span is clamped to the video (``context={"duration": seconds}``).
    model_config = ConfigDict(extra="ignore")

    span: TimeSpan = Field(description="The span to investigate, 'HH:MM:SS.s-HH:MM:SS.s'.")
    question: str = Field(description="The sub-question to answer about that span.")

    @field_validator("span", mode="after")
    @classmethod
    def _inside_the_video(cls, span: TimeSpan, info: ValidationInfo) -> TimeSpan:
        duration = (info.context or {}).get("duration")
        return span.clamp(duration) if duration is not None else span

    @field_validator("question", mode="before")
    @classmethod
    def _question(cls, value: Any) -> str:
        text = str(value or "").strip()
        if not text:
            raise Problem("question is empty")
        return text


@lru_cache(maxsize=1)
def investigate_schema() -> dict:
    """The ``investigate`` tool shown to the model."""
    return function_schema("investigate", InvestigateArguments)


class VerdictReply(BaseModel):
    # What the model replies when it checks an answer; its JSON schema holds a constrained
    # reply. Read leniently, as a model writes it: the verdict in any case, a confidence that
    # is missing or not a number as 0.5 and one outside 0-1 clamped, a missing reason as "".
    model_config = ConfigDict(extra="ignore")

    verdict: Literal["supported", "contradicted", "insufficient"]
    confidence: float = Field(ge=0, le=1)
    reason: str = Field(json_schema_extra={"maxLength": MAX_REASON})  # asked for; a longer one is kept

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        return {"confidence": 0.5, "reason": "", **data} if isinstance(data, dict) else data

    @field_validator("verdict", mode="before")
    @classmethod
    def _word(cls, value: Any) -> str:
        return str(value if value is not None else "").strip().lower()

    @field_validator("confidence", mode="before")
    @classmethod
    def _clamped(cls, value: Any) -> float:
        try:
            value = float(value)
        except (TypeError, ValueError):
            return 0.5
        return min(1.0, max(0.0, value))

    @field_validator("reason", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return str(value if value is not None else "").strip()


@lru_cache(maxsize=1)
def verdict_schema() -> dict:
    """The JSON schema of a verdict reply."""
    return json_schema_of(VerdictReply)
