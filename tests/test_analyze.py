"""``analyze``: chapters at the scene changes of a test-made video with speech and drawn text,
highlights, and the transcript and chapters as subtitles that parse back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import webvtt

from mcr.media.video import Video
from mcr.memory import Memory
from mcr.outputs.analyze import analyze, write
from mcr.run.testing import ScriptedModel, say


def scenes_video(cue_video, tmp_path):
    """The cue video (speech at 2, 14, 26, 38, 50 s; text drawn at 9, 21, 33, 45, 57 s) with its
    picture inverted from 20 s to 40 s: scene changes at 20 s and 40 s."""
    out = tmp_path / "scenes.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(cue_video), "-vf", "negate=enable='between(t,20,40)'"]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", str(out)],
        check=True,
    )
    return out


@pytest.mark.slow
def test_chapters_fall_on_the_scene_changes_and_the_subtitles_parse(cue_video, tmp_path):
    video = Video(scenes_video(cue_video, tmp_path))
    result = analyze(video, Memory(tmp_path / "m.db"))
    starts = [c["start"] for c in result["chapters"]]
    assert len(starts) == 3 and starts[0] == 0.0
    assert abs(starts[1] - 20.0) <= 1.0 and abs(starts[2] - 40.0) <= 1.0, starts
    assert "orange cat" in result["chapters"][0]["title"].lower()  # no model: the first words said
    assert "need a model" in result["summary"]
    assert any("text on screen" in h["why"] for h in result["highlights"])
    files = {p.name: p for p in write(result, tmp_path / "out")}
    chapters = webvtt.read(str(files["chapters.vtt"])).captions
    assert [c.text for c in chapters] == [c["title"] for c in result["chapters"]]
    spoken = webvtt.read(str(files["transcript.vtt"])).captions
    srt = webvtt.from_srt(str(files["transcript.srt"])).captions
    assert len(spoken) == len(srt) == len(result["transcript"]) >= 4
    assert [c.text for c in spoken] == [c.text for c in srt]
    assert json.loads(files["analysis.json"].read_text())["chapters"][1]["start"] == starts[1]
    assert "## Chapters" in files["analysis.md"].read_text()


@pytest.mark.slow
def test_a_model_titles_the_chapters(cue_video, tmp_path):
    video = Video(scenes_video(cue_video, tmp_path))
    replies = [say(json.dumps({"title": f"Part {i}", "summary": f"what part {i} holds"})) for i in (1, 2, 3)]
    model = ScriptedModel(replies + [say("A talk over three scenes.")])
    result = analyze(video, Memory(tmp_path / "m.db"), model)
    assert [c["title"] for c in result["chapters"]] == ["Part 1", "Part 2", "Part 3"]
    assert result["summary"] == "A talk over three scenes." and result["titled_by"] == "scripted"
    first = model.calls[0].messages[-1].text
    assert '<data source="chapter"' in first and "orange cat" in first.lower()  # speech reaches it as data


@pytest.mark.slow
def test_the_cli(cut_video, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mcr.cli.main", "analyze", str(cut_video), "-o", str(tmp_path / "a")]
        + ["--memory", str(tmp_path / "m.db")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "a" / "analysis.json").read_text())
    starts = [c["start"] for c in result["chapters"]]
    for cut, start in zip([4, 8, 12, 16, 20], starts[1:]):  # six shots: a chapter each
        assert abs(start - cut) <= 1.0, starts
