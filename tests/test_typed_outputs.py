"""Typed outputs (the answer, investigate and verdict models), the one ``RunResult`` from the loop
to the caller, and subscribers that fail without ending the run."""

import json
import logging
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from mcr import Agent
from mcr.models.constrain import Bounds, bounded_schema, span_pattern
from mcr.run.answers import answer_schema, read_answer
from mcr.run.events import RunFinished, Verification, event_from_dict
from mcr.run.policy import INVESTIGATE_SCHEMA, Policy
from mcr.run.replies import InvestigateArguments, validation_problem
from mcr.run.result import RunResult
from mcr.run.testing import ScriptedModel, answer, verdict
from mcr.run.trace import read_trace
from mcr.run.verify import VERDICT_SCHEMA, Verdict, feedback_for, parse_verdict
from mcr.types import TimeSpan, ToolCall, Usage

OPTIONS = ["a car race", "boats on water", "a cooking show"]
EVIDENCE = {
    "type": "array",
    "items": {"type": "string"},
    "maxItems": 8,
    "description": "Spans that support the answer, each 'HH:MM:SS.s-HH:MM:SS.s'.",
}


def answer_tool(answer_prop: dict, evidence: dict = EVIDENCE) -> dict:
    """The answer tool as it was written by hand before it was a pydantic model."""
    return {
        "type": "function",
        "function": {
            "name": "answer",
            "description": "Commit the final answer to the question, citing the spans of the video that show it.",
            "parameters": {
                "type": "object",
                "properties": {"answer": answer_prop, "evidence": evidence},
                "required": ["answer", "evidence"],
                "additionalProperties": False,
            },
        },
    }


def test_output_schemas_are_the_ones_the_model_saw_before():
    assert answer_schema() == answer_tool(
        {"type": "string", "description": "The final answer, in a sentence or a few words."}
    )
    assert answer_schema("choice", OPTIONS, cite=True) == answer_tool(
        {
            "type": "string",
            "description": 'Exactly one of the options: its letter (e.g. "B").',
            "enum": ["A", "B", "C"],
        },
        {**EVIDENCE, "minItems": 1},
    )
    assert answer_schema("count") == answer_tool({"type": "string", "description": "The number, in digits."})
    assert INVESTIGATE_SCHEMA == {
        "type": "function",
        "function": {
            "name": "investigate",
            "description": (
                "Hand a sub-question about one span to a focused sub-agent that looks at that span "
                "with denser frames and reports its conclusion."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "span": {"type": "string", "description": "The span to investigate, 'HH:MM:SS.s-HH:MM:SS.s'."},
                    "question": {"type": "string", "description": "The sub-question to answer about that span."},
                },
                "required": ["span", "question"],
                "additionalProperties": False,
            },
        },
    }
    assert VERDICT_SCHEMA == {
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["supported", "contradicted", "insufficient"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "reason": {"type": "string", "maxLength": 300},
        },
        "required": ["verdict", "confidence", "reason"],
        "additionalProperties": False,
    }


