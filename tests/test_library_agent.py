"""Asking a library: a scripted model runs the real loop over a folder of six test-made videos
(speech by espeak-ng, drawn text) indexed by ``mcr-agent index DIR``. It searches the library,
looks at the video the search names and answers citing that video and span: verified. The same
span cited in a video the run never looked at is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from libraries import LIBRARY, cli, indexed_library

from mcr.agents import Agent
from mcr.models import ModelOutput
from mcr.run.events import ToolReturned, Verification
from mcr.run.policy import Policy
from mcr.run.testing import ScriptedModel, answer, tool_call
from mcr.types import ToolCall

pytestmark = pytest.mark.slow

FIRST = re.compile(r"1\. video (\S+) (\d\d:\d\d:\d\d\.\d)-(\d\d:\d\d:\d\d\.\d)")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return indexed_library(tmp_path_factory.mktemp("asked"))


def _look_where_the_search_points(messages, tools) -> ModelOutput:
    """Read the first result of the library search from the context and look at it there."""
    text = "\n".join(m.text for m in messages if isinstance(m.text, str))
    found = FIRST.findall(text)
    assert found, text[-2000:]
    video, start, end = found[-1]
    return ModelOutput(tool_calls=[ToolCall("inspect_frames", {"video": video, "span": f"{start}-{end}"})])


def _agent(db: Path, trace_dir: Path, model, **options) -> Agent:
    return Agent(model=model, memory=db, index=("transcript", "ocr"), trace_dir=trace_dir, device="cpu", **options)


def test_a_run_over_a_folder_searches_looks_at_the_right_video_and_is_verified(library, tmp_path):
    folder, db = library
    model = ScriptedModel(
        [
            tool_call("library_search", query="Fourier transform", k=3),
            _look_where_the_search_points,
            answer(
                "It says the Fourier transform turns a signal into its frequencies.",
                evidence=[{"video": "physics.mp4", "span": "00:00:01.0-00:00:05.0"}],
            ),
        ]
    )
    agent = _agent(db, tmp_path, model, policy=Policy(reflect_every=0))
    events = list(agent.stream(str(folder), "What is said about the Fourier transform?"))
    result = events[-1].result
    model.assert_complete()
    assert result.status == "verified", (result, [e for e in events if isinstance(e, Verification)])
    assert result.evidence_videos == ["physics.mp4"] and result.evidence[0].to_list() == [1.0, 5.0]
    assert result.to_dict()["evidence_videos"] == ["physics.mp4"]
    # the model started from the overview of all six videos and was offered the video argument
    overview = next(e.text for e in agent.last_context.entries if e.kind == "perception")
    assert all(f"{name}.mp4" in overview for name in LIBRARY) and "Fourier" in overview
    act = model.of_kind("act")[0]
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in act.tools}
    assert sorted(schemas["inspect_frames"]["properties"]["video"]["enum"]) == sorted(f"{n}.mp4" for n in LIBRARY)
    assert "video" not in schemas["library_search"]["properties"]
    assert "video" in schemas["answer"]["properties"]["evidence"]["items"]["properties"]
    # the search put the right video and span first, and each tool result says which video it looked at
    returned = [e for e in events if isinstance(e, ToolReturned)]
    search = next(e for e in returned if e.name == "library_search")
    top = search.metadata["results"][0]
    assert top["video"] == "physics.mp4" and top["span"][0] <= 5.0 and top["span"][1] >= 1.0
    looked = next(e for e in returned if e.name == "inspect_frames")
    assert not looked.is_error and looked.metadata["video"] == "physics.mp4"
    assert looked.frames["video_id"] == top["video_id"]
    # the verifier checked the span in that video
    rules = next(e for e in events if isinstance(e, Verification) and e.source == "rules")
    assert rules.passed and rules.support[0]["video"] == "physics.mp4" and rules.support[0]["frames"]
    # the answer is kept in memory about the video it cites
    from mcr.memory import Memory

    kept = Memory(db).store.query(top["video_id"], kind="answer")
    assert any("Fourier" in e.text for e in kept)


def test_the_right_time_in_the_wrong_video_is_refused(library, tmp_path):
    folder, db = library
    model = ScriptedModel(
        [
            tool_call("inspect_frames", video="nowhere.mp4", span="00:00:01.0-00:00:05.0"),
            tool_call("inspect_frames", span="00:00:01.0-00:00:05.0"),
            tool_call("inspect_frames", video="physics", span="00:00:01.0-00:00:05.0"),
            answer(
                "It says the Fourier transform turns a signal into its frequencies.",
                evidence=[{"video": "kitchen.mp4", "span": "00:00:01.0-00:00:05.0"}],
            ),
        ]
    )
    agent = _agent(db, tmp_path, model, policy=Policy(reflect_every=0, max_verify_rounds=1))
    events = list(agent.stream(str(folder / "*.mp4"), "What is said about the Fourier transform?"))
    result = events[-1].result
    assert result.status == "failed" and not result.ok
    returned = [e for e in events if isinstance(e, ToolReturned)]
    assert returned[0].is_error and "no video 'nowhere.mp4'" in returned[0].text and "physics.mp4" in returned[0].text
    assert returned[1].is_error and "say which video" in returned[1].text
    assert not returned[2].is_error and returned[2].metadata["video"] == "physics.mp4"
    rules = [e for e in events if isinstance(e, Verification)]
    assert len(rules) == 1 and rules[0].source == "rules" and not rules[0].passed
    assert "kitchen.mp4, which was not looked at" in rules[0].reason
    feedback = [e.text for e in agent.last_context.entries if e.kind == "tool_result" and e.data.get("is_error")]
    assert any("kitchen.mp4, which was not looked at" in t for t in feedback)


def test_the_run_command_asks_a_folder_and_its_report_names_each_video(library, tmp_path):
    folder, db = library
    script = tmp_path / "script.json"
    cited = {"video": "physics.mp4", "span": "00:00:01.0-00:00:05.0"}
    script.write_text(
        json.dumps(
            [
                {"tool": "library_search", "arguments": {"query": "Fourier transform", "k": 2}},
                {"tool": "inspect_frames", "arguments": cited},
                {"answer": "The Fourier transform turns a signal into its frequencies.", "evidence": [cited]},
            ]
        )
    )
    args = ("run", str(folder), "What is said about the Fourier transform?", "--model", f"replay:{script}")
    options = ("--memory", str(db), "--index", "transcript,ocr", "--trace-dir", str(tmp_path), "--device", "cpu")
    done = cli(*args, *options, "--json", "--report")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "verified" and out["evidence_videos"] == ["physics.mp4"], out
    page = Path(re.search(r"report: (\S+)", done.stderr).group(1)).read_text()
    assert "inspect_frames in physics.mp4" in page and "library_search" in page and "kitchen.mp4" in page
    refused = cli("run", str(folder), "q?", "--no-memory", "--model", f"replay:{script}")
    assert refused.returncode != 0 and "needs its index in the memory" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_overview_is_cut_to_its_budget_and_the_console_names_each_video(library):
    from rich.console import Console

    from mcr.memory import Memory
    from mcr.outputs.console import RichRenderer
    from mcr.run.library import library_overview
    from mcr.tools.library import Library

    folder, db = library
    videos = Library.open([str(folder)])
    memory = Memory(db)
    whole = library_overview(videos, memory, 100_000)
    assert [line.split(". ", 1)[0] for line in whole.splitlines() if line[:2] in ("1.", "6.")] == ["1", "6"]
    assert "index: ocr, transcript" in whole and "OHMS LAW" in whole.upper()
    short = library_overview(videos, memory, 900)
    assert len(short) < len(whole) and "more videos (library_search searches all of them)" in short
    console = Console(record=True, width=120, force_terminal=False)
    draw = RichRenderer(console)
    draw(ToolReturned(name="inspect_frames", text="8 frames", metadata={"video": "physics.mp4"}))
    drawn = console.export_text()
    assert "← inspect_frames" in drawn and "in physics.mp4" in drawn
