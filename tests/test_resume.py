"""Runs that survive interruption: Ctrl-C and SIGTERM end the trace with ``interrupted``;
a run killed with ``kill -9`` is continued by ``mcr-agent resume TRACE`` to the same answer a
clean run gives, without repeating the tool calls it had finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from media import shared_clip
from procs import run_cli

from mcr.run.trace import read_trace

TOOLS = '''
import os, time
from pathlib import Path
from mcr import tool

@tool
def note(text: str) -> str:
    """Write a note down.

    Args:
        text: The note.
    """
    log = Path(os.environ["NOTE_LOG"])
    with open(log, "a") as f:
        f.write(text + "\\n")
    if text == "slow" and os.environ.get("NOTE_HANG") == "1":
        Path(str(log) + ".hanging").write_text("yes")
        time.sleep(120)
    return "noted: " + text
'''

STEPS = [
    {"tool": "note", "arguments": {"text": "first"}},
    {"tool": "inspect_frames", "arguments": {"span": "00:00:04.0-00:00:08.0", "max_frames": 2}},
    {"tool": "note", "arguments": {"text": "slow"}},
    {"answer": "Boats moving on the water.", "evidence": ["00:00:04.0-00:00:08.0"]},
]


@pytest.fixture()
def setup(tmp_path):
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "script.json").write_text(json.dumps({"steps": STEPS}))
    return tmp_path


def run_args(folder: Path, trace: Path) -> list:
    return [
        "run", shared_clip("boats.mp4"), "What is on the water?", "--model", f"replay:{folder / 'script.json'}",
        "--policy", "plain", "--tools", folder / "tools.py", "--no-memory", "--json", "--trace", trace,
    ]  # fmt: skip


def start(folder: Path, name: str) -> tuple[subprocess.Popen, Path, Path]:
    """``mcr-agent run`` in the background, stopped inside the slow note; (process, trace, log)."""
    trace, log = folder / f"{name}.jsonl", folder / f"{name}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NOTE_LOG": str(log), "NOTE_HANG": "1"}
    args = [sys.executable, "-m", "mcr.cli.main", *map(str, run_args(folder, trace))]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=folder)
    deadline = time.monotonic() + 120
    while not Path(f"{log}.hanging").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the slow note"
        time.sleep(0.1)
    return proc, trace, log


def clean_run(folder: Path) -> dict:
    done = run_cli(*run_args(folder, folder / "clean.jsonl"), env_extra={"NOTE_LOG": str(folder / "clean.log")})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def resume(folder: Path, trace: Path, log: Path):
    return run_cli(
        "resume", trace, "--model", f"replay:{folder / 'script.json'}", "--tools", folder / "tools.py", "--json",
        env_extra={"NOTE_LOG": str(log)}, cwd=folder,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_says_so_in_its_trace_and_resumes(setup, how):
    proc, trace, log = start(setup, "stopped")
    proc.send_signal(how)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if how == signal.SIGINT else 143), err
    assert "Traceback" not in err and f"mcr-agent resume {trace}" in err
    last = read_trace(trace)[-1]
    assert last.kind == "run_finished" and last.status == "interrupted"
    resumed = resume(setup, trace, log)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["answer"] == clean_run(setup)["answer"]
    assert log.read_text().split() == ["first", "slow", "slow"]  # the slow note again: it never returned


@pytest.mark.slow
def test_a_killed_run_is_continued_without_repeating_finished_tool_calls(setup):
    clean = clean_run(setup)
    proc, trace, log = start(setup, "killed")
    proc.kill()  # kill -9: no chance to write anything
    proc.communicate(timeout=60)
    events = read_trace(trace)
    assert events[-1].kind == "tool_called" and not any(e.kind == "run_finished" for e in events)
    drawn = run_cli("replay", trace, cwd=setup)
    assert drawn.returncode == 0 and "the trace ends before the run did" in drawn.stderr
    assert f"mcr-agent resume {trace}" in drawn.stderr

    resumed = resume(setup, trace, log)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    for key in ("answer", "status", "evidence", "steps"):
        assert result[key] == clean[key], key
    assert log.read_text().split() == ["first", "slow", "slow"]  # "first" was not written a second time
    events = read_trace(trace)
    assert [e.kind for e in events].count("run_started") == 1 and events[-1].kind == "run_finished"
    returned = [(e.name, e.text) for e in events if e.kind == "tool_returned"]
    assert returned == [
        (n, t) for n, t in ((e.name, e.text) for e in read_trace(setup / "clean.jsonl") if e.kind == "tool_returned")
    ]
    again = run_cli("resume", trace, cwd=setup)
    assert again.returncode == 2 and "already finished (status" in again.stderr


def test_agent_resume_under_the_full_policy_gives_the_clean_answer(tmp_path):
    """In Python: a Ctrl-C inside a tool, then ``Agent.resume`` with the turns still to come."""
    from mcr import Agent, tool
    from mcr.run.testing import ScriptedModel, answer, tool_call

    ran: list[str] = []
    stop = {"armed": False}

    @tool
    def note(text: str) -> str:
        """Write a note down.

        Args:
            text: The note.
        """
        ran.append(text)
        if text == "slow" and stop["armed"]:
            stop["armed"] = False
            raise KeyboardInterrupt  # as if Ctrl-C came while it ran
        return "noted: " + text

    steps = [
        tool_call("note", text="first"),
        tool_call("inspect_frames", span="00:00:04.0-00:00:08.0", max_frames=2),
        tool_call("note", text="slow"),
        answer("Boats moving on the water.", evidence=["00:00:04.0-00:00:08.0"]),
    ]
    boats = shared_clip("boats.mp4")

    def agent(script):
        return Agent(model=ScriptedModel(script), tools=[note], memory=False, trace_dir=tmp_path / "t")

    clean = agent(steps).run(boats, "What is on the water?")
    ran.clear()
    stop["armed"] = True
    stopped = agent(steps)
    with pytest.raises(KeyboardInterrupt):
        stopped.run(boats, "What is on the water?")
    trace = stopped.last_trace
    events = read_trace(trace)
    assert events[-1].kind == "run_finished" and events[-1].status == "interrupted"
    acted = sum(1 for e in events if e.kind == "model_called" and e.phase == "act")
    result = agent(steps[acted:]).resume(trace)
    assert (result.status, result.answer, result.evidence) == (clean.status, clean.answer, clean.evidence)
    assert ran == ["first", "slow", "slow"] and result.run_id == events[0].run_id
    kinds = [e.kind for e in read_trace(trace)]
    assert kinds.count("run_started") == 1 and kinds[-1] == "run_finished"


@pytest.mark.slow
def test_a_trace_cut_mid_line_is_drawn_and_resumed(setup):
    proc, trace, log = start(setup, "torn")
    proc.kill()
    proc.communicate(timeout=60)
    with open(trace, "a") as f:
        f.write('{"event": "tool_returned", "run_id": "x", "te')  # the write a kill cut short
    drawn = run_cli("replay", trace, cwd=setup)
    assert drawn.returncode == 0 and "the trace ends before the run did" in drawn.stderr, drawn.stderr
    resumed = resume(setup, trace, log)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "answered"
    assert all(line.endswith("}") for line in trace.read_text().splitlines())
