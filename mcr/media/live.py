"""Live sources read as they arrive and cut into segment files.

``LiveReader(source, folder).run()`` opens an ``rtsp://`` (over TCP), ``rtmp://``, ``udp://``,
``srt://`` or HLS (``.m3u8``) address, a webcam (``webcam:0``, ``/dev/video0``) or a growing
file with PyAV (read timeouts on every source), decodes frames and audio as they come, and
writes them into segment files of ``segment_s`` seconds (H.264 and 16 kHz mono AAC in MP4;
each starts on a frame), handing each finished one to ``on_segment``. Stream time is the
source's own clock from its first frame; when the source drops, the reader waits and opens it
again with growing pauses (``on_gap`` is told the wall-clock gap) and stream time goes on from
where it stopped. Only the frame being encoded is held: memory does not grow with the stream.
``stop()`` (or Ctrl-C in the thread that runs it) ends the reading and flushes the last segment.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from mcr.errors import MCRError

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000
MAX_WIDTH = 1280  # wider sources are scaled down before encoding


class LiveError(MCRError):
    """A live source that cannot be read: the message names it and the cause."""


@dataclass
class Segment:
    """One finished segment file and where it lies in the stream and on the wall clock."""

    index: int
    path: Path
    start: float  # stream time of its first frame, seconds
    end: float
    wall_start: float  # time.time() when its first frame arrived
    wall_end: float
    frames: int = 0

    def to_dict(self) -> dict:
        return {**self.__dict__, "path": str(self.path)}


@dataclass
class Gap:
    """The source was gone from ``wall_start`` to ``wall_end``; stream time stood at ``at``."""

    at: float
    wall_start: float
    wall_end: float
    reason: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def is_live(spec: str) -> bool:
    """Whether ``spec`` names a live source rather than a video file or page."""
    text = str(spec).strip()
    low = text.lower()
    schemes = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "udp://", "srt://", "rtp://", "tcp://")
    return low.startswith(schemes + ("webcam:", "/dev/video")) or low.split("?")[0].endswith(".m3u8")


def open_args(spec: str) -> tuple[str, str | None, dict, bool]:
    """``(url, format, options, growing_file)`` for PyAV's ``av.open``."""
    text = str(spec).strip()
    low = text.lower()
    if low.startswith("webcam:"):
        return f"/dev/video{text.split(':', 1)[1] or '0'}", "v4l2", {}, False
    if low.startswith("/dev/video"):
        return text, "v4l2", {}, False
    if low.startswith(("rtsp://", "rtsps://")):
        return text, None, {"rtsp_transport": "tcp"}, False
    if low.startswith("udp://"):
        return text, None, {"overrun_nonfatal": "1", "fifo_size": "500000"}, False
    if is_live(text):
        return text, None, {}, False
    path = Path(text).expanduser()
    if not path.is_file():
        raise LiveError(f"{text} is not a live source nor a file (rtsp://, rtmp://, udp://, srt://, .m3u8, webcam:N)")
    return f"file:{path.resolve()}", None, {"follow": "1"}, True


