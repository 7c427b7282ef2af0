"""Checking a proposed answer inside a run: read it, check it by rules and by the model over
the cited spans, and commit it, send feedback, or end the run.

``AnswerChecking`` is one part of the loop's run (``mcr.run.loop``), kept in a module of its own:
it uses the run's context, policy, video and tools, and its ``call``, ``commit`` and
``final_status``.
"""

from __future__ import annotations

from typing import Generator

from mcr.run.answers import TypedAnswer, interpret, read_answer
from mcr.run.context import Context
from mcr.run.events import AnswerProposed, Event, Verification
from mcr.run.overview import memory_lines
from mcr.run.result import RunResult
from mcr.run.verify import Support, Verdict, around, check_rules, feedback_for, model_check_messages, parse_verdict
from mcr.types import TimeSpan, ToolCall

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


class AnswerChecking:
    """The answering part of a run (mixed into the loop's run)."""

    def propose(self, call: ToolCall, forced: bool) -> Generator[Event, None, RunResult | None]:
        step = self.out.steps
        text, evidence, problem = read_answer(call, self.duration)
        typed, form_problem = interpret(self.form, text, self.choices, self.duration) if text else (None, "")
        yield AnswerProposed(
            **self.ids(),
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
                self.best = (text, [], interpret(self.form, text, self.choices, self.duration)[0])
            return (yield from self.final_status(True))
        if typed is not None and not form_problem:
            self.best = (text, evidence, typed)
        elif self.best is None:
            self.best = (text, evidence, typed)
        if not self.policy.verify:
            status = (self._stop_reason or "answered") if forced else "answered"
            return (yield from self.commit(text, evidence, typed, call, status))
        self.verify_rounds += 1
        verdicts = [self._rules(typed, form_problem, evidence)]
        yield self._record(verdicts[-1])
        if verdicts[-1].passed and self.policy.model_check and self.video is not None and evidence:
            verdicts.append((yield from self.model_check(text, evidence)))
            yield self._record(verdicts[-1])
        verdict = verdicts[-1]
        if verdict.passed:
            return (yield from self.commit(text, evidence, typed, call, "verified", verdicts))
        feedback = feedback_for(verdict)
        if call.id:  # the call's result comes first, so the turn stays whole in the view
            self.context.add_tool_result(step, call, "error: " + feedback, is_error=True)
        self._note_verdicts(verdicts)
        if not call.id:
            self.context.add("feedback", feedback, step)
        if forced:
            return (yield from self.final_status(True))
        if self.verify_rounds >= self.policy.max_verify_rounds:
            return (yield from self.final_status(False, failed=True))
        return None

    def _rules(self, typed: TypedAnswer | None, form_problem: str, evidence: list[TimeSpan]) -> Verdict:
        return check_rules(
            typed or TypedAnswer(self.form, ""),
            form_problem,
            evidence,
            self.duration,
            self.seen(evidence),
            self.cite,
            self.policy.seen_within_s,
        )

    def seen(self, evidence: list[TimeSpan]) -> Support:
        """What this run perceived: every frame shown to the model, the spans reading tools and
        investigations read, and (near the cited spans) memory made by perception: the index's
        transcript, on-screen text and captions, and frames earlier runs were shown."""
        seen = perceived(self.context)
        memory = self.tool_ctx.memory
        if memory is None or self.video is None:
            return seen
        for span in evidence:
            wide = around(span, self.policy.seen_within_s)
            for e in memory.store.query(self.video.id, kind=READ_KINDS + ("observation",), span=wide):
                if e.kind == "observation":
                    seen.frames += [float(t) for t in e.data.get("seen_at", [])]
                elif e.source.startswith("index:") and e.span is not None:
                    seen.readings.append({"source": f"memory:{e.kind}", "span": e.span.to_list(), "ref": e.ref})
        return seen

    def model_check(self, answer: str, evidence: list[TimeSpan]) -> Generator[Event, None, Verdict]:
        frames, transcripts = [], []
        for span in evidence:
            frames.append(
                self.video.frames(
                    span,
                    fps=self.policy.verify_fps,
                    max_frames=self.policy.verify_frames,
                    max_pixels=self.tool_ctx.max_pixels,
                )
            )
            transcripts.append(" ".join(memory_lines(self.tool_ctx.memory, self.video.id, "transcript", span, 20)))
        messages = model_check_messages(self.question, self.choices, answer, evidence, frames, transcripts)
        from mcr.run.replies import verdict_schema

        output = yield from self.call("verify", None, messages, response_schema=verdict_schema())
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

    def _record(self, verdict: Verdict) -> Verification:
        self.out.verdicts.append({**verdict.to_dict(), "round": self.verify_rounds})
        return Verification(
            **self.ids(),
            round=self.verify_rounds,
            source=verdict.source,
            verdict=verdict.verdict,
            confidence=verdict.confidence,
            reason=verdict.reason,
            checks=verdict.checks,
            passed=verdict.passed,
            support=[dict(s) for s in verdict.support],
        )

    def _note_verdicts(self, verdicts: list[Verdict]) -> None:
        for v in verdicts:
            self.context.add(
                "verification",
                f"{v.source} check: {v.verdict}" + (f" ({v.reason})" if v.reason else ""),
                self.out.steps,
                confidence=v.confidence,
            )
