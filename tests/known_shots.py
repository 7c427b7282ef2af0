"""The shots of the generated cut video (``media.make_cut_video``: six 4 s shots) stored as the
``shots`` stage would store them, so tests of what is built on shots do not depend on the detector
(tests/test_perception.py and tests/test_shots.py check it)."""

from __future__ import annotations

from mcr.media.video import Video
from mcr.memory import ChunkResult, MemoryEntry, VideoIndex
from mcr.tools.shots import ShotStage
from mcr.types import TimeSpan

SHOT_STARTS = [0, 4, 8, 12, 16, 20]


class KnownShots(ShotStage):
    """The ``shots`` stage with the cut video's known cuts."""

    def run_chunk(self, video, span):
        cuts = [t for t in SHOT_STARTS[1:] if span.start <= t < span.end]
        return ChunkResult([MemoryEntry(f"shot cut at {t}", "shot", span=TimeSpan(t - 0.25, t)) for t in cuts])


def known_shots(video_path, memory) -> None:
    """Store the cut video's five cuts in ``memory``."""
    (report,) = VideoIndex(Video(video_path), memory).build([KnownShots()])
    assert report.status == "built" and report.entries == 5
