"""Seen means seen: a cited span passes the rules only where frames near it were shown to the
model, or a tool read it (transcript or on-screen lines, an investigation), or memory holds
perception of it; a refusal names the nearest frames that were seen."""

import pytest
from media import make_cue_video

from mcr import Agent, TimeSpan
from mcr.run.answers import TypedAnswer
from mcr.run.policy import Policy
from mcr.run.testing import ScriptedModel, answer, tool_call, verdict
from mcr.run.trace import read_trace
from mcr.types import format_time

UNSEEN = TimeSpan(60.0, 61.0)
SPOKEN_AT = 30.0


@pytest.fixture(scope="module")
def two_minutes(tmp_path_factory):
    """120 s, 160x120 at 5 fps, one sentence spoken at 30 s, nothing drawn."""
    path = tmp_path_factory.mktemp("seen") / "two_minutes.mp4"
    spoken = ((SPOKEN_AT, "The train leaves from platform seven."),)
    return make_cue_video(path, spoken=spoken, drawn=(), seconds=120.0, size="160x120", rate=5)


def agent(model, tmp_path, **kw):
    kw.setdefault("memory", False)
    return Agent(model=model, trace_dir=tmp_path / "traces", **kw)


def overview_times(events) -> list[float]:
    perceive = [e for e in events if e.kind == "phase" and e.phase == "perceive" and e.depth == 0][0]
    return list(perceive.frames["timestamps"])


def test_an_unseen_span_is_refused_naming_the_nearest_frames_seen(tmp_path, two_minutes):
    model = ScriptedModel([answer("a dark screen", evidence=[str(UNSEEN)])])
    pol = Policy(plan=False, reflect_every=0, max_verify_rounds=1)
    result = agent(model, tmp_path, policy=pol).run(two_minutes, "What is shown at one minute?")
    model.assert_complete()
    assert result.status == "failed"
    assert [(v["source"], v["verdict"]) for v in result.verdicts] == [("rules", "fail")]
    times = overview_times(read_trace(result.trace_path))
    assert len(times) == 16 and not any(59.0 <= t <= 62.0 for t in times)
    before = max(t for t in times if t < UNSEEN.start)
    after = min(t for t in times if t > UNSEEN.end)
    reason = result.verdicts[0]["reason"]
    assert f"{UNSEEN} was not looked at" in reason
    assert f"the nearest frames seen were at {format_time(before)} and {format_time(after)}" in reason
    assert "inspect it first" in reason
    events = read_trace(result.trace_path)
    check = [e for e in events if e.kind == "verification"][0]
    assert check.support == [{"span": UNSEEN.to_list(), "frames": [], "readings": []}]


def test_a_span_that_was_inspected_passes_and_the_check_names_its_frames(tmp_path, two_minutes):
    model = ScriptedModel(
        [
            answer("a dark screen", evidence=[str(UNSEEN)]),
            tool_call("inspect_frames", span=str(UNSEEN), max_frames=2),
            answer("a dark screen", evidence=[str(UNSEEN)]),
            verdict("supported", 0.9, "dark frames"),
        ]
    )
    pol = Policy(plan=False, reflect_every=0)
    result = agent(model, tmp_path, policy=pol).run(two_minutes, "What is shown at one minute?")
    model.assert_complete()
    assert result.status == "verified"
    assert [(v["source"], v["verdict"]) for v in result.verdicts] == [
        ("rules", "fail"),
        ("rules", "pass"),
        ("model", "supported"),
    ]
    assert "nearest frames seen" in model.calls[1].messages[-1].text  # the refusal reached the model
    events = read_trace(result.trace_path)
    inspected = [e for e in events if e.kind == "tool_returned" and e.name == "inspect_frames"][0]
    shown = inspected.frames["timestamps"]
    passed = [e for e in events if e.kind == "verification" and e.source == "rules"][1]
    (support,) = passed.support
    assert support["span"] == UNSEEN.to_list() and support["readings"] == []
    assert support["frames"] and set(support["frames"]) <= set(shown)
    assert all(UNSEEN.start - 1.0 <= t <= UNSEEN.end + 1.0 for t in support["frames"])
    model_check = [e for e in events if e.kind == "verification" and e.source == "model"][0]
    assert all(UNSEEN.start <= t <= UNSEEN.end for t in model_check.support[0]["frames"])


def test_a_span_read_by_asr_passes(tmp_path, two_minutes):
    spoken = TimeSpan(SPOKEN_AT - 2, SPOKEN_AT + 6)
    model = ScriptedModel(
        [
            tool_call("asr", span=str(spoken)),
            lambda messages, tools: answer("platform seven", evidence=[_first_line_span(messages)]),
            verdict("supported", 0.9, "said so"),
        ]
    )
    pol = Policy(perceive=False, plan=False, reflect_every=0)
    result = agent(model, tmp_path, policy=pol, tools=["asr"]).run(two_minutes, "Which platform does it leave from?")
    model.assert_complete()
    assert result.status == "verified", result.verdicts
    cited = result.evidence[0]
    assert spoken.overlaps(cited)
    events = read_trace(result.trace_path)
    passed = [e for e in events if e.kind == "verification" and e.source == "rules"][0]
    (support,) = passed.support
    assert support["frames"] == []  # no frames at all: the transcript is what was read
    assert [r["source"] for r in support["readings"]] == ["asr"]
    assert TimeSpan(*support["readings"][0]["span"]).overlaps(cited)


