"""The MCR policy with scripted models: verification, recursion, budgets and the context budget."""

import re

from contexts import rendered_tokens, synthetic_context

from mcr import Agent, TimeSpan
from mcr.agents import BaselineAgent
from mcr.run.answers import detect_form, interpret
from mcr.run.context import RenderProfile
from mcr.run.policy import Policy
from mcr.run.testing import ScriptedModel, answer, say, tool_call, verdict
from mcr.run.trace import read_trace
from mcr.types import FramesPart

OPTIONS = ["a car race", "boats on water", "a cooking show"]

PLAN = say("Plan: look at the overview, then at 00:00:04-00:00:08, then answer.")
REFLECT = say("Learned: boats on water at 00:00:04-00:00:08. Missing: nothing.")


def agent(model, tmp_path, **kw):
    return Agent(model=model, memory=tmp_path / "m.db", trace_dir=tmp_path / "traces", **kw)


def test_wrong_first_answer_is_rejected_by_the_rules_and_fixed(tmp_path, short_video):
    model = ScriptedModel(
        [
            PLAN,
            answer("a submarine", evidence=["00:00:01-00:00:03"]),  # not an option
            answer("B", evidence=["00:00:50-00:01:00"]),  # past the end of the video
            answer("B", evidence=["00:00:04-00:00:08"]),  # seen in the overview: passes the rules
            verdict("supported", 0.85, "boats are visible"),
        ]
    )
    result = agent(model, tmp_path).run(short_video, "What is shown?", options=OPTIONS)
    model.assert_complete()
    assert result.status == "verified" and result.answer_form == "choice" and result.value == 1
    assert [(v["source"], v["verdict"]) for v in result.verdicts] == [
        ("rules", "fail"),
        ("rules", "pass"),
        ("model", "supported"),
    ]
    assert "not one of the options" in result.verdicts[0]["reason"]
    # the model read why each answer was refused
    feedback = [m.text for m in model.calls[3].messages if m.role == "tool"]
    assert any("not one of the options" in t and "B. boats on water" in t for t in feedback)
    assert any("starts after the video ends" in t for t in feedback)
    events = read_trace(result.trace_path)
    assert [e.phase for e in events if e.kind == "phase"] == ["perceive", "plan"]
    assert [e.phase for e in events if e.kind == "model_called"] == ["plan", "act", "act", "act", "verify"]


def test_evidence_never_looked_at_is_refused(tmp_path, short_video):
    model = ScriptedModel(
        [
            answer("boats", evidence=["00:00:05-00:00:06"]),
            tool_call("inspect_frames", span="00:00:05-00:00:06", max_frames=2),
            answer("boats", evidence=["00:00:05-00:00:06"]),
        ]
    )
    pol = Policy(perceive=False, plan=False, reflect_every=0, model_check=False)
    result = agent(model, tmp_path, policy=pol).run(short_video, "What is on the water?")
    assert result.status == "verified" and result.verdicts[0]["verdict"] == "fail"
    assert "was not looked at" in result.verdicts[0]["reason"]


def test_insufficient_verdict_leads_to_another_tool_call(tmp_path, short_video):
    model = ScriptedModel(
        [
            PLAN,
            answer("B", evidence=["00:00:00-00:00:02"]),
            verdict("insufficient", 0.3, "the first two seconds only show water"),
            tool_call("inspect_frames", span="00:00:04-00:00:08", max_frames=4),
            REFLECT,
            answer("B", evidence=["00:00:04-00:00:08"]),
            verdict("supported", 0.9, "boats visible"),
        ]
    )
    result = agent(model, tmp_path).run(short_video, "What is shown?", options=OPTIONS)
    model.assert_complete()
    assert result.status == "verified" and result.evidence == [TimeSpan(4, 8)]
    after_check = model.calls[3].messages
    assert "could not confirm your answer" in [m.text for m in after_check if m.role == "tool"][-1]
    check_call = model.calls[2]
    assert check_call.tools == [] and "Proposed answer: B" in check_call.messages[1].text
    frames = [p for p in check_call.messages[1].parts if isinstance(p, FramesPart)]
    assert len(frames) == 1 and 1 <= len(frames[0].frames) <= 8  # the cited span, re-inspected
    assert all(0 <= t <= 2.1 for t in frames[0].frames.timestamps)


