"""The model doubles in ``mcr.run.testing``: ``ScriptedModel`` under the default policy, strict
scripts, and ``RecordingModel`` around a model or a function."""

import textwrap
import threading

import pytest
from media import make_shape_video

import mcr.run.testing
from mcr import Agent
from mcr.models import ModelOutput
from mcr.run.policy import ACT_PROMPT, PLAN_PROMPT, REFLECT_PROMPT, Policy
from mcr.run.testing import (
    RecordingModel,
    ScriptedModel,
    ScriptExhausted,
    answer,
    request_kind,
    say,
    tool_call,
    verdict,
)
from mcr.run.verify import VERDICT_SCHEMA, model_check_messages, parse_verdict
from mcr.types import Message, ToolCall, Usage


def docstring_example() -> str:
    """The indented example at the top of ``mcr.run.testing``'s docstring."""
    block = mcr.run.testing.__doc__.split("\n\n")[1]
    assert block.startswith("    model = ScriptedModel(")
    return textwrap.dedent(block)


def test_the_docstring_example_runs_under_the_default_policy(tmp_path):
    make_shape_video(tmp_path / "clip.mp4")  # the test runs in tmp_path
    names = {"Agent": Agent, "ScriptedModel": ScriptedModel, "tool_call": tool_call, "answer": answer}
    exec(docstring_example(), names)  # assert_complete() inside: both scripted steps were used
    result, model = names["result"], names["model"]
    assert result.status == "verified" and result.answer == "a red square"
    # the plan, the reflection and the verdict were not scripted: they got the neutral replies
    assert [(c.kind, c.step) for c in model.calls] == [
        ("plan", None),
        ("act", 0),
        ("reflect", None),
        ("act", 1),
        ("verify", None),
    ]
    assert [(v["source"], v["verdict"]) for v in result.verdicts] == [("rules", "pass"), ("model", "supported")]
    tools_seen = [m for m in model.calls[3].messages if m.role == "tool"]
    assert tools_seen[0].text.startswith("4 frames from 00:00:00.0-00:00:04.0")


def test_strict_script_raises_where_it_has_no_step(tmp_path):
    make_shape_video(tmp_path / "clip.mp4")
    model = ScriptedModel(
        [
            tool_call("inspect_frames", span="00:00-00:04", max_frames=4),
            answer("a red square", evidence=["00:00-00:04"]),
        ],
        strict=True,
    )
    result = Agent(model=model).run("clip.mp4", "What shape is shown?")
    # every call took the next step: the plan took the tool call, the first turn the answer,
    # the verifier's request found the script used up
    assert [(c.kind, c.step) for c in model.calls] == [("plan", 0), ("act", 1), ("verify", None)]
    assert result.status == "error"
    assert "ScriptExhausted: ScriptedModel was called 3 times but has 2 steps" in result.error
    with pytest.raises(ScriptExhausted, match="called 1 times but has 0 steps"):
        ScriptedModel([], strict=True).generate([Message("user", PLAN_PROMPT)])


def test_phase_requests_take_text_steps_and_leave_tool_steps(tmp_path):
    plan_call = [Message("user", "q"), Message("user", PLAN_PROMPT)]
    reflect_call = [Message("user", "q"), Message("user", REFLECT_PROMPT)]
    act_tools = [{"type": "function", "function": {"name": "answer", "parameters": {}}}]
    model = ScriptedModel([say("Plan: look at 0-4."), tool_call("inspect_frames", span="0-4"), verdict("contradicted")])
    assert model.generate(plan_call).text == "Plan: look at 0-4."  # a text step answers the plan
    assert model.generate(reflect_call).text == ""  # a tool step waits for its turn
    assert model.generate([Message("user", "q")], act_tools).tool_calls[0].name == "inspect_frames"
    check = model_check_messages("q", [], "a", [], [], [])
    assert parse_verdict(model.generate(check, None, response_schema=VERDICT_SCHEMA).text).verdict == "contradicted"
    assert parse_verdict(model.generate(check, None).text).verdict == "supported"  # script used up: the default
    assert [c.step for c in model.calls] == [0, None, 1, 2, None] and model.remaining == 0
    with pytest.raises(ScriptExhausted, match="called 6 times but has 3 steps; 2 phase requests got the default"):
        model.generate([Message("user", "q")], act_tools)


def test_request_kinds():
    tools = [{"type": "function", "function": {"name": "answer", "parameters": {}}}]
    assert request_kind([Message("user", PLAN_PROMPT)], tools) == "plan"  # the same tools on every call
    assert request_kind([Message("user", "q")], tools) == "act"
    assert request_kind([Message("user", "q"), Message("user", ACT_PROMPT)], None) == "act"
    assert request_kind([Message("user", "q"), Message("user", PLAN_PROMPT)], None) == "plan"
    assert request_kind([Message("user", REFLECT_PROMPT)], []) == "reflect"
    assert request_kind(model_check_messages("q", [], "a", [], [], []), None) == "verify"
    assert request_kind([Message("user", "q")], None, {"response_schema": VERDICT_SCHEMA}) == "verify"
    assert request_kind([], None) == "other"


def test_plain_policy_scripts_run_as_before(tmp_path):
    make_shape_video(tmp_path / "clip.mp4")
    model = ScriptedModel([say("A red square.")])
    result = Agent(model=model, policy=Policy.plain(), memory=False).run("clip.mp4", "What shape is shown?")
    assert result.status == "answered" and result.answer == "A red square."
    assert [(c.kind, c.step) for c in model.calls] == [("act", 0)]


def test_recording_model_records_every_call_and_stands_in_for_the_model():
    class Inner:
        name = "inner"
        profile = "a profile"

        def generate(self, messages, tools=None, **options):
            if options.get("fail"):
                raise RuntimeError("out of memory")
            return ModelOutput(text=f"{len(messages)} messages", usage=Usage(3, 2, 1))

    model = RecordingModel(Inner())
    assert model.name == "inner" and model.profile == "a profile"
    out = model.generate([Message("user", "hi")], None, temperature=0.0)
    assert out.text == "1 messages"
    with pytest.raises(RuntimeError, match="out of memory"):
        model.generate([Message("user", "hi")], [], fail=True)
    first, second = model.calls
    assert first.options == {"temperature": 0.0} and first.output is out and first.error is None
    assert second.output is None and isinstance(second.error, RuntimeError) and second.kind == "other"
    with pytest.raises(AttributeError):
        _ = model.no_such_attribute


def test_recording_model_around_a_function_from_several_threads():
    def reply(messages, tools, **options):
        barrier.wait()  # both calls are inside the model at once
        return ModelOutput(tool_calls=[ToolCall("answer", {"answer": messages[-1].text})])

    barrier = threading.Barrier(2, timeout=30)
    model = RecordingModel(reply)
    outs = {}
    threads = [
        threading.Thread(target=lambda q=q: outs.setdefault(q, model.generate([Message("user", q)], [])))
        for q in ("a", "b")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert model.name == "reply"
    assert sorted(c.messages[0].text for c in model.calls) == ["a", "b"]
    assert {q: o.tool_calls[0].arguments["answer"] for q, o in outs.items()} == {"a": "a", "b": "b"}