def _first_line_span(messages) -> str:
    """The span of the first transcript line in the last tool result, e.g. ``[00:00:30.1-00:00:32.4]``."""
    text = [m.text for m in messages if m.role == "tool"][-1]
    return text.split("[", 1)[1].split("]", 1)[0]


def test_a_span_elsewhere_than_what_asr_read_is_refused(tmp_path, two_minutes):
    model = ScriptedModel(
        [
            tool_call("asr", span="00:00:28-00:00:36"),
            answer("platform seven", evidence=["00:01:30-00:01:32"]),
        ]
    )
    pol = Policy(perceive=False, plan=False, reflect_every=0, max_verify_rounds=1)
    result = agent(model, tmp_path, policy=pol, tools=["asr"]).run(two_minutes, "Which platform?")
    assert result.status == "failed"
    assert "00:01:30.0-00:01:32.0 was not looked at" in result.verdicts[0]["reason"]
    assert "no frames were seen" in result.verdicts[0]["reason"]


def test_memory_counts_only_what_was_perceived(tmp_path, two_minutes):
    """An earlier run's answer or a free-text note about a span is not perception of it; a
    transcript line the index made from the audio, or frames an earlier run was shown, are."""
    from mcr.media.video import Video
    from mcr.memory import Memory

    memory = Memory(tmp_path / "m.db")
    vid = Video(two_minutes).id
    memory.write("It shows platform seven.", "answer", vid, UNSEEN, source="run:old")
    memory.write("the screen is dark here", "observation", vid, UNSEEN, source="run:old")
    model = ScriptedModel([answer("dark", evidence=[str(UNSEEN)])])
    pol = Policy(perceive=False, plan=False, reflect_every=0, max_verify_rounds=1)
    result = agent(model, tmp_path, policy=pol, memory=memory, tools=["inspect_frames"]).run(two_minutes, "What?")
    assert result.status == "failed" and "was not looked at" in result.verdicts[0]["reason"]

    memory.write("dark", "observation", vid, TimeSpan(59.0, 64.0), source="run:old", seen_at=[60.4, 63.9])
    entry = memory.write("platform seven", "transcript", vid, TimeSpan(88.0, 90.0), source="index:transcript")
    model = ScriptedModel([answer("dark", evidence=[str(UNSEEN), "00:01:29-00:01:31"]), verdict()])
    result = agent(model, tmp_path, policy=pol, memory=memory, tools=["inspect_frames"]).run(two_minutes, "What?")
    assert result.status == "verified", result.verdicts
    check = [e for e in read_trace(result.trace_path) if e.kind == "verification" and e.source == "rules"][0]
    assert check.support[0]["frames"] == [60.4]
    assert check.support[1]["readings"] == [{"source": "memory:transcript", "span": [88.0, 90.0], "ref": entry.ref}]


def test_resolution_is_the_policy_s():
    from mcr.run.verify import Support, check_rules

    form = TypedAnswer("text", "x")
    seen = Support(frames=[56.2, 63.7])
    strict = check_rules(form, "", [UNSEEN], 120.0, seen, True, within_s=1.0)
    assert not strict.passed
    assert strict.support == [{"span": [60.0, 61.0], "frames": [], "readings": []}]
    loose = check_rules(form, "", [UNSEEN], 120.0, seen, True, within_s=3.0)
    assert loose.passed and loose.support[0]["frames"] == [63.7]
    assert Policy().seen_within_s == 1.0


def test_a_span_an_investigation_looked_at_passes_with_the_child_s_frames(tmp_path, two_minutes):
    model = ScriptedModel(
        [
            tool_call("investigate", span="00:01:00-00:01:02", question="What is shown?"),
            answer("dark", evidence=["00:01:00-00:01:02"]),  # the child, from its overview of the span
            answer("dark", evidence=["00:01:40-00:01:41"]),  # nobody looked there
            answer("dark", evidence=[str(UNSEEN)]),
        ]
    )
    pol = Policy(perceive=False, plan=False, reflect_every=0, model_check=False)
    result = agent(model, tmp_path, policy=pol).run(two_minutes, "What is shown?")
    model.assert_complete()
    assert result.status == "verified" and result.evidence == [UNSEEN]
    assert "00:01:40.0-00:01:41.0 was not looked at" in result.verdicts[0]["reason"]
    events = read_trace(result.trace_path)
    child = [e for e in events if e.kind == "phase" and e.phase == "perceive" and e.depth == 1][0]
    child_frames = child.frames["timestamps"]
    assert child_frames and all(60.0 <= t <= 62.0 for t in child_frames)
    passed = [e for e in events if e.kind == "verification" and e.depth == 0][-1]
    assert passed.passed and passed.support[0]["frames"]
    assert set(passed.support[0]["frames"]) <= {round(t, 3) for t in child_frames}


def test_traces_from_before_support_still_load():
    from mcr.run.events import event_from_dict

    old = {"event": "verification", "run_id": "r", "round": 1, "source": "rules", "verdict": "pass", "checks": []}
    event = event_from_dict(old)
    assert event.support == [] and event.verdict == "pass" and event.to_dict()["support"] == []
