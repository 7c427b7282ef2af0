"""Checking a video file before a decoder sees it, and the errors a video can raise.

``_probe`` opens the file with PyAV, which fails cleanly where decord may not, and returns its
metadata; FFmpeg's numeric error codes are put in plain words for the messages.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

from mcr.errors import MCRError

_STILL_FORMATS = {"image2", "image2pipe", "png", "apng", "webp"}
REENCODE = "re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4`"


class VideoError(MCRError):
    """A video could not be opened or decoded; the message names the file and a fix."""


class DamagedMedia(VideoError):
    """Part of the file cannot be decoded: the frames or audio of some span are damaged."""


class NoAudioError(VideoError):
    """``audio()`` was asked of a video that has no audio track."""


# FFmpeg's error codes (AVERROR, as decoders report them, with either sign) in plain words
_AV_ERRORS = {
    1094995529: "invalid data: the file is damaged or cut short",
    541478725: "unexpected end of the file: it is cut short",
    1414092869: "the decoder found no usable data here",
}
_DECORD_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+\.cc:\d+: ")


def _short(err: BaseException) -> str:
    """A library's error in a few plain words for our own messages: FFmpeg's numeric codes named,
    the decoder's source locations dropped, the last line kept."""
    text = str(err)
    for code in re.findall(r"-?\d{9,10}", text):
        if abs(int(code)) in _AV_ERRORS:
            return _AV_ERRORS[abs(int(code))]
    lines = _DECORD_PREFIX.sub("", text).strip().splitlines()
    return (lines[-1] if lines else type(err).__name__)[:300]


def _probe(p: pathlib.Path) -> dict:
    """Check the file with PyAV before decord sees it; return its metadata."""
    if not p.exists():
        raise VideoError(f"video file not found: {p} (check the path)")
    if p.is_dir():
        raise VideoError(f"{p} is a directory, not a video file; pass the path of a video inside it")
    if not p.is_file():
        raise VideoError(f"{p} is not a regular file; pass the path of a video file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p} is empty (0 bytes); the file was not written or downloaded completely")
    import av

    try:
        container = av.open(str(p))
    except Exception as err:
        raise VideoError(
            f"{p} is not a video that FFmpeg can read ({_short(err)}); check that it is a video file and "
            "that it was copied completely (an mp4 cut short loses its index and fails like this)"
        ) from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{p} has no video stream (an audio-only or data file?); pass a video file")
        stream = container.streams.video[0]
        fmt = container.format.name
        if fmt in _STILL_FORMATS or fmt.endswith("_pipe"):
            raise VideoError(
                f"{p} is a still image ({fmt}), not a video; load it as an image, or make a video of it "
                "with `ffmpeg -loop 1 -t 5 -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4`"
            )
        tb = stream.time_base
        t0 = float(stream.start_time * tb) if stream.start_time and tb else 0.0
        duration = None
        if stream.duration and tb:
            duration = float(stream.duration * tb)
        elif container.duration:  # the container's end, less where the video starts
            duration = (container.duration + (container.start_time or 0)) / 1_000_000 - t0
        rate = stream.average_rate or stream.guessed_rate
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        if width <= 0 or height <= 0:
            raise VideoError(f"{p}: the video stream has no picture size; {REENCODE}")
        if duration is not None and duration <= 0:
            raise VideoError(f"{p}: the video has zero duration; {REENCODE}")
        if not _first_frame_decodes(container, stream):
            raise VideoError(f"{p}: the first frame cannot be decoded (damaged, or a codec not supported); {REENCODE}")
        end = _data_end(container, stream, duration) if duration and duration > 2.0 else None
        return {
            "cut_at": end if end is not None and end < 0.9 * duration - 1.0 else None,
            "width": width,
            "height": height,
            "fps": float(rate) if rate else 0.0,
            "duration": duration,
            "has_audio": bool(container.streams.audio),
            "start": t0,
        }


def _first_frame_decodes(container: Any, stream: Any, max_packets: int = 600) -> bool:
    """True when a frame decodes from the start (damaged packets tolerated)."""
    import av

    try:
        for k, packet in enumerate(container.demux(stream)):
            try:
                if packet.decode():
                    return True
            except av.FFmpegError:
                pass
            if k >= max_packets:
                break
    except Exception:
        pass
    return False


def _data_end(container: Any, stream: Any, duration: float) -> float | None:
    """Seconds of video data actually present: the last packet's time, reading on
    from a seek near the stated end (no decoding). None when it cannot be told."""
    first = stream.start_time or 0
    last = None
    try:
        container.seek(int((duration - 1.0) / stream.time_base) + first, stream=stream)
        for packet in container.demux(stream):
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is not None:
                t = float((pts - first) * stream.time_base)
                last = t if last is None else max(last, t)
    except Exception:
        pass
    return last
