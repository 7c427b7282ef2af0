"""Evidence clips cut with ffmpeg: copied when a span starts on a keyframe, re-encoded otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from mcr import Agent
from mcr.media.video import Video
from mcr.outputs.clips import contact_sheet, cut_clips, keyframes
from mcr.run.testing import ScriptedModel, answer, tool_call
from mcr.types import TimeSpan


def length(path) -> float:
    """The clip's video length: its last frame's time plus one frame."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times = [float(f.pts * s.time_base) for f in c.decode(s)]  # every frame decodes
    return max(times) - min(times) + 1.0 / float(s.average_rate)


def test_spans_are_cut_copied_on_keyframes_and_re_encoded_elsewhere(cut_video, tmp_path):
    video = Video(cut_video)
    keys = keyframes(cut_video)
    assert keys[0] == 0.0
    frame = 1.0 / video.fps
    spans = [TimeSpan(0.0, 3.0), TimeSpan(5.3, 7.1), TimeSpan(13.0, 15.5)]
    clips = cut_clips(cut_video, spans, tmp_path / "clips")
    assert [c.copied for c in clips] == [True, False, any(abs(k - 13.0) < frame / 2 for k in keys)]
    for c in clips:
        assert Video(c.path).duration > 0
        assert abs(length(c.path) - c.span.duration) <= frame + 1e-6, (c.span, length(c.path))
    wide = cut_clips(cut_video, [TimeSpan(5.3, 7.1)], tmp_path / "wide", margin=1.0)[0]
    assert wide.span == TimeSpan(4.3, 8.1) and abs(length(wide.path) - 3.8) <= frame + 1e-6
    sheet = contact_sheet(clips, tmp_path / "sheet.png", per_clip=4, width=120)
    assert Image.open(sheet).size == (4 * 120, 3 * 90)


@pytest.mark.slow
def test_the_cli_cuts_a_runs_evidence_from_a_real_clip(boats, tmp_path):
    model = ScriptedModel(
        [tool_call("inspect_frames", span="00:00:02-00:00:08"), answer("boats", evidence=["2.5-4", "6-8"])]
    )
    result = Agent(model=model, policy="plain", memory=False, trace_dir=tmp_path).run(boats, "What is on the water?")
    out = subprocess.run(
        [sys.executable, "-m", "mcr.cli.main", "clips", result.trace_path, str(tmp_path / "out"), "--margin", "0.5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    made = sorted((tmp_path / "out").glob("clip-*.mp4"))
    assert len(made) == 2
    frame = 1.0 / Video(boats).fps
    for path, (a, b) in zip(made, [(2.0, 4.5), (5.5, 8.5)]):
        assert abs(length(path) - (b - a)) <= frame + 1e-6
    assert Image.open(tmp_path / "out" / "contact.jpg").format == "JPEG"