def test_investigate_nests_twice_and_the_depth_bound_stops_a_third(tmp_path, short_video):
    model = ScriptedModel(
        [
            PLAN,
            tool_call("investigate", span="00:00:02-00:00:10", question="What moves on the water?"),
            # depth 1 (no plan in children): investigate deeper
            tool_call("investigate", span="00:00:04-00:00:06", question="Is it a boat?"),
            # depth 2: a third level is refused, then it answers from its overview
            tool_call("investigate", span="00:00:04-00:00:05", question="What colour?"),
            answer("yes, a boat", evidence=["00:00:04-00:00:06"]),
            answer("boats", evidence=["00:00:04-00:00:06"]),  # depth 1 concludes
            REFLECT,
            answer("B", evidence=["00:00:04-00:00:06"]),
            verdict("supported", 0.9, "ok"),
        ]
    )
    result = agent(model, tmp_path).run(short_video, "What is shown?", options=OPTIONS)
    model.assert_complete()
    assert result.status == "verified"
    events = read_trace(result.trace_path)
    starts = [e for e in events if e.kind == "run_started"]
    assert [e.depth for e in starts] == [0, 1, 2]
    assert starts[1].parent_run_id == starts[0].run_id and starts[2].parent_run_id == starts[1].run_id
    refused = [e for e in events if e.kind == "tool_returned" and e.depth == 2][0]
    assert refused.is_error and "nest at most 2 deep" in refused.text
    finished = [e for e in events if e.kind == "run_finished"]
    assert [(e.depth, e.status) for e in finished] == [(2, "verified"), (1, "verified"), (0, "verified")]
    top = [e for e in events if e.kind == "tool_returned" and e.depth == 0][0]
    assert top.name == "investigate" and "boats" in top.text and "saved as m" in top.text
    # children get denser frames over their span
    child_views = [e for e in events if e.kind == "phase" and e.phase == "perceive"]
    assert all(2.0 <= t <= 10.0 for t in child_views[1].frames["timestamps"])
    assert "investigate" not in [t["function"]["name"] for t in model.calls[3].tools]  # not offered at depth 2


def test_spent_budget_gives_unverified_with_best_answer(tmp_path, short_video):
    model = ScriptedModel(
        [
            answer("B", evidence=["00:00:04-00:00:08"]),
            verdict("insufficient", 0.2, "unclear"),
            tool_call("inspect_frames", span="00:00:00-00:00:02", max_frames=1),
            answer("B", evidence=["00:00:00-00:00:02"]),  # the forced last call
            verdict("contradicted", 0.7, "only water"),
        ]
    )
    pol = Policy(plan=False, reflect_every=0)
    result = agent(model, tmp_path, policy=pol, max_steps=2).run(short_video, "What is shown?", options=OPTIONS)
    model.assert_complete()
    assert result.status == "unverified" and result.answer == "B" and result.value == 1
    assert [v["verdict"] for v in result.verdicts] == ["pass", "insufficient", "pass", "contradicted"]


def test_checks_failing_every_round_end_as_failed(tmp_path, short_video):
    model = ScriptedModel([answer("Z", evidence=["00:00:04-00:00:08"])] * 2)
    pol = Policy(plan=False, reflect_every=0, max_verify_rounds=2)
    result = agent(model, tmp_path, policy=pol).run(short_video, "What is shown?", options=OPTIONS)
    assert result.status == "failed" and result.answer == "Z" and not result.ok


def test_answer_forms():
    assert detect_form("When does the boat leave?") == "span"
    assert detect_form("How many boats are there?") == "count"
    assert detect_form("What is shown?", ["a", "b"]) == "choice"
    assert detect_form("Describe the scene.") == "text"
    assert interpret("span", "00:01:02-00:01:10", duration=100)[0].value == TimeSpan(62, 70)
    assert interpret("count", "There are three boats")[0].value == 3
    assert interpret("count", "2 or 3")[1]
    assert interpret("choice", "(b)", OPTIONS)[0].value == 1
    assert "several options" in interpret("choice", "a car race or boats on water", OPTIONS)[1]


