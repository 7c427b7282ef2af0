"""What the commands print: one JSON document on stdout under --json, progress only on a
terminal's stderr; an index that skips and records damaged spans, and exits non-zero only
when a stage could read nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from media import corrupt_audio, make_cue_video
from procs import run_cli

from mcr.media.video import Video
from mcr.memory import Memory, VideoIndex


@pytest.mark.slow
def test_search_json_is_one_document_on_stdout(cut_video, tmp_path):
    found = run_cli("search", cut_video, "a test pattern", "-k", "2", "--json", cwd=tmp_path, timeout=300)
    assert found.returncode == 0, found.stderr
    doc = json.loads(found.stdout)  # the whole of stdout, nothing before or after it
    assert doc["query"] == "a test pattern" and doc["results"]  # the cut video has text to match weakly
    assert "\r" not in found.stderr and "%" not in found.stderr  # not a terminal: no progress bars at all


@pytest.mark.slow
def test_index_skips_and_records_damaged_spans_and_fails_only_when_nothing_could_be_read(cut_video, tmp_path):
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(Path(cut_video).read_bytes())
    data[-100] ^= 0xFF  # inside the sample tables at the end: the packets after 9 s break
    damaged.write_bytes(bytes(data))
    built = run_cli("index", damaged, "--stages", "shots", cwd=tmp_path)
    assert built.returncode == 0, built.stdout + built.stderr
    line = built.stdout.splitlines()[0]
    assert line.startswith("shots: built, 2 entries") and "damaged spans skipped: 00:00:09.0-00:00:24.0" in line
    assert "cannot be decoded" in line and "[h264" not in built.stderr
    memory = Memory(tmp_path / ".mcr" / "memory.db", readonly=True)
    state = VideoIndex(Video(damaged), memory).state("shots")
    assert state["status"] == "done" and [d["span"] for d in state["info"]["damaged"]] == [[9.0, 24.0]]
    memory.close()
    # nothing of the audio can be read: the stage fails, the command says which and exits 1
    bad = corrupt_audio(
        make_cue_video(
            tmp_path / "cue.mp4", spoken=((1.0, "Platform seven."),), drawn=(), seconds=8.0, size="160x120", rate=5
        ),
        tmp_path / "bad_audio.mp4",
    )
    failed = run_cli("index", bad, "--stages", "transcript,shots", cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stdout.startswith("transcript: failed") and "shots: built" in failed.stdout
    (line,) = [x for x in failed.stderr.splitlines() if x.startswith("mcr-agent: error:")]
    assert "index stage transcript of" in line and "bad_audio.mp4" in line
    assert "nothing could be read: 00:00:00.0-00:00:08.0 (the audio track is damaged" in line
    again = run_cli("index", cut_video, "--stages", "shots", cwd=tmp_path)
    assert again.returncode == 0 and "indexed in" in again.stdout


def json_tool(stdout: str) -> dict | list:
    """``stdout`` piped through ``python -m json.tool``: it must be exactly one JSON document."""
    import subprocess
    import sys

    piped = subprocess.run([sys.executable, "-m", "json.tool"], input=stdout, capture_output=True, text=True)
    assert piped.returncode == 0, (piped.stderr, stdout[:500])
    return json.loads(piped.stdout)


@pytest.mark.slow
def test_every_json_option_prints_one_document(tmp_path):
    from media import shared_clip

    script = Path(__file__).resolve().parents[1] / "examples" / "scripts" / "boats.json"
    ran = run_cli("run", shared_clip("boats.mp4"), "What is on the water?", "--model", f"replay:{script}", "--json",
                  "--no-memory", cwd=tmp_path)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert json_tool(ran.stdout)["status"] == "verified"
    tools = run_cli("tools", "--json", cwd=tmp_path)
    assert tools.returncode == 0 and {t["function"]["name"] for t in json_tool(tools.stdout)} >= {"inspect_frames"}
    models = run_cli("models", "--json", cwd=tmp_path)
    assert models.returncode == 0 and json_tool(models.stdout)
    found = run_cli("search", shared_clip("megamind.mp4"), "judge a book", "--json", cwd=tmp_path, timeout=300)
    assert found.returncode == 0 and json_tool(found.stdout)["results"]


def test_a_huge_answer_is_cut_with_a_note_and_prose_is_not_a_forced_answer(tmp_path):
    from media import shared_clip

    from mcr import Agent
    from mcr.run.policy import Policy
    from mcr.run.testing import ScriptedModel, answer, say, tool_call

    boats = shared_clip("boats.mp4")
    pol = Policy(plan=False, reflect_every=0, max_verify_rounds=1, max_answer_chars=1000)
    huge = ScriptedModel([answer("boats " * 200_000, evidence=["00:00:04.0-00:00:08.0"])])
    result = Agent(model=huge, memory=False, policy=pol, trace_dir=tmp_path).run(boats, "What is on the water?")
    assert len(result.answer) < 1100 and result.answer.endswith("[answer cut at 1000 of 1200000 characters "
                                                                "(Policy.max_answer_chars)]")  # fmt: skip
    assert Path(result.trace_path).stat().st_size < 100_000
    # the budget is spent and the last call replies in prose (a reflection): that is not the answer
    look = tool_call("inspect_frames", span="00:00:04.0-00:00:08.0", max_frames=2)
    prose = ScriptedModel([look, say("Learned: the water is calm. Missing: what floats on it. Plan: look again.")])
    spent = Agent(model=prose, memory=False, policy="plain", max_steps=1, trace_dir=tmp_path)
    result = spent.run(boats, "What is on the water?")
    assert result.status == "no_answer" and not result.answer and not result.ok
    # with no steps at all (the baseline's one call), a reply in prose is the answer
    once = Agent(model=ScriptedModel([say("Boats.")]), memory=False, policy="plain", max_steps=0, trace_dir=tmp_path)
    assert once.run(boats, "What is on the water?").answer == "Boats."
