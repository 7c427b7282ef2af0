"""Shared fixtures. Generated test videos are made once per session."""

from __future__ import annotations

import shutil

import pytest
from media import H264, ffmpeg, make_code_video, make_long_video, shared_clip


@pytest.fixture(scope="session")
def code_video(tmp_path_factory):
    """10 s, 25 fps, 320x240, frame numbers drawn as bars; 440 Hz tone from 5 s (stereo AAC)."""
    return make_code_video(tmp_path_factory.mktemp("video") / "code.mp4")


@pytest.fixture(scope="session")
def ntsc_video(tmp_path_factory):
    """4 s at 30000/1001 fps, 240x180, frame numbers drawn as bars, no audio."""
    path = tmp_path_factory.mktemp("video") / "ntsc.mp4"
    return make_code_video(path, seconds=4, rate="30000/1001", size="240x180", tone_hz=None)


@pytest.fixture(scope="session")
def long_video(tmp_path_factory):
    """10 minutes, 5 fps, 320x240 test pattern, no audio."""
    return make_long_video(tmp_path_factory.mktemp("video") / "long.mp4")


@pytest.fixture(scope="session")
def short_video(tmp_path_factory):
    """12.5 s, 24 fps, 640x360, frame numbers drawn as bars, a 440 Hz tone throughout: for tests of
    the loop and its outputs, where what the frames show does not matter."""
    path = tmp_path_factory.mktemp("video") / "short.mp4"
    return make_code_video(path, seconds=12.5, rate="24", size="640x360", tone_from=0.0)


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory):
    """2 s, 160x120, 10 fps test pattern, no audio."""
    path = tmp_path_factory.mktemp("video") / "tiny.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=2", *H264, str(path))
    return path


@pytest.fixture
def boats():
    """The real clip ``../shared/media/boats.mp4`` (12.5 s, boats on water); skips the test when absent."""
    return shared_clip("boats.mp4")


@pytest.fixture(autouse=True)
def _workspace(tmp_path, monkeypatch):
    """Each test works in its own folder, so the default workspace (.mcr/) never leaks between tests."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def cut_video(tmp_path_factory):
    """24 s, six shots of different test sources: cuts at 4, 8, 12, 16 and 20 s."""
    from media import make_cut_video

    return make_cut_video(tmp_path_factory.mktemp("video") / "cuts.mp4")


@pytest.fixture(scope="session")
def cue_video(tmp_path_factory):
    """63 s, 640x360, 10 fps: five espeak-ng sentences starting at known times and five
    drawn texts shown at known times (``media.SPOKEN_CUES``, ``media.DRAWN_CUES``)."""
    from media import make_cue_video

    return make_cue_video(tmp_path_factory.mktemp("video") / "cues.mp4")


@pytest.fixture(scope="session")
def object_video(tmp_path_factory):
    """6 s, 320x240: a white box moving right over black."""
    from media import make_object_video

    return make_object_video(tmp_path_factory.mktemp("video") / "object.mp4")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """An open_clip folder (config + random weights) for a 32-dim CLIP; skips without open_clip."""
    pytest.importorskip("open_clip")
    from tiny_vision import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture
def media(tmp_path, boats):
    """A media root holding a copy of the real clip ``boats.mp4`` (the service tests serve it)."""
    root = tmp_path / "media"
    root.mkdir()
    shutil.copy(boats, root / "boats.mp4")
    return root
