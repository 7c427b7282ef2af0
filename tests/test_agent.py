"""The loop end to end: a scripted model drives real tools on a real clip."""

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from mcr import Agent, TimeSpan, ToolContext, ToolResult, Video, tool
from mcr.run.context import Context, RenderProfile
from mcr.run.events import ModelCalled, RunFinished, ToolReturned
from mcr.run.testing import ScriptedModel, ScriptExhausted, answer, say, tool_call, tool_calls
from mcr.run.trace import read_trace
from mcr.types import FramesPart, ToolCall


@tool
def mean_brightness(ctx: ToolContext, span: TimeSpan) -> ToolResult:
    """Average brightness of the video in a span.

    Args:
        span: The span to measure.
    """
    frames = ctx.video.frames(span, fps=2.0, max_frames=6)
    value = float(frames.images.mean())
    return ToolResult(
        f"mean brightness {value:.1f} over {len(frames)} frames", spans=[span], metadata={"brightness": value}
    )


@pytest.mark.slow
def test_agent_run_with_custom_tool_and_inspect_frames(tmp_path, short_video):
    model = ScriptedModel(
        [
            tool_call("mean_brightness", thought="First measure the light.", span="00:00-00:04"),
            tool_call("inspect_frames", span="00:02-00:06", fps=1.0, max_frames=3),
            answer("boats on water", evidence=["00:02-00:06"]),
        ]
    )
    trace = tmp_path / "run.jsonl"
    agent = Agent(policy="plain", model=model, tools=[mean_brightness], max_steps=5)
    result = agent.run(str(short_video), "What is in the video?", trace=trace)
    model.assert_complete()

    assert result.status == "answered" and result.answer == "boats on water"
    assert result.evidence == [TimeSpan(2, 6)]
    assert result.steps == 3 and result.usage.model_calls == 3
    assert result.trace_path == str(trace)

    # the model saw the tool results, frames included, in the next turn
    third = model.calls[2].messages
    tool_msgs = [m for m in third if m.role == "tool"]
    assert "mean brightness" in tool_msgs[0].text
    frames_parts = [p for p in tool_msgs[1].parts if isinstance(p, FramesPart)]
    assert len(frames_parts) == 1 and len(frames_parts[0].frames) == 3
    assert all(2.0 <= t <= 6.0 for t in frames_parts[0].frames.timestamps)
    assert model.calls[0].tools[-1]["function"]["name"] == "answer"
    assert "mean_brightness" in [t["function"]["name"] for t in model.calls[0].tools]

    # the JSONL trace holds every event, in order, with frames as references only
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds == [
        "run_started",
        "index_stage",
        "model_called",
        "tool_called",
        "tool_returned",
        "model_called",
        "tool_called",
        "tool_returned",
        "model_called",
        "answer_proposed",
        "memory_written",
        "run_finished",
    ]
    assert events[0]["video"]["path"].endswith("short.mp4") and events[0]["question"] == "What is in the video?"
    assert events[1]["stage"] == "shots" and events[1]["status"] == "built"
    assert events[4]["metadata"]["brightness"] > 0
    frames_ref = events[7]["frames"]
    assert len(frames_ref["timestamps"]) == 3 and frames_ref["source"].endswith("short.mp4")
    assert "images" not in json.dumps(events[7]) and trace.stat().st_size < 20000
    assert events[-2]["text"] == "Q: What is in the video? A: boats on water" and events[-2]["span"] == [2.0, 6.0]
    assert events[-1]["answer"] == "boats on water" and events[-1]["evidence"] == [[2.0, 6.0]]
    assert [type(e).__name__ for e in read_trace(trace)][-1] == "RunFinished"


def test_tools_by_name_keep_only_those_built_ins(tmp_path, short_video):
    model = ScriptedModel([tool_call("inspect_frames", span="00:00-00:02"), answer("boats", evidence=["00:00-00:02"])])
    agent = Agent(
        policy="plain",
        model=model,
        tools=["inspect_frames", mean_brightness],
        memory=tmp_path / "m.db",
        trace_dir=tmp_path,
    )
    assert [t.name for t in agent.tools] == ["inspect_frames", "mean_brightness"]
    assert agent.run(str(short_video), "What?").answer == "boats"
    assert [t["function"]["name"] for t in model.calls[0].tools] == ["inspect_frames", "mean_brightness", "answer"]
    everything = Agent(policy="plain", model=ScriptedModel([]), tools=[mean_brightness], memory=tmp_path / "m.db")
    assert {"inspect_frames", "memory_search", "mean_brightness"} <= {t.name for t in everything.tools}
    with pytest.raises(ValueError, match="unknown tool 'inspect'.*inspect_frames"):
        Agent(model=ScriptedModel([]), tools=["inspect"], memory=False)
    with pytest.raises(ValueError, match="unknown index stage 'shot'"):
        Agent(model=ScriptedModel([]), index=["shot"], memory=False)


def test_failures_reach_the_model_and_the_run_goes_on(tmp_path, short_video):
    model = ScriptedModel(
        [
            tool_call("inspect_frames", span="00:09-00:05"),  # end before start
            tool_call("no_such_tool"),
            tool_call("inspect_frames", span="00:30-00:40"),  # past the end of a 12.5 s clip
            say("The frames show boats."),  # plain text is the answer
        ]
    )
    result = Agent(policy="plain", model=model, trace_dir=tmp_path).run(short_video, "What is shown?")
    texts = [m.text for m in model.calls[-1].messages if m.role == "tool"]
    assert "ends before it starts" in texts[0]
    assert "unknown tool 'no_such_tool'" in texts[1]
    assert texts[2].startswith("retry: the span") and "after the video ends" in texts[2]
    assert result.status == "answered" and result.answer == "The frames show boats."
    assert Path(result.trace_path).parent == tmp_path