class SegmentWriter:
    """Frames and audio of one segment encoded into an MP4 file."""

    def __init__(self, path: Path, width: int, height: int, rate: Fraction, audio: bool) -> None:
        import av

        self.path = path
        self.out = av.open(str(path), "w", format="mp4")
        scale = min(1.0, MAX_WIDTH / max(width, 1))
        self.size = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
        self.rate = rate
        self.v = self.out.add_stream("libx264", rate=rate)
        self.v.width, self.v.height = self.size
        self.v.pix_fmt = "yuv420p"
        self.v.options = {"preset": "ultrafast", "crf": "26", "g": str(max(1, int(rate * 2)))}
        self.a = None
        if audio:
            self.a = self.out.add_stream("aac", rate=SAMPLE_RATE)
            self.a.layout = "mono"
            self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=SAMPLE_RATE)
        self.last_pts = -1
        self.samples = 0
        self.frames = 0

    def video(self, frame: Any, t: float) -> None:
        pts = int(round(t * self.rate))
        if pts <= self.last_pts:  # two frames in one tick: the later is left out
            return
        out = frame.reformat(width=self.size[0], height=self.size[1], format="yuv420p")
        out.pts, out.time_base = pts, Fraction(1) / self.rate
        self.last_pts = pts
        self.frames += 1
        self.out.mux(self.v.encode(out))

    def audio(self, frame: Any, t: float) -> None:
        if self.a is None:
            return
        expected = int(round(max(0.0, t) * SAMPLE_RATE))
        if expected > self.samples + SAMPLE_RATE // 10:  # audio missing for a while: keep it in place
            self.samples = expected
        frame.pts = None
        for f in self.resampler.resample(frame):
            f.pts, f.time_base = self.samples, Fraction(1, SAMPLE_RATE)
            self.samples += f.samples
            self.out.mux(self.a.encode(f))

    def close(self) -> None:
        try:
            self.out.mux(self.v.encode(None))
            if self.a is not None:
                self.out.mux(self.a.encode(None))
        finally:
            self.out.close()


