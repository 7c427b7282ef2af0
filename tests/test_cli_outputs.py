"""What the commands print: one JSON document on stdout under --json, progress only on a
terminal's stderr; an index that skips and records damaged spans, and exits non-zero only
when a stage could read nothing."""

from __future__ import annotations

import json
from pathlib import Path

from media import corrupt_audio, make_cue_video
from procs import run_cli

from mcr.memory import Memory, VideoIndex
from mcr.video import Video


def test_search_json_is_one_document_on_stdout(cut_video, tmp_path):
    found = run_cli("search", cut_video, "a test pattern", "-k", "2", "--json", cwd=tmp_path, timeout=300)
    assert found.returncode == 0, found.stderr
    doc = json.loads(found.stdout)  # the whole of stdout, nothing before or after it
    assert doc["query"] == "a test pattern" and doc["results"]  # the cut video has text to match weakly
    assert "\r" not in found.stderr and "%" not in found.stderr  # not a terminal: no progress bars at all


def test_index_skips_and_records_damaged_spans_and_fails_only_when_nothing_could_be_read(cut_video, tmp_path):
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(Path(cut_video).read_bytes())
    data[-100] ^= 0xFF  # inside the sample tables at the end: the packets after 6 s break
    damaged.write_bytes(bytes(data))
    built = run_cli("index", damaged, "--stages", "shots", cwd=tmp_path)
    assert built.returncode == 0, built.stdout + built.stderr
    line = built.stdout.splitlines()[0]
    assert line.startswith("shots: built, 1 entries") and "damaged spans skipped: 00:00:06.0-00:00:24.0" in line
    assert "cannot be decoded" in line and "[h264" not in built.stderr
    memory = Memory(tmp_path / ".mcr" / "memory.db", readonly=True)
    state = VideoIndex(Video(damaged), memory).state("shots")
    assert state["status"] == "done" and [d["span"] for d in state["info"]["damaged"]] == [[6.0, 24.0]]
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