def test_span_answer_is_typed(tmp_path, short_video):
    model = ScriptedModel([answer("from 4 to 8 seconds", evidence=["00:00:04-00:00:08"])])
    pol = Policy(plan=False, reflect_every=0, model_check=False)
    result = agent(model, tmp_path, policy=pol).run(short_video, "When are the boats largest?")
    assert result.answer_form == "span" and result.value == TimeSpan(4, 8) and result.status == "verified"
    assert result.to_dict()["value"] == [4.0, 8.0] and result.frames_seen == 16


def test_baseline_answers_in_one_call_from_uniform_frames(tmp_path, short_video):
    model = ScriptedModel([answer("B", evidence=["00:00:00-00:00:12.5"])])
    result = BaselineAgent(model=model, frames=8, trace_dir=tmp_path).run(
        short_video, "What is shown?", options=OPTIONS
    )
    assert result.status == "answered" and result.value == 1 and result.usage.model_calls == 1
    frames = [p for m in model.calls[0].messages for p in m.parts if isinstance(p, FramesPart)]
    stamps = frames[0].frames.timestamps
    assert len(stamps) == 8 and stamps == sorted(stamps) and stamps[0] < 1.0 and stamps[-1] > 11.0
    assert [t["function"]["name"] for t in model.calls[0].tools] == ["answer"]


def test_three_hour_context_renders_within_budget_and_points_at_memory():
    profile = RenderProfile(max_context_tokens=32768, max_frames=64)
    ctx = synthetic_context(4000, profile)
    assert ctx.tokens > 10 * 32768  # the whole context is far over the window
    messages = ctx.render()
    assert rendered_tokens(messages, profile) <= 32768
    texts = [m.text for m in messages]
    assert texts[1] == ctx.task.text  # the task, whole
    assert any(t.startswith("[Plan] Plan: find the train leaving") for t in texts)  # the plan, whole
    last_reflection = ctx.of_kind("reflection")[-1].text
    assert any(t == f"[Reflection] {last_reflection}" for t in texts)
    shown = sum(len(p.frames) for m in messages for p in m.parts if isinstance(p, FramesPart))
    assert 0 < shown <= 64
    elisions = [t for t in texts if "elided" in t or "folded" in t]
    assert elisions
    for t in elisions:
        assert re.search(r"memory m\d+", t), t
    folded = next(t for t in texts if "earlier context entries" in t)
    ranges = re.findall(r"m(\d+)-m(\d+)", folded)
    covered = {n for a, b in ranges for n in range(int(a), int(b) + 1)}
    folded_ids = re.search(r"trace entries #(\d+)-#(\d+)", folded)
    first, last = int(folded_ids.group(1)), int(folded_ids.group(2))
    expected = {int(e.data["memory_ref"][1:]) for e in ctx.entries[first : last + 1] if e.data.get("memory_ref")}
    assert expected and expected <= covered  # every folded observation is named by its memory entry
    # the view is valid chat: each tool message answers a call of the assistant message before it
    for i, m in enumerate(messages):
        if m.role == "tool":
            j = i - 1
            while messages[j].role == "tool":
                j -= 1
            assert messages[j].role == "assistant" and m.tool_call_id in {c.id for c in messages[j].tool_calls}


def test_last_chance_answer_with_broken_evidence_is_kept(tmp_path, short_video):
    model = ScriptedModel([answer("A", evidence=["10:00:00.1-00:00:11.8"])])
    result = BaselineAgent(model=model, frames=4, trace_dir=tmp_path).run(
        short_video, "What is shown?", options=OPTIONS
    )
    assert result.answer == "A" and result.value == 0 and result.evidence == [] and result.status == "answered"
    proposed = [e for e in read_trace(result.trace_path) if e.kind == "answer_proposed"][0]
    assert not proposed.accepted and "ends before it starts" in proposed.reason