class LiveReader:
    """Reads ``source`` into segment files under ``folder`` until stopped (see the module)."""

    def __init__(
        self,
        source: str,
        folder: str | Path,
        segment_s: float = 10.0,
        on_segment: Callable[[Segment], None] | None = None,
        on_gap: Callable[[Gap], None] | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float | None = None,
        first_index: int = 1,
        start_at: float = 0.0,
        on_failure: Callable[[int, str], None] | None = None,
        give_up_after_s: float | None = 60.0,
    ) -> None:
        self.source = source
        self.url, self.format, self.options, self.growing = open_args(source)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.segment_s = float(segment_s)
        self.on_segment = on_segment or (lambda s: None)
        self.on_gap = on_gap or (lambda g: None)
        self.hls = self.url.lower().split("?")[0].endswith(".m3u8")
        # no data for this long counts as a drop (HLS waits on playlist reloads: longer)
        self.timeouts = (open_timeout_s, read_timeout_s or (30.0 if self.hls else 5.0))
        self.seen_until: float | None = None  # HLS: the source time read so far (a reopened playlist repeats)
        self.next_index = first_index
        self.offset = start_at  # stream time where the next connection's first frame lands
        self._stop = threading.Event()
        self.connections = 0
        self.segments = 0  # segment files finished; none yet means the source never gave anything
        self.on_failure = on_failure or (lambda attempt, reason: None)
        self.give_up_after_s = give_up_after_s
        self.error: str = ""  # why the reader gave up, when it did

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Read until stopped (or, for a growing file, until it stops growing). A source that has
        given no segment yet is tried again with growing pauses, each failed try reported through
        ``on_failure``, until ``give_up_after_s`` has passed; then ``error`` says why."""
        pause, lost_at, reason = 0.5, None, ""
        began, attempts = time.monotonic(), 0
        while not self._stop.is_set():
            try:
                container = self._open()
            except Exception as exc:  # noqa: BLE001 - any failure to open is retried
                reason = _reason(exc)
                attempts += 1
                if self.segments == 0:
                    self.on_failure(attempts, reason)
                    if self._gave_up(began, attempts, reason):
                        break
                lost_at = lost_at or time.time()
                self._stop.wait(pause)
                pause = min(10.0, pause * 2)
                continue
            if lost_at is not None and self.connections > 0:
                self.on_gap(Gap(round(self.offset, 3), lost_at, time.time(), reason))
            self.connections += 1
            pause, lost_at = 0.5, None
            reason, ended = self._read(container)
            if self.segments == 0 and not self._stop.is_set():  # it opened, but nothing came of it
                attempts += 1
                self.on_failure(attempts, reason)
                if self.growing:
                    self.error = f"{self.source} holds no video that can be read ({reason})"
                    break
                if self._gave_up(began, attempts, reason):
                    break
            if self.growing or self._stop.is_set() or (ended and self.hls):  # a playlist that ended: over
                break
            timed_out = reason.startswith("no data for")  # the data stopped a read timeout ago
            lost_at = time.time() - self.timeouts[1] if timed_out else time.time()
            log.info("%s dropped (%s); opening it again", self.source, reason)

    def _gave_up(self, began: float, attempts: int, reason: str) -> bool:
        if self.give_up_after_s is None or time.monotonic() - began < self.give_up_after_s:
            return False
        self.error = (
            f"{self.source} gave nothing after {attempts} tries over {self.give_up_after_s:g} s ({reason}); "
            "check the address and that the sender is running"
        )
        return True

    def _open(self) -> Any:
        import av

        return av.open(self.url, format=self.format, options=dict(self.options), timeout=self.timeouts)

    def _read(self, container: Any) -> tuple[str, bool]:
        """Decode one connection into segments; returns why it ended, and whether it ended
        cleanly (the source said so) rather than by an error or a timeout."""
        import av

        writer: SegmentWriter | None = None
        seg_start = wall_start = 0.0
        last = self.offset
        base = prev = None
        reason, ended = "the stream ended", True
        try:
            streams = [s for s in (container.streams.video[:1] + container.streams.audio[:1])]
            vstream = container.streams.video[0] if container.streams.video else None
            if vstream is None:
                raise LiveError(f"{self.source} has no video stream")
            rate = vstream.average_rate or vstream.guessed_rate or Fraction(25)
            rate = Fraction(max(1, round(float(rate)))) if float(rate) > 0 else Fraction(25)
            has_audio = bool(container.streams.audio)
            for frame in container.decode(*streams):
                if self._stop.is_set():
                    reason = "stopped"
                    break
                if frame.time is None:
                    continue
                is_video = isinstance(frame, av.VideoFrame)
                if self.hls and self.seen_until is not None and frame.time <= self.seen_until:
                    continue  # already read before the playlist was opened again
                if base is None:
                    if not is_video:
                        continue  # a segment starts on a frame
                    base = prev = frame.time
                if is_video and (frame.time < prev - 1.0 or frame.time > prev + 30.0):
                    base, self.offset = frame.time, last  # the source's clock jumped (a restarted sender)
                t = self.offset + (frame.time - base)
                if is_video:
                    prev = frame.time
                    if self.hls:
                        self.seen_until = frame.time
                if is_video:
                    if writer is not None and t >= seg_start + self.segment_s:
                        self._finish(writer, seg_start, t, wall_start)
                        writer = None
                    if writer is None:
                        seg_start, wall_start = t, time.time()
                        path = self.folder / f"seg-{self.next_index:05d}.mp4"
                        writer = SegmentWriter(path, frame.width, frame.height, rate, has_audio)
                    writer.video(frame, t - seg_start)
                    last = max(last, t + 1.0 / float(rate))
                elif writer is not None and t >= seg_start:
                    writer.audio(frame, t - seg_start)
        except Exception as exc:  # noqa: BLE001 - a dropped source: the caller opens it again
            reason, ended = _reason(exc), False
            if "immediate exit" in reason.lower():  # PyAV's read timeout
                reason = f"no data for {self.timeouts[1]:g} s"
        finally:
            if writer is not None:
                self._finish(writer, seg_start, last, wall_start)
            self.offset = last
            container.close()
        return reason, ended

    def _finish(self, writer: SegmentWriter, start: float, end: float, wall_start: float) -> None:
        writer.close()
        if writer.frames == 0:
            writer.path.unlink(missing_ok=True)
            return
        segment = Segment(self.next_index, writer.path, round(start, 3), round(end, 3), wall_start, time.time())
        segment.frames = writer.frames
        self.next_index += 1
        self.segments += 1
        self.on_segment(segment)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


__all__ = ["Gap", "LiveError", "LiveReader", "Segment", "is_live", "open_args"]