def test_constrained_schemas_keep_cited_evidence_and_spans_inside_the_video():
    bounds = Bounds(max_time=6.0)
    cited = bounded_schema(answer_schema("span", None, cite=True)["function"]["parameters"], bounds)
    assert cited["properties"]["evidence"]["minItems"] == 1
    assert cited["properties"]["evidence"]["items"]["pattern"] == span_pattern(6.0)
    assert cited["properties"]["answer"]["pattern"] == span_pattern(6.0)
    jsonschema.validate({"answer": "00:00:01-00:00:02", "evidence": ["00:00:01.0-00:00:05.5"]}, cited)
    for slip in (
        {"answer": "00:00:01-00:00:02", "evidence": []},
        {"answer": "00:00:01-00:00:02", "evidence": ["00:00:01-00:00:07"]},
        {"answer": "00:00:01-00:00:02", "evidence": ["00:00:01-00:00:02"], "why": "x"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(slip, cited)
    free = bounded_schema(answer_schema("text", None, cite=False)["function"]["parameters"], bounds)
    jsonschema.validate({"answer": "boats", "evidence": []}, free)
    probe = bounded_schema(INVESTIGATE_SCHEMA["function"]["parameters"], bounds)
    assert probe["properties"]["span"]["pattern"] == span_pattern(6.0)


def test_answer_calls_are_read_leniently_and_their_problems_named():
    def read(args, duration=10.0):
        return read_answer(ToolCall("answer", args, "c1"), duration)

    assert read({"answer": " boats ", "evidence": ["00:00:01-00:00:03"]}) == ("boats", [TimeSpan(1, 3)], "")
    assert read({"final_answer": 3, "evidence": "2-4"}) == ("3", [TimeSpan(2, 4)], "")  # another key, one span
    assert read({"answer": "x", "evidence": [2, 4]}) == ("x", [TimeSpan(2, 4)], "")
    assert read({"answer": "x"}) == ("x", [], "")  # no evidence: none cited (the rules decide)
    assert read({"answer": "x", "evidence": ["00:00:08-00:00:30"]}) == ("x", [TimeSpan(8, 10)], "")  # clamped
    assert read({"answer": "  "})[2] == read({})[2] == 'the answer is empty; pass it as {"answer": "..."}'
    text, spans, problem = read({"answer": "x", "evidence": ["00:00:50-00:01:00"]})
    assert (text, spans) == ("x", []) and problem.startswith("evidence 00:00:50.0-00:01:00.0 starts after the video")
    assert read({"answer": "x", "evidence": ["soon"]})[2].startswith("evidence 'soon' is not a span")


def test_investigate_arguments_are_validated_like_a_tools():
    args = InvestigateArguments.model_validate(
        {"span": "00:00:02-00:00:30", "question": " Who? ", "x": 1}, context={"duration": 12.5}
    )
    assert (args.span, args.question) == (TimeSpan(2, 12.5), "Who?")

    def problem(arguments):
        with pytest.raises(ValidationError) as err:
            InvestigateArguments.model_validate(arguments, context={"duration": 12.5})
        return validation_problem(err.value)

    assert problem({"span": "later", "question": "Who?"}).startswith("span: not a span: 'later'")
    assert problem({"span": "1-2", "question": "  "}) == "question is empty"
    assert problem({"question": "Who?"}) == "span: missing required argument"


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            '{"verdict": "supported", "confidence": 0.8, "reason": "a {boat} at 00:04"}',
            ("supported", 0.8, "a {boat} at 00:04"),
        ),  # braces inside the reason do not cut the object short
        (
            'Checked.\n```json\n{"verdict": "Contradicted", "details": {"seen": "water"}, "confidence": 0.7}\n```',
            ("contradicted", 0.7, ""),
        ),  # a nested object; the verdict's case; a missing reason
        (
            '<think>{"verdict": "supported"}</think>[{"verdict": "insufficient", "confidence": 3, "reason": "dark"}]',
            ("insufficient", 1.0, "dark"),
        ),  # reasoning left out; a list holding the object; confidence clamped
        ("{'verdict': 'supported', 'confidence': 'high', 'reason': None}", ("supported", 0.5, "")),
        ("The answer is supported by the frames.", ("supported", 0.5, "The answer is supported by the frames.")),
        (
            '{"verdict": "maybe"} I would say contradicted.',
            ("contradicted", 0.5, '{"verdict": "maybe"} I would say contradicted.'),
        ),
    ],
)
def test_verdicts_are_read_with_balanced_json(text, expected):
    got = parse_verdict(text)
    assert (got.source, got.verdict, got.confidence, got.reason) == ("model", *expected)


def test_an_unreadable_verdict_is_insufficient():
    got = parse_verdict("I cannot tell {")
    assert got.verdict == "insufficient" and got.confidence == 0.0 and not got.passed


