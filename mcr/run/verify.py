"""Checking an answer before it is committed: rules first, then the model over the cited spans.

The model's reply is a ``mcr.run.replies.VerdictReply`` (a pydantic model whose JSON schema,
``VERDICT_SCHEMA``, holds a constrained reply); a check's outcome, by rules or by the model, is a ``Verdict``.
``AnswerChecker`` is what a run holds to read, check and settle the answers its model proposes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator, Sequence

from mcr.models.parse import json_values, split_reasoning
from mcr.models.phases import said
from mcr.quoting import DATA_RULE, quote
from mcr.run.answers import TypedAnswer, cited_videos, interpret, read_answer
from mcr.run.context import Context
from mcr.run.events import AnswerProposed, Event, Verification
from mcr.run.overview import memory_lines
from mcr.types import Frames, FramesPart, Message, TextPart, TimeSpan, ToolCall, format_time

if TYPE_CHECKING:
    from mcr.run.policy import Policy
    from mcr.tools import ToolContext

VERDICTS = ("supported", "contradicted", "insufficient")

VERIFY_SYSTEM = (
    """You check whether an answer about a video is supported by the video.
You are shown the question, the proposed answer and the frames (with their times) and any transcript
of the spans the answer cites. Judge only from what is shown. Reply with one JSON object:
{"verdict": "supported" | "contradicted" | "insufficient", "confidence": 0.0-1.0, "reason": "..."}
"""
    + DATA_RULE
)


@dataclass
class Verdict:
    source: str  # "rules" | "model"
    verdict: str  # "pass" | "fail" for rules; supported | contradicted | insufficient for the model
    confidence: float = 1.0
    reason: str = ""
    checks: list[str] = field(default_factory=list)
    min_confidence: float = 0.0  # a "supported" verdict passes only this sure (Policy.min_confidence)
    support: list[dict] = field(default_factory=list)  # per cited span: the frames and readings behind it

    @property
    def passed(self) -> bool:
        if self.verdict == "supported":
            return self.confidence >= self.min_confidence
        return self.verdict == "pass"

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "verdict": self.verdict,
            "confidence": round(self.confidence, 3),
            "reason": self.reason,
            "checks": list(self.checks),
            "support": [dict(s) for s in self.support],
        }


def around(span: TimeSpan, within_s: float) -> TimeSpan:
    """``span`` widened by ``within_s`` on each side (not before 0): where a look still counts for it."""
    return TimeSpan(max(0.0, span.start - within_s), span.end + within_s)


@dataclass
class Support:
    """What a run perceived, for the rule that a cited span was looked at: the times of the
    frames shown to the model, and the spans a tool or memory read (transcript or on-screen
    lines, captions, an investigation), each ``{"source": ..., "span": [start, end]}``."""

    frames: list[float] = field(default_factory=list)
    readings: list[dict] = field(default_factory=list)

    def of(self, span: TimeSpan, within_s: float) -> dict:
        """What supports ``span``: frames inside it or within ``within_s`` of it, readings overlapping that."""
        wide = around(span, within_s)
        frames = sorted({round(float(t), 3) for t in self.frames if wide.contains(t)})
        readings, keys = [], set()
        for r in self.readings:
            key = (r["source"], tuple(r["span"]))
            if key not in keys and wide.overlaps(TimeSpan(*r["span"])):
                keys.add(key)
                readings.append(dict(r))
        return {"span": span.to_list(), "frames": frames, "readings": readings}

    def nearest(self, span: TimeSpan) -> str:
        """The frames seen nearest to ``span``, before and after it, in words."""
        before = max((t for t in self.frames if t < span.start), default=None)
        after = min((t for t in self.frames if t > span.end), default=None)
        near = [format_time(t) for t in (before, after) if t is not None]
        if not near:
            return "no frames were seen"
        if len(near) == 1:
            return f"the nearest frame seen was at {near[0]}"
        return f"the nearest frames seen were at {near[0]} and {near[1]}"


READ_KINDS = ("transcript", "ocr", "caption")  # memory the index makes by perceiving a span


def perceived(context: Context) -> Support:
    """What a context's model perceived: every frame shown to it, and the spans its reading
    tools read; an investigation's entry holds its child's frames (``seen_at``) and readings."""
    seen = Support(list(context.frames_seen()))
    for e in context.entries:
        if e.kind == "tool_result" and not e.data.get("is_error"):
            seen.frames += e.data.get("seen_at", [])
            seen.readings += [{"source": e.data.get("name", ""), "span": list(s)} for s in e.data.get("read", [])]
    return seen


def check_rules(
    answer: TypedAnswer,
    problem: str,
    evidence: Sequence[TimeSpan],
    duration: float | None,
    seen: Support,
    require_evidence: bool,
    within_s: float = 1.0,
) -> Verdict:
    """The answer fits its form; cited spans lie inside the video and were looked at: a frame
    shown to the model lies inside each or within ``within_s`` of it, or a reading overlaps that.

    The verdict's ``support`` says, for each cited span, which frames and readings count for it.
    """
    checks, failures, support = [], [], []
    if problem:
        failures.append(problem)
    else:
        checks.append(f"answer fits the {answer.form} form")
    if require_evidence and duration is not None and not evidence:
        failures.append("cite the spans of the video that show the answer (evidence)")
    for span in evidence:
        found = seen.of(span, within_s)
        support.append(found)
        if duration is not None and span.end > duration + 1e-6:
            failures.append(f"evidence {span} runs past the end of the video ({format_time(duration)})")
        elif not found["frames"] and not found["readings"]:
            failures.append(f"evidence {span} was not looked at: {seen.nearest(span)}; inspect it first")
        else:
            what = [f"{len(found['frames'])} frames"] if found["frames"] else []
            what += sorted({r["source"] for r in found["readings"]})
            checks.append(f"evidence {span} was observed ({', '.join(what)})")
    return Verdict("rules", "fail" if failures else "pass", 1.0, "; ".join(failures), checks, support=support)


def model_check_messages(
    question: str,
    options: Sequence[str],
    answer: str,
    evidence: Sequence[TimeSpan],
    frames: Sequence[Frames],
    transcripts: Sequence[str],
) -> list[Message]:
    lines = [f"Question: {question}"]
    if options:
        lines += [f"{chr(65 + i)}. {o}" for i, o in enumerate(options)]
    lines.append(f"Proposed answer: {answer}")
    lines.append("Cited spans: " + (", ".join(str(s) for s in evidence) or "none"))
    parts: list[Any] = [TextPart("\n".join(lines))]
    for span, fr, text in zip(evidence, frames, transcripts):
        parts.append(TextPart(f"Span {span}:" + (" transcript:\n" + quote(text, "transcript") if text else "")))
        if fr is not None and len(fr):
            parts.append(FramesPart(fr))
    parts.append(TextPart(said("verify", "Is the answer supported by these spans? Reply with the JSON verdict only.")))
    return [Message("system", VERIFY_SYSTEM), Message("user", parts)]


def parse_verdict(text: str, min_confidence: float = 0.0) -> Verdict:
    """The model's verdict, read leniently; unreadable replies count as insufficient.

    The first JSON object holding a ``verdict`` (found with balanced brackets, so a reason
    holding braces or a nested object does not cut it short) is read with ``VerdictReply``;
    failing that, the one verdict word the reply names.
    """
    from pydantic import ValidationError

    from mcr.run.replies import MAX_REASON, VerdictReply

    _, rest = split_reasoning(text or "")
    blob = next((obj for obj in _objects(json_values(rest)) if "verdict" in obj), None)
    if blob is not None:
        try:
            reply = VerdictReply.model_validate(blob)
        except ValidationError:
            pass
        else:
            return Verdict("model", reply.verdict, reply.confidence, reply.reason, min_confidence=min_confidence)
    words = [v for v in VERDICTS if re.search(rf"\b{v}\b", rest.lower())]
    if len(words) == 1:
        return Verdict("model", words[0], 0.5, rest.strip()[:MAX_REASON], min_confidence=min_confidence)
    return Verdict(
        "model",
        "insufficient",
        0.0,
        f"the verdict could not be read: {rest.strip()[:200]!r}",
        min_confidence=min_confidence,
    )


def _objects(values: list[Any]) -> Iterator[dict]:
    """The dicts among JSON values, and those inside a top-level list."""
    for value in values:
        if isinstance(value, dict):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, dict))


def feedback_for(verdict: Verdict) -> str:
    """What the model reads after a failed check."""
    if verdict.source == "rules":
        return f"Your answer was not accepted: {verdict.reason}. Fix this, then answer again."
    if verdict.verdict == "contradicted":
        return (
            f"A check of the cited spans contradicts your answer: {verdict.reason} "
            "Look again at the relevant spans and revise the answer."
        )
    if verdict.verdict == "supported":  # but not sure enough
        return (
            f"A check of the cited spans supports your answer only with confidence {verdict.confidence:.2f}, "
            f"below the {verdict.min_confidence:.2f} needed ({verdict.reason or 'no reason given'}). "
            "Gather more evidence (inspect other spans, or investigate one), then answer again."
        )
    return (
        f"A check of the cited spans could not confirm your answer ({verdict.reason or 'not enough evidence'}). "
        "Gather more evidence (inspect other spans, or investigate one), then answer again."
    )


@dataclass
class Commit:
    """A proposed answer that is settled: the run keeps it and ends with ``status``."""

    text: str
    evidence: list[TimeSpan]
    typed: TypedAnswer | None
    status: str
    videos: list[str] = field(default_factory=list)  # a library run's: the video of each evidence span


@dataclass
class GiveUp:
    """The run ends with the best answer so far: the budget is spent, or the checks kept failing (``failed``)."""

    failed: bool = False


# The run's model call: ask(phase, tools, messages, **options) yields events and returns a ModelOutput.
Ask = Callable[..., Generator[Event, None, Any]]


@dataclass
class AnswerChecker:
    """The answers of one run: each proposed answer is read, checked by rules and by the model
    over the cited spans (``ask``), and then committed, sent back as feedback, or given up on.
    It keeps the best answer so far and every verdict, and writes its entries into ``context``."""

    context: Context
    policy: Policy
    tools: ToolContext  # the run's video, memory and frame size
    question: str
    choices: list[str]
    form: str
    ask: Ask
    rounds: int = field(default=0, init=False)
    best: tuple[str, list[TimeSpan], TypedAnswer | None, list[str]] | None = field(default=None, init=False)
    verdicts: list[dict] = field(default_factory=list, init=False)  # each with its round, for the result

    @property
    def video(self) -> Any:
        return self.tools.video

    @property
    def library(self) -> Any:
        return self.tools.library

    @property
    def duration(self) -> float | None:
        return self.video.duration if self.video is not None else None

    @property
    def cite(self) -> bool:
        """Whether an answer must cite the spans that show it."""
        looks = self.video is not None or self.library is not None
        return bool(self.policy.verify and self.policy.require_evidence and looks)

    def propose(
        self, call: ToolCall, ids: dict, forced: bool, stop_reason: str | None = None
    ) -> Generator[Event, None, Commit | GiveUp | None]:
        """Check the answer ``call`` proposes; None: the run goes on (with feedback in the context).
        ``forced``: the run's last call; ``stop_reason``: the spent budget that forced it."""
        step = ids["step"]
        text, evidence, problem = read_answer(call, self.duration)
        videos = cited_videos(call) if self.library is not None and not problem else []
        typed, form_problem = interpret(self.form, text, self.choices, self.duration) if text else (None, "")
        yield AnswerProposed(
            **ids,
            call_id=call.id,
            answer=text,
            evidence=[s.to_list() for s in evidence],
            accepted=not problem,
            reason=problem,
        )
        if problem:
            if call.id:
                self.context.add_tool_result(
                    step, call, f"error: answer not accepted: {problem}. Fix it and answer again.", is_error=True
                )
            else:
                self.context.add("feedback", f"Your answer was not accepted: {problem}.", step)
            if not forced:
                return None
            if text and self.best is None:  # the last chance: keep the answer, without the broken evidence
                self.best = (text, [], interpret(self.form, text, self.choices, self.duration)[0], [])
            return GiveUp()
        if (typed is not None and not form_problem) or self.best is None:
            self.best = (text, evidence, typed, videos)
        if not self.policy.verify:
            status = (stop_reason or "answered") if forced else "answered"
            return self._commit(text, evidence, typed, call, step, status, videos=videos)
        self.rounds += 1
        verdicts = [self._rules(typed, form_problem, evidence, videos)]
        yield self._record(verdicts[-1], ids)
        looks = self.video is not None or self.library is not None
        if verdicts[-1].passed and self.policy.model_check and looks and evidence:
            verdicts.append((yield from self.model_check(text, evidence, videos)))
            yield self._record(verdicts[-1], ids)
        if verdicts[-1].passed:
            return self._commit(text, evidence, typed, call, step, "verified", verdicts, videos)
        feedback = feedback_for(verdicts[-1])
        if call.id:  # the call's result comes first, so the turn stays whole in the view
            self.context.add_tool_result(step, call, "error: " + feedback, is_error=True)
        self._note(verdicts, step)
        if not call.id:
            self.context.add("feedback", feedback, step)
        if forced:
            return GiveUp()
        if self.rounds >= self.policy.max_verify_rounds:
            return GiveUp(failed=True)
        return None

    def _commit(
        self, text: str, evidence: list[TimeSpan], typed: TypedAnswer | None, call: ToolCall, step: int,
        status: str, verdicts: Sequence[Verdict] = (), videos: Sequence[str] = (),
    ) -> Commit:  # fmt: skip
        if call.id:
            self.context.add_tool_result(step, call, "answer committed.")
        self._note(verdicts, step)
        cited = {"videos": list(videos)} if videos else {}
        self.context.add("answer", text, step, evidence=[s.to_list() for s in evidence], **cited)
        return Commit(text, evidence, typed, status, list(videos))

    def _rules(
        self, typed: TypedAnswer | None, form_problem: str, evidence: list[TimeSpan], videos: Sequence[str] = ()
    ) -> Verdict:
        typed = typed or TypedAnswer(self.form, "")
        seen = self.seen(evidence)
        return check_rules(typed, form_problem, evidence, self.duration, seen, self.cite, self.policy.seen_within_s)

    def seen(self, evidence: list[TimeSpan], video: Any = None, seen: Support | None = None) -> Support:
        """What the run perceived (``seen``; by default every frame shown to the model, the spans
        reading tools and investigations read), and near the cited spans memory made by
        perception of ``video`` (the run's by default): the index's transcript, on-screen text
        and captions, and frames earlier runs were shown."""
        seen = perceived(self.context) if seen is None else seen
        memory = self.tools.memory
        video = video if video is not None else self.video
        if memory is None or video is None:
            return seen
        for span in evidence:
            wide = around(span, self.policy.seen_within_s)
            for e in memory.store.query(video.id, kind=READ_KINDS + ("observation",), span=wide):
                if e.kind == "observation":
                    seen.frames += [float(t) for t in e.data.get("seen_at", [])]
                elif e.source.startswith("index:") and e.span is not None:
                    seen.readings.append({"source": f"memory:{e.kind}", "span": e.span.to_list(), "ref": e.ref})
        return seen

    def model_check(
        self, answer: str, evidence: list[TimeSpan], videos: Sequence[str] = ()
    ) -> Generator[Event, None, Verdict]:
        """The model's judgement of the answer from the frames and transcript of the cited spans
        (in a library run, each in the video it names)."""
        frames, transcripts = [], []
        for i, span in enumerate(evidence):
            video = self.library.find(videos[i]) if self.library is not None else self.video
            frames.append(
                video.frames(
                    span,
                    fps=self.policy.verify_fps,
                    max_frames=self.policy.verify_frames,
                    max_pixels=self.tools.max_pixels,
                )
            )
            transcripts.append(" ".join(memory_lines(self.tools.memory, video.id, "transcript", span, 20)))
        messages = model_check_messages(self.question, self.choices, answer, evidence, frames, transcripts)
        from mcr.run.replies import verdict_schema  # pydantic loads when a run first checks

        output = yield from self.ask("verify", None, messages, response_schema=verdict_schema())
        verdict = parse_verdict(output.text or output.reasoning, self.policy.min_confidence)
        verdict.support = [  # what the model was shown of each cited span
            {
                "span": span.to_list(),
                "frames": [round(float(t), 3) for t in (fr.timestamps if fr is not None else [])],
                "readings": [{"source": "memory:transcript", "span": span.to_list()}] if text else [],
            }
            for span, fr, text in zip(evidence, frames, transcripts)
        ]
        return verdict

    def _record(self, verdict: Verdict, ids: dict) -> Verification:
        self.verdicts.append({**verdict.to_dict(), "round": self.rounds})
        return Verification(
            **ids,
            round=self.rounds,
            source=verdict.source,
            verdict=verdict.verdict,
            confidence=verdict.confidence,
            reason=verdict.reason,
            checks=verdict.checks,
            passed=verdict.passed,
            support=[dict(s) for s in verdict.support],
        )

    def _note(self, verdicts: Sequence[Verdict], step: int) -> None:
        for v in verdicts:
            self.context.add(
                "verification",
                f"{v.source} check: {v.verdict}" + (f" ({v.reason})" if v.reason else ""),
                step,
                confidence=v.confidence,
            )


def __getattr__(name: str) -> Any:
    # The verdict's schema loads with pydantic, when first asked for.
    if name == "VERDICT_SCHEMA":
        from mcr.run.replies import verdict_schema

        return verdict_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
