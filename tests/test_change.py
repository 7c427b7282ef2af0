"""Frames that look the same are read once: the change test on test-made and real video,
and frame embeddings shared between frames that look the same."""

from __future__ import annotations

import numpy as np
import pytest
from media import FONT, H264, ffmpeg, shared_clip

from mcr.media.video import Video
from mcr.tools.change import ChangeGate
from mcr.tools.clip import SAME_FRAME, EmbeddingStage
from mcr.tools.sampling import sample_times, stream_frames


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """12 s at 10 fps: three still 'slides' of 4 s each (a test card, bars, a colour), with noise
    from the encoder only."""
    path = tmp_path_factory.mktemp("slides") / "slides.mp4"
    ffmpeg(
        *("-f", "lavfi", "-t", "4", "-i", "testsrc=size=320x240:rate=10"),
        *("-f", "lavfi", "-t", "4", "-i", "smptebars=size=320x240:rate=10"),
        *("-f", "lavfi", "-t", "4", "-i", "color=c=navy:size=320x240:rate=10"),
        "-filter_complex", "[0:v]trim=end_frame=1,loop=39:1:0,setpts=N/10/TB[a];[a][1:v][2:v]concat=n=3:v=1[v]",
        "-map", "[v]", *H264, "-g", "20", str(path),
    )  # fmt: skip
    return path


def passed(path, fps: float) -> tuple[int, int]:
    video = Video(path)
    gate = ChangeGate(SAME_FRAME)
    for _, image in stream_frames(video, sample_times(video.span, fps), max_pixels=224 * 168):
        gate.changed(image)
    return gate.passed, gate.seen


@pytest.mark.slow
def test_still_frames_are_passed_over_and_moving_ones_are_not(slides):
    assert passed(slides, 2.0) == (3, 24)  # one frame of each slide
    for name in ("boats.mp4", "pedestrians.mp4", "kitchen_segment3.mp4"):  # real footage moves in every frame
        new, seen = passed(shared_clip(name), 1.0)
        assert new == seen, (name, new, seen)


def test_a_small_caption_change_counts():
    base = np.full((360, 640, 3), 40, np.uint8)
    gate = ChangeGate(SAME_FRAME)
    assert gate.changed(base) and not gate.changed(base + np.random.default_rng(0).integers(0, 2, base.shape, np.uint8))
    caption = base.copy()
    caption[320:340, 280:360] = 230  # a short white word at the bottom
    assert gate.changed(caption) and not gate.changed(caption) and gate.changed(base, force=True)


def test_frames_that_look_the_same_share_an_embedding(slides, tiny_clip_dir, monkeypatch):
    monkeypatch.setenv("MCR_CLIP_MODEL", str(tiny_clip_dir))
    video = Video(slides)
    shared = EmbeddingStage(fps=2.0, share=True).run_chunk(video, video.span)
    alone = EmbeddingStage(fps=2.0, share=False).run_chunk(video, video.span)
    assert (shared.info["frames"], shared.info["frames_embedded"]) == (24, 3) and alone.info["frames_embedded"] == 24
    a, b = shared.arrays[0.0], alone.arrays[0.0]
    assert np.array_equal(a[:, 0], b[:, 0])
    cosine = (a[:, 1:] * b[:, 1:]).sum(1)
    assert cosine.min() > 1 - 1e-4, cosine.min()  # the frames of a still slide embed alike anyway
    assert EmbeddingStage(share=True).version != EmbeddingStage(share=False).version


@pytest.mark.slow
def test_on_screen_text_is_read_only_from_frames_that_changed(slides):
    from mcr.tools.ocr import OcrStage

    result = OcrStage(fps=1.0).run_chunk(Video(slides), Video(slides).span)
    assert (result.info["frames"], result.info["frames_read"]) == (12, 3)  # one frame of each still slide


@pytest.fixture(scope="module")
def colour_cut(tmp_path_factory):
    """8 s: the same white words on red, then on green of the same grey level (a cut that the
    grey cells of the change test do not see, and the shot detector's colour planes do)."""
    path = tmp_path_factory.mktemp("colour_cut") / "colour_cut.mp4"
    ffmpeg(
        *("-f", "lavfi", "-t", "4", "-i", "color=c=0xB40000:size=640x360:rate=10"),
        *("-f", "lavfi", "-t", "4", "-i", "color=c=0x00B400:size=640x360:rate=10"),
        "-filter_complex",
        f"[0:v][1:v]concat=n=2:v=1,drawtext=fontfile={FONT}:text='SAME WORDS':fontsize=40:fontcolor=white:x=200:y=150[v]",
        "-map", "[v]", *H264, str(path),
    )  # fmt: skip
    return path


@pytest.mark.slow
@pytest.mark.parametrize("one_pass", ["1", "0"])
def test_each_shots_representative_frame_is_read(colour_cut, tmp_path, monkeypatch, one_pass):
    pytest.importorskip("rapidocr_onnxruntime")
    from mcr.memory import Memory, VideoIndex
    from mcr.tools.ocr import OcrStage, shot_frames
    from mcr.tools.shots import ShotStage

    video = Video(colour_cut)
    alone = OcrStage(fps=1.0).run_chunk(video, video.span)  # no shots known: the change test alone
    assert (alone.info["frames"], alone.info["frames_read"], alone.info["frames_forced"]) == (8, 1, 0)
    monkeypatch.setenv("MCR_INDEX_ONEPASS", one_pass)
    index = VideoIndex(video, Memory(tmp_path / "index.db"))
    shots, ocr = index.build([ShotStage(), OcrStage(fps=1.0)])
    cuts = [e.span.end for e in index.entries("shots")]
    assert len(cuts) == 1 and abs(cuts[0] - 4.0) < 0.3
    times = list(sample_times(video.span, 1.0))
    chosen = shot_frames(times, video.span, cuts)
    assert len(chosen) == 2 and chosen[0] < cuts[0] < chosen[1]
    forced = len(set(chosen) - {times[0]})  # the first frame is read anyway
    assert ocr.info["frames_forced"] == forced >= 1
    assert ocr.info["frames_read"] == 1 + forced
    assert [e.text for e in index.entries("ocr")] == ["SAME WORDS"]