def test_min_confidence_decides_whether_a_supported_verdict_passes():
    low = parse_verdict('{"verdict": "supported", "confidence": 0.3, "reason": "maybe"}', min_confidence=0.5)
    high = parse_verdict('{"verdict": "supported", "confidence": 0.9, "reason": "clear"}', min_confidence=0.5)
    assert not low.passed and high.passed
    assert parse_verdict('{"verdict": "supported", "confidence": 0.3}', min_confidence=0.2).passed
    assert "only with confidence 0.30, below the 0.50 needed (maybe)" in feedback_for(low)
    assert Verdict("rules", "pass", 1.0, min_confidence=0.99).passed  # rules are not graded


def test_a_low_confidence_supported_verdict_does_not_pass_a_run(tmp_path, short_video):
    script = [
        answer("B", evidence=["00:00:04-00:00:08"]),  # seen in the overview: passes the rules
        verdict("supported", 0.3, "perhaps boats"),
        answer("B", evidence=["00:00:04-00:00:08"]),
        verdict("supported", 0.9, "boats are visible"),
    ]
    policy = Policy(plan=False, reflect_every=0, min_confidence=0.5)
    model = ScriptedModel(list(script))
    result = Agent(model=model, policy=policy, memory=False, trace_dir=tmp_path).run(
        short_video, "What is shown?", options=OPTIONS
    )
    assert result.status == "verified" and result.value == 1
    assert [(v["verdict"], v["confidence"]) for v in result.verdicts] == [
        ("pass", 1.0),
        ("supported", 0.3),
        ("pass", 1.0),
        ("supported", 0.9),
    ]
    told = [m.text for m in model.calls[2].messages if m.role == "tool"][-1]
    assert "only with confidence 0.30, below the 0.50 needed" in told
    checks = [e for e in read_trace(result.trace_path) if isinstance(e, Verification)]
    assert [c.passed for c in checks] == [True, False, True, True]

    trusting = Policy(plan=False, reflect_every=0, min_confidence=0.25)
    model = ScriptedModel(list(script[:2]))
    result = Agent(model=model, policy=trusting, memory=False, trace_dir=tmp_path).run(
        short_video, "What is shown?", options=OPTIONS
    )
    model.assert_complete()
    assert result.status == "verified" and [v["verdict"] for v in result.verdicts] == ["pass", "supported"]


# A run_finished line as traces have always held it.
OLD_FINISHED = {
    "event": "run_finished",
    "run_id": "abc123",
    "depth": 0,
    "step": 3,
    "time": 1700000000.5,
    "answer": "00:00:04.0-00:00:08.0",
    "status": "verified",
    "evidence": [[4.0, 8.0]],
    "steps": 3,
    "usage": {"input_tokens": 1200, "output_tokens": 80, "model_calls": 4},
    "wall_s": 2.5,
    "error": None,
    "trace_path": "/tmp/t.jsonl",
    "answer_form": "span",
    "value": [4.0, 8.0],
    "verdicts": [{"source": "rules", "verdict": "pass", "confidence": 1.0, "reason": "", "checks": [], "round": 1}],
    "frames_seen": 16,
}


