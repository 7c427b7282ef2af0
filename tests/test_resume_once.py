"""A resumed run holds nothing twice: its trace gets only the events that are new, and each
memory entry the run wrote before it was stopped is stored once (an identity per run and step,
checked by the store)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
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
    if text == "slow" and os.environ.get("NOTE_HANG") == "1":
        Path(os.environ["NOTE_HANG_FLAG"]).write_text("yes")
        time.sleep(120)
    return "noted: " + text
'''

STEPS = [
    {"tool": "note", "arguments": {"text": "first"}},
    {"tool": "inspect_frames", "arguments": {"span": "00:00:04.0-00:00:08.0", "max_frames": 2}},
    {"tool": "inspect_frames", "arguments": {"span": "00:00:00.0-00:00:03.0", "max_frames": 2}},
    {"tool": "note", "arguments": {"text": "slow"}},
    {"answer": "Boats moving on the water.", "evidence": ["00:00:04.0-00:00:08.0"]},
]


def _run_args(folder: Path, trace: Path, memory: Path) -> list:
    return [
        "run", shared_clip("boats.mp4"), "What is on the water?", "--model", f"replay:{folder / 'script.json'}",
        "--policy", "plain", "--tools", folder / "tools.py", "--memory", memory, "--json", "--trace", trace,
    ]  # fmt: skip


def _observations(db: Path) -> list[tuple]:
    from mcr.memory import Memory

    entries = Memory(db, readonly=True).store.query(kind="observation")
    return sorted((e.text, str(e.span)) for e in entries)


@pytest.mark.slow
def test_a_run_resumed_after_ctrl_c_appends_only_what_is_new_and_writes_memory_once(tmp_path):
    """The run indexes the video (shots) and writes observations; the resumed one builds no
    index and replays its steps: the trace gets no second copy of them, the memory no second entry."""
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "script.json").write_text(json.dumps({"steps": STEPS}))
    clean = run_cli(*_run_args(tmp_path, tmp_path / "clean.jsonl", tmp_path / "clean.db"), cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr

    trace, db, flag = tmp_path / "stopped.jsonl", tmp_path / "memory.db", tmp_path / "hanging"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NOTE_HANG": "1", "NOTE_HANG_FLAG": str(flag)}
    args = [sys.executable, "-m", "mcr.cli.main", *map(str, _run_args(tmp_path, trace, db))]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the slow note"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert _observations(db) == _observations(tmp_path / "clean.db")  # both inspect_frames calls had returned

    resumed = run_cli(
        "resume", trace, "--model", f"replay:{tmp_path / 'script.json'}", "--tools", tmp_path / "tools.py", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    events, reference = read_trace(trace), read_trace(tmp_path / "clean.jsonl")
    calls = [(e.name, e.arguments) for e in events if e.kind == "tool_called"]
    assert calls == [(e.name, e.arguments) for e in reference if e.kind == "tool_called"]
    assert [e.kind for e in events].count("model_called") == [e.kind for e in reference].count("model_called")
    assert _observations(db) == _observations(tmp_path / "clean.db")

    from mcr.outputs.report import run_report

    drawn, expected = run_report(trace, thumbnails=False), run_report(tmp_path / "clean.jsonl", thumbnails=False)
    assert len(drawn["steps"]) == len(expected["steps"]) and drawn["cost"]["steps"] == expected["cost"]["steps"]


@pytest.mark.slow
def test_agent_resume_under_the_full_policy_keeps_the_overview_once(tmp_path):
    """In Python, with memory: the overview and the frames seen before a Ctrl-C are stored once."""
    from mcr import Agent, tool
    from mcr.memory import Memory
    from mcr.run.testing import ScriptedModel, answer, tool_call

    stop = {"armed": False}

    @tool
    def note(text: str) -> str:
        """Write a note down.

        Args:
            text: The note.
        """
        if text == "slow" and stop["armed"]:
            stop["armed"] = False
            raise KeyboardInterrupt  # as if Ctrl-C came while it ran
        return "noted: " + text

    steps = [
        tool_call("inspect_frames", span="00:00:04.0-00:00:08.0", max_frames=2),
        tool_call("note", text="slow"),
        answer("Boats moving on the water.", evidence=["00:00:04.0-00:00:08.0"]),
    ]
    boats = shared_clip("boats.mp4")

    def agent(script, db):
        return Agent(model=ScriptedModel(script), tools=[note], memory=db, trace_dir=tmp_path / "t", index=("shots",))

    clean = agent(steps, tmp_path / "clean.db").run(boats, "What is on the water?")
    stop["armed"] = True
    stopped = agent(steps, tmp_path / "m.db")
    with pytest.raises(KeyboardInterrupt):
        stopped.run(boats, "What is on the water?")
    acted = sum(1 for e in read_trace(stopped.last_trace) if e.kind == "model_called" and e.phase == "act")
    result = agent(steps[acted:], tmp_path / "m.db").resume(stopped.last_trace)
    assert result.answer == clean.answer
    counts = Memory(tmp_path / "m.db").store.counts_by_kind()
    assert counts == Memory(tmp_path / "clean.db").store.counts_by_kind() and counts["observation"] == 2, counts
    kinds = [e.kind for e in read_trace(stopped.last_trace)]
    assert kinds.count("tool_called") == 2 and kinds.count("phase") == [
        e.kind for e in read_trace(clean.trace_path)
    ].count("phase")


def test_a_database_of_the_first_schema_gains_write_identities(tmp_path):
    """An older database (no origin column) is brought up to date when opened for writing; a write
    that names its origin is stored once, one without stays as many times as it is made."""
    from mcr.memory import Memory

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        PRAGMA application_id = 1296257585;
        CREATE TABLE entries (id INTEGER PRIMARY KEY, video_id TEXT, start REAL, "end" REAL, kind TEXT NOT NULL,
            text TEXT NOT NULL, source TEXT NOT NULL DEFAULT '', confidence REAL, created_at REAL NOT NULL,
            data TEXT NOT NULL DEFAULT '{}', embedding BLOB, encoder TEXT);
        INSERT INTO entries (kind, text, created_at) VALUES ('fact', 'kept from before', 1.0);
        """
    )
    conn.close()
    memory = Memory(db)
    first = memory.write("the boat is red", "fact", "v", origin="run1:3:1")
    again = memory.write("the boat is red", "fact", "v", origin="run1:3:1")
    assert first.id == again.id and memory.store.count() == 2
    memory.write("said twice", "fact", "v")
    memory.write("said twice", "fact", "v")
    assert memory.store.count() == 4
    with pytest.raises(sqlite3.IntegrityError):  # the store itself holds the rule, not only its callers
        with memory.store.write() as c:
            c.execute("INSERT INTO entries (kind, text, created_at, origin) VALUES ('fact', 'x', 1, 'run1:3:1')")
