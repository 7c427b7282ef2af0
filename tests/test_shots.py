"""The ``shots`` stage on real footage (../shared/media, hand labels in data/shot_labels.json)
and on made cases: a colour change at equal brightness, a slow pan, a flash frame, a
dissolve and a fade through black."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from media import H264, ffmpeg, shared_clip

from mcr.media.video import Video
from mcr.memory import Memory, VideoIndex
from mcr.tools.shots import ShotStage, shot_spans

LABELS = json.loads((Path(__file__).parent / "data" / "shot_labels.json").read_text())


@pytest.fixture
def memory(tmp_path):
    m = Memory(tmp_path / "memory.db")
    yield m
    m.close()


def boundaries(path: Path, memory: Memory, **settings) -> list:
    video = Video(path)
    report = VideoIndex(video, memory).build([ShotStage(**settings)])[0]
    assert report.status == "built", report
    return sorted(VideoIndex(video, memory).entries("shots"), key=lambda e: e.span.end)


@pytest.mark.slow
def test_megamind_cuts_are_found_where_labelled(memory):
    path = shared_clip("megamind.mp4")
    found = boundaries(path, memory)
    labelled = LABELS["cuts"]["megamind.mp4"]
    internal = [e for e in found if e.span.end > 0.5]  # the picture starts from black at 0.083 s
    assert len(internal) == len(labelled), [(e.span, e.data) for e in found]
    for entry, cut in zip(internal, labelled):
        assert abs(entry.span.end - cut) <= 0.5 and entry.data["transition"] == "cut"
        assert (
            entry.span.start < cut <= entry.span.end + 0.01
        )  # last frame before .. first frame after (labels: 3 decimals)
    assert len(shot_spans(found, Video(path).duration)) == len(found) + 1


@pytest.mark.slow
def test_people_walking_past_a_fixed_camera_are_no_cut(memory):
    assert boundaries(shared_clip("pedestrians.mp4"), memory) == []


def test_a_colour_change_at_equal_brightness_is_a_cut(tmp_path, memory):
    # (200, 100, 100) and (60, 160, 140): luma 129.9 and 127.8, one level apart in grey
    path = tmp_path / "colour.mp4"
    inputs = []
    for colour in ("0xC86464", "0x3CA08C"):
        inputs += ["-f", "lavfi", "-t", "3", "-i", f"color=c={colour}:size=320x240:rate=25"]
    ffmpeg(*inputs, "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0[v]", "-map", "[v]", *H264, str(path))
    found = boundaries(path, memory)
    assert len(found) == 1 and found[0].data["transition"] == "cut", [(e.span, e.data) for e in found]
    assert abs(found[0].span.end - 3.0) <= 0.3


@pytest.mark.slow
def test_a_slow_pan_is_no_cut(tmp_path, memory):
    still = tmp_path / "fractal.png"
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=1280x720", "-frames:v", "1", str(still))
    path = tmp_path / "pan.mp4"
    crop = "crop=320:240:x='60*t':y=200,fps=25,format=yuv420p"
    ffmpeg("-loop", "1", "-t", "12", "-i", str(still), "-vf", crop, *H264, str(path))
    assert boundaries(path, memory) == []


def test_a_flash_frame_is_no_cut(tmp_path, memory):
    path = tmp_path / "flash.mp4"
    box = "drawbox=enable='eq(n,75)':color=white:t=fill,format=yuv420p"  # frame 75 is on screen at 3.0 s
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "6", "-vf", box, *H264, str(path))
    assert boundaries(path, memory, fps=4.0) == []


def test_a_dissolve_and_a_fade_are_one_gradual_boundary_each(tmp_path, memory):
    # testsrc2 dissolves into smptebars over 3-4 s, which fades through black into mandelbrot over 6-7 s
    path = tmp_path / "gradual.mp4"
    inputs = []
    for source in ("testsrc2", "smptebars", "mandelbrot"):
        inputs += ["-f", "lavfi", "-t", "4", "-i", f"{source}=size=320x240:rate=25"]
    graph = (
        "[0:v]settb=AVTB[a];[1:v]settb=AVTB[b];[2:v]settb=AVTB[c];"
        "[a][b]xfade=transition=fade:duration=1:offset=3[ab];"
        "[ab][c]xfade=transition=fadeblack:duration=1:offset=6,format=yuv420p[v]"
    )
    ffmpeg(*inputs, "-filter_complex", graph, "-map", "[v]", *H264, str(path))
    found = boundaries(path, memory)
    assert [e.data["transition"] for e in found] == ["gradual", "gradual"], [(e.span, e.data) for e in found]
    for entry, (start, end) in zip(found, [(3.0, 4.0), (6.0, 7.0)]):
        assert entry.span.start < end and entry.span.end > start  # overlaps the transition
        assert start - 0.5 <= entry.span.start and entry.span.end <= end + 0.5  # and is no wider than it


def test_the_stage_over_short_chunks_finds_each_boundary_once(tmp_path, memory):
    path = tmp_path / "gradual.mp4"
    inputs = []
    for source in ("testsrc2", "smptebars", "mandelbrot"):
        inputs += ["-f", "lavfi", "-t", "4", "-i", f"{source}=size=320x240:rate=25"]
    graph = "[0:v][1:v]xfade=transition=fade:duration=1:offset=3[ab];[ab][2:v]concat=n=2:v=1:a=0,format=yuv420p[v]"
    ffmpeg(*inputs, "-filter_complex", graph, "-map", "[v]", *H264, str(path))
    found = boundaries(path, memory, chunk_s=3.5)  # the dissolve crosses a chunk edge at 3.5 s
    assert [(e.data["transition"], round(e.span.end)) for e in found] == [("gradual", 4), ("cut", 7)]


@pytest.mark.slow
def test_a_fade_out_and_in_on_real_footage_is_one_gradual_boundary(tmp_path, memory):
    # pedestrians fades to black over 3.2-4.0 s, boats fades in from black over 4.0-4.8 s (ffmpeg fade)
    walk, boats = shared_clip("pedestrians.mp4"), shared_clip("boats.mp4")
    path = tmp_path / "fade.mp4"
    scale = "scale=480:270,setsar=1"
    graph = (
        f"[0:v]{scale},fade=t=out:st=3.2:d=0.8,fps=24,format=yuv420p[a];"
        f"[1:v]{scale},fade=t=in:st=0:d=0.8,fps=24,format=yuv420p[b];[a][b]concat=n=2:v=1:a=0[v]"
    )
    ffmpeg(
        "-ss",
        "20",
        "-t",
        "4",
        "-i",
        str(walk),
        "-t",
        "4",
        "-i",
        str(boats),
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        *H264,
        str(path),
    )
    found = boundaries(path, memory)
    assert [e.data["transition"] for e in found] == ["gradual"], [(e.span, e.data) for e in found]
    assert 2.7 <= found[0].span.start <= 3.5 and 4.5 <= found[0].span.end <= 5.3


def test_find_cuts_on_frames_in_memory():
    from mcr.tools.shots import find_cuts

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (6, 8, 3)).repeat(12, 0).repeat(12, 1).astype(np.float32) for _ in range(2))
    times = [k / 4 for k in range(24)]
    cut = np.stack([a] * 12 + [b] * 12).astype(np.uint8)
    assert [(x.transition, x.start, x.end) for x in find_cuts(times, cut)] == [("cut", 2.75, 3.0)]
    flash = np.stack([a] * 24)
    flash[12] = 255
    assert find_cuts(times, flash.astype(np.uint8)) == []
    mix = np.clip((np.arange(24) - 8) / 8, 0, 1)[:, None, None, None]  # a dissolve from 2 s to 4 s
    dissolve = ((1 - mix) * a + mix * b).astype(np.uint8)
    assert [(x.transition, x.start, x.end) for x in find_cuts(times, dissolve)] == [("gradual", 2.0, 4.0)]
    assert find_cuts([0.0], cut[:1]) == [] and find_cuts(times[:2], cut[:2, :4, :4]) == []


def test_the_shots_tool_says_which_boundaries_are_fades(tmp_path):
    from mcr.tools import ToolContext, ToolRegistry
    from mcr.tools.shots import shots
    from mcr.types import ToolCall

    path = tmp_path / "dissolve.mp4"
    inputs = []
    for source in ("testsrc2", "smptebars"):
        inputs += ["-f", "lavfi", "-t", "4", "-i", f"{source}=size=320x240:rate=25"]
    graph = "[0:v][1:v]xfade=transition=fade:duration=1:offset=3,format=yuv420p[v]"
    ffmpeg(*inputs, "-filter_complex", graph, "-map", "[v]", *H264, str(path))
    result = ToolRegistry([shots]).execute(ToolCall("shots", {}, "c1"), ToolContext(video=Video(path)))
    assert not result.is_error and "2 shots" in result.text and "(1 of them fades or dissolves)" in result.text
    assert len(result.metadata["cuts"]) == 1 and 3.0 <= result.metadata["cuts"][0] <= 4.5