def test_run_finished_carries_the_run_result_and_reads_old_traces():
    event = event_from_dict(OLD_FINISHED)
    assert isinstance(event, RunFinished) and isinstance(event.result, RunResult)
    r = event.result
    assert (r.run_id, r.status, r.evidence, r.value, r.usage) == (
        "abc123",
        "verified",
        [TimeSpan(4, 8)],
        TimeSpan(4, 8),
        Usage(1200, 80, 4),
    )
    # the result's fields read through the event as they always did
    assert (event.status, event.steps, event.evidence, event.value) == ("verified", 3, [[4.0, 8.0]], [4.0, 8.0])
    assert event.usage == OLD_FINISHED["usage"]
    assert event.to_dict() == OLD_FINISHED and list(event.to_dict()) == list(OLD_FINISHED)
    with pytest.raises(AttributeError):
        _ = event.colour
    assert r.to_dict() == {
        "answer": "00:00:04.0-00:00:08.0",
        "status": "verified",
        "evidence": ["00:00:04.0-00:00:08.0"],
        "evidence_seconds": [[4.0, 8.0]],
        "steps": 3,
        "trace_path": "/tmp/t.jsonl",
        "usage": {"input_tokens": 1200, "output_tokens": 80, "model_calls": 4},
        "run_id": "abc123",
        "wall_s": 2.5,
        "error": None,
        "answer_form": "span",
        "value": [4.0, 8.0],
        "verdicts": OLD_FINISHED["verdicts"],
        "frames_seen": 16,
    }


def test_an_old_trace_is_drawn_again(tmp_path):
    from rich.console import Console

    from mcr.outputs.console import RichRenderer
    from mcr.run.trace import iter_trace

    old_check = {
        "event": "verification",
        "run_id": "abc123",
        "depth": 0,
        "step": 3,
        "time": 1700000000.0,
        "round": 1,
        "source": "model",
        "verdict": "supported",
        "confidence": 0.9,
        "reason": "boats",
        "checks": [],
    }
    path = tmp_path / "old.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in (old_check, OLD_FINISHED)) + "\n")
    console = Console(record=True, width=120, force_terminal=False)
    renderer = RichRenderer(console)
    for event in iter_trace(path):
        renderer(event)
    drawn = console.export_text()
    assert "✓ model check: supported (0.90)" in drawn
    assert "Evidence: 00:00:04.0-00:00:08.0" in drawn and "status verified · 3 steps · 4 model calls" in drawn
    assert "1280 tokens" in drawn and "trace: /tmp/t.jsonl" in drawn


def test_one_result_type_from_the_loop_to_the_caller(tmp_path, short_video):
    import mcr
    import mcr.agents

    assert mcr.RunResult is mcr.agents.RunResult is RunResult
    model = ScriptedModel([answer("boats", evidence=["00:00:01-00:00:03"])])
    agent = Agent(model=model, policy="plain", memory=False, trace_dir=tmp_path, builtin=False)
    events = list(agent.stream(short_video, "What is shown?"))
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.result.answer == "boats"
    line = json.loads(Path(finished.result.trace_path).read_text().splitlines()[-1])
    assert line == finished.to_dict() and line["evidence"] == [[1.0, 3.0]] and line["status"] == "answered"
    result = Agent(
        model=ScriptedModel([answer("boats", evidence=["00:00:01-00:00:03"])]),
        policy="plain",
        memory=False,
        trace_dir=tmp_path,
        builtin=False,
    ).run(short_video, "What is shown?")
    assert type(result) is RunResult and result.evidence == [TimeSpan(1, 3)] and result.trace_path


def test_a_failing_subscriber_is_reported_once_and_dropped(tmp_path, short_video, caplog):
    calls = []
    seen = []

    def broken_renderer(event):
        calls.append(event.kind)
        raise RuntimeError("the terminal went away")

    model = ScriptedModel([answer("boats", evidence=["00:00:01-00:00:03"])])
    agent = Agent(
        model=model,
        policy="plain",
        memory=False,
        trace_dir=tmp_path,
        builtin=False,
        subscribers=[broken_renderer, seen.append],
    )
    with caplog.at_level(logging.WARNING, logger="mcr.agents"):
        result = agent.run(short_video, "What is shown?")
    assert result.status == "answered" and result.answer == "boats"
    assert calls == ["run_started"]  # dropped after its first failure
    assert [e.kind for e in seen][0] == "run_started" and seen[-1].kind == "run_finished"  # the others go on
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "broken_renderer" in message and "RuntimeError: the terminal went away" in message
    assert json.loads(Path(result.trace_path).read_text().splitlines()[-1])["event"] == "run_finished"