def test_parallel_tool_calls_each_get_one_result(tmp_path):
    together = threading.Barrier(2, timeout=60)  # passed only when both calls are running at the same time

    @tool
    def wait(ctx: ToolContext, seconds: float, label: str) -> str:
        """Wait for the other call."""
        together.wait()
        return f"done {label}"

    model = ScriptedModel(
        [
            tool_calls(
                ("wait", {"seconds": 0.5, "label": "a"}),
                ("wait", {"seconds": 0.5, "label": "b"}),
                ("wait", {"seconds": "x", "label": "c"}),
            ),
            answer("ok"),
        ]
    )
    agent = Agent(policy="plain", model=model, tools=[wait], trace_dir=tmp_path)
    events = list(agent.stream(None, "wait"))
    returned = [e for e in events if isinstance(e, ToolReturned)]
    assert [e.text for e in returned[:2]] == ["done a", "done b"] and returned[2].is_error
    assert len({e.call_id for e in returned}) == 3
    assert not together.broken  # the two calls ran at the same time (run one after the other, both would fail)


def test_step_budget_asks_for_an_answer(tmp_path, short_video):
    model = ScriptedModel([tool_call("inspect_frames", span="0-2", max_frames=1)] * 2 + [answer("boats")])
    result = Agent(policy="plain", model=model, max_steps=2, trace_dir=tmp_path).run(short_video, "What?")
    assert result.status == "max_steps" and result.answer == "boats" and result.steps == 3
    last = model.calls[-1]
    assert last.tools == model.calls[0].tools and last.options["allowed_tools"] == ["answer"]  # held back, not removed
    assert "budget is spent" in last.messages[-1].text
    events = read_trace(result.trace_path)
    assert [e.forced_answer for e in events if isinstance(e, ModelCalled)] == [False, False, True]


def test_no_answer_after_budget(tmp_path, short_video):
    model = ScriptedModel([tool_call("inspect_frames", span="0-2", max_frames=1)] * 2)
    result = Agent(policy="plain", model=model, max_steps=1, trace_dir=tmp_path).run(short_video, "What?")
    assert result.status == "no_answer" and result.answer == "" and not result.ok


def test_bad_evidence_is_sent_back(tmp_path, short_video):
    model = ScriptedModel([answer("boats", evidence=["00:50-00:55"]), answer("boats", evidence=[[1, 3]])])
    result = Agent(policy="plain", model=model, trace_dir=tmp_path).run(short_video, "What?")
    feedback = [m.text for m in model.calls[1].messages if m.role == "tool"][-1]
    assert "answer not accepted" in feedback and "after the video ends" in feedback
    assert result.evidence == [TimeSpan(1, 3)]


def test_model_error_ends_run_with_message(tmp_path, short_video):
    model = ScriptedModel([tool_call("inspect_frames", span="0-1", max_frames=1)])
    result = Agent(policy="plain", model=model, trace_dir=tmp_path).run(short_video, "What?")
    assert result.status == "error" and "ScriptExhausted" in result.error
    assert isinstance(read_trace(result.trace_path)[-1], RunFinished)
    assert len(model.calls) == 2  # the failing second call was made once, not retried


def test_options_in_task_and_empty_question(tmp_path, short_video):
    model = ScriptedModel([answer("B")])
    agent = Agent(policy="plain", model=model, trace_dir=tmp_path)
    agent.run(short_video, "Which?", options=["cars", "boats"])
    task = model.calls[0].messages[1].text
    assert "A. cars" in task and "B. boats" in task and "duration 00:00:12.5" in task
    with pytest.raises(ValueError, match="question is empty"):
        agent.run(short_video, "  ")


def test_render_keeps_within_frame_budget(short_video):
    video = Video(short_video)
    ctx = Context(profile=RenderProfile(max_frames=4, keep_recent_results=1, short_result_chars=20))
    ctx.add_task("q", video={**video.info(), "name": "short.mp4"})
    for i, span in enumerate(["0-2", "4-6", "8-10"]):
        call = ToolCall("inspect_frames", {"span": span}, f"c{i}")
        ctx.add_model_turn(i + 1, "", [call])
        frames = video.frames(span, fps=1.0, max_frames=2)
        ctx.add_tool_result(i + 1, call, "x" * 100, frames=frames)
    msgs = ctx.render()
    tool_msgs = [m for m in msgs if m.role == "tool"]
    shown = [sum(isinstance(p, FramesPart) for p in m.parts) for m in tool_msgs]
    # over its frame budget the context is compacted once, to half that budget: the oldest frames elided, the newest kept
    assert shown == [0, 0, 1] and len(ctx.compactions) == 1
    assert "elided from view" in tool_msgs[0].text and "00:00:00" in tool_msgs[0].text
    assert "shortened" in tool_msgs[0].text and tool_msgs[2].text == "x" * 100
    assert len(ctx.entries) == 7 and ctx.entries[2].text == "x" * 100  # entries are never rewritten
    assert isinstance(ctx.entries[2].frames.images, np.ndarray)


def test_scripted_model_exhaustion_is_clear():
    model = ScriptedModel([])
    with pytest.raises(ScriptExhausted, match="has 0 steps"):
        model.generate([])
