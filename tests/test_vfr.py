"""Frames of a variable-frame-rate video: chosen and reported by their real presentation times.

The test video shows its own frame number as bars (``media.read_code``) and runs at 24 fps,
then 8 fps from 2 s to 5 s, then 24 fps again; ffprobe's list of frame times is the truth.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from media import CODE_BITS, ffmpeg, read_code

from mcr.media.video import Video

# frames 0-47 at 24 fps (0 .. 2 s), 48-71 at 8 fps (2 .. 5 s), 72-95 at 24 fps (5 .. 6 s)
WARP = "if(lt(N,48),N/24,if(lt(N,72),2+(N-48)/8,5+(N-72)/24))/TB"


@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    """(path, the presentation time of every frame as ffprobe reads it)."""
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    bars = f"255*mod(floor(N/pow(2,floor(X*{CODE_BITS}/W))),2)"
    source = f"color=c=gray:size=160x96:rate=24:duration=4,format=gray,geq=lum='{bars}',setpts='{WARP}'"
    # B-frames on, so that decode order differs from presentation order
    ffmpeg(
        "-f", "lavfi", "-i", source, "-fps_mode", "vfr",
        "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "24", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time", "-of", "csv=p=0"]
        + [str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pts = np.array([float(x.strip(",")) for x in out.split()])
    steps = np.round(np.diff(pts), 4)
    assert len(pts) == 96 and {0.0417, 0.125} <= set(steps.tolist())  # really two frame rates
    return path, pts


def check_frames(frames, pts: np.ndarray) -> None:
    """Each frame is the one its index names, and its timestamp is that frame's real time."""
    codes = [read_code(image) for image in frames.images]
    assert codes == frames.indices
    assert np.allclose(frames.timestamps, pts[codes], atol=1e-3), (frames.timestamps, pts[codes].tolist())


@pytest.mark.parametrize(
    "start,end,fps",
    [(2.1, 4.1, 24), (2.1, 4.1, 4), (2.1, 4.1, 1), (4.95, 5.5, 24), (3.3, 5.2, 10), (0.01, 2.3, 6)],
)
def test_vfr_frames_begin_inside_the_requested_span(vfr, start, end, fps):
    path, pts = vfr
    frames = Video(path).frames(f"{start}-{end}", fps=fps)
    check_frames(frames, pts)
    times = np.asarray(frames.timestamps)
    assert len(times) and (times >= start - 1e-3).all() and (times < end).all(), times.tolist()
    assert (np.diff(times) > 0).all()
    if fps >= 24:  # at the video's top rate every frame inside the span comes, from the first on
        inside = pts[(pts >= start) & (pts < end)]
        assert np.allclose(times, inside, atol=1e-3), (times.tolist(), inside.tolist())


def test_vfr_timestamps_are_the_frames_presentation_times(vfr):
    path, pts = vfr
    video = Video(path)
    assert video.frame_count == 96 and abs(video.duration - 6.0) < 0.05
    frames = video.frames(fps=100)  # every frame once
    assert frames.indices == list(range(96))
    check_frames(frames, pts)


def test_vfr_span_between_two_frames_and_frame_at(vfr):
    path, pts = vfr
    video = Video(path)
    one = video.frames("2.01-2.1", fps=5)  # no frame begins inside: the one on screen then
    assert one.indices == [48] and abs(one.timestamps[0] - 2.0) < 1e-3
    shown = video.frame_at(2.3)  # frame_at keeps "the frame on screen at t"
    assert shown.indices == [50] and abs(shown.timestamps[0] - pts[50]) < 1e-3
