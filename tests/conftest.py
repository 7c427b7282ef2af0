"""Shared fixtures. Generated test videos are made once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:  # make tests/media.py importable as `media`
    sys.path.insert(0, str(Path(__file__).parent))

from media import make_code_video, make_long_video, shared_clip


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
