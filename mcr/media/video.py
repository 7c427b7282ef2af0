"""The Video handle: metadata, frames with their real timestamps, and audio.

Frames are decoded with decord, audio with PyAV; both are imported inside the
methods that use them, so importing this module is cheap.

Bad input. Opening probes the file with PyAV first, which fails cleanly where
decord may not: the file exists and is not empty, the container opens, it has a
video stream, it is not a still image (PNG, JPEG, ... are refused), the first
frame decodes. An mp4 whose tail is cut off (its data stops before its stated
duration, or decord cannot open it) is used up to the cut: the packets that are
there are copied into a complete file (:mod:`mcr.media.salvage`), the video's
duration is that part's, and :attr:`Video.damaged` holds the span that is
missing. Otherwise decord opens it. Damage in the middle of a
file that the probe cannot see opens, and :meth:`Video.frames` raises a
``VideoError`` for the frames that fail to decode (other spans stay usable);
small damage that the codec conceals decodes with artefacts and is no error.
Every problem is a :class:`VideoError` naming the file and what to do.
"""

from __future__ import annotations

import math
import os
import pathlib
import threading
from typing import Any

import numpy as np

from mcr.media.probe import REENCODE, DamagedMedia, NoAudioError, VideoError, _probe, _short
from mcr.types import Frames, SpanLike, TimeSpan, format_time, parse_time

__all__ = ["Video", "VideoError", "NoAudioError"]

CHUNK_FRAMES = 32  # at most this many frames per decoder call ...
CHUNK_BYTES = 64 * 1024 * 1024  # ... and at most about this many bytes of native-size pixels
_EPS = 5e-4  # seconds of slack when matching times to decord's float32 timestamps


class Video:
    """A video file, opened and validated at construction.

    Example::

        v = Video("boats.mp4")
        v.duration, v.fps, v.size, v.has_audio
        f = v.frames("00:02-00:06", fps=2, max_pixels=448 * 448)

    Time 0 is the first video frame. A Video can be shared between threads:
    decoding is serialised by a lock.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path).expanduser().resolve()
        self.source: dict | None = None  # where it came from, when opened from a URL (mcr.media.sources)
        self._hash: str | None = None
        self._starts_cache: np.ndarray | None = None
        self._readers: dict[tuple[int, int] | None, Any] = {}  # decord readers by output size
        self._pil_sizes: set[tuple[int, int]] = set()  # sizes decord failed to resize to
        self._lock = threading.RLock()
        self._decode_path = self.path  # a salvaged copy when the file's tail is cut off (mcr.media.salvage)
        self.damaged: list[TimeSpan] = []  # spans the file claims but holds no data for
        meta = _probe(self.path)
        try:
            if meta["cut_at"] is not None:
                raise VideoError(
                    f"{self.path}: the data stops at {format_time(meta['cut_at'])} of "
                    f"{format_time(meta['duration'])}, so the file is truncated; copy or download it again"
                )
            reader = self._reader(None)
        except VideoError as err:
            meta, reader = self._salvage(meta, err)
        self.width: int = meta["width"]
        self.height: int = meta["height"]
        self.has_audio: bool = meta["has_audio"]
        self._t0: float = meta["start"]  # container time of the first frame
        self.frame_count: int = len(reader)
        if self.frame_count < 1:
            raise VideoError(f"{self.path}: the video stream has no frames; {REENCODE}")
        fps = meta["fps"] or float(reader.get_avg_fps() or 0.0)
        duration = meta["duration"] or (self.frame_count / fps if fps > 0 else 0.0)
        if duration <= 0:
            raise VideoError(f"{self.path}: cannot tell the video's duration; {REENCODE}")
        self.fps: float = fps if fps > 0 else self.frame_count / duration
        self.duration: float = float(duration)

    def _salvage(self, meta: dict, err: VideoError) -> tuple[dict, Any]:
        """Open the part of a cut-off file that is there (``mcr.media.salvage``) and record the
        rest as damaged; ``err`` is raised when no usable part can be copied."""
        from mcr.media.salvage import MIN_SECONDS, salvage

        part = salvage(self.path, self.content_hash)
        if part is None:
            raise err
        try:
            found = _probe(part)
            self._decode_path = part
            self._readers.clear()
            reader = self._reader(None)
        except VideoError:
            self._decode_path = self.path
            raise err from None
        stated, kept = meta["duration"] or 0.0, found["duration"] or 0.0
        if kept < MIN_SECONDS:
            self._decode_path = self.path
            raise err
        if stated > kept:
            self.damaged = [TimeSpan(kept, stated)]
        return found, reader

    # ------------------------------------------------------------ properties

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return (self.width, self.height)

    @property
    def span(self) -> TimeSpan:
        """The whole video, ``TimeSpan(0, duration)``."""
        return TimeSpan(0.0, self.duration)

    @property
    def content_hash(self) -> str:
        """sha256 of the file's bytes, read on first use (and kept per file while it is unchanged:
        :mod:`mcr.media.hashes`).

        It depends on the bytes only (a renamed or moved copy has the same hash),
        which makes it the key for per-video caches.
        """
        if self._hash is None:
            from .hashes import file_hash

            self._hash = file_hash(self.path)
        return self._hash

    @property
    def id(self) -> str:
        """A short id: the first 16 hex digits of :attr:`content_hash`."""
        return self.content_hash[:16]

    def info(self) -> dict:
        """The video's properties as a JSON-able dict."""
        return {
            "path": str(self.path),
            "duration": round(self.duration, 3),
            "fps": round(self.fps, 3),
            "frame_count": self.frame_count,
            "width": self.width,
            "height": self.height,
            "has_audio": self.has_audio,
            **({"damaged": [s.to_list() for s in self.damaged]} if self.damaged else {}),
            **({"source": {k: v for k, v in self.source.items() if k != "subtitles"}} if self.source else {}),
        }

    def __repr__(self) -> str:
        audio = "audio" if self.has_audio else "no audio"
        size = f"{self.width}x{self.height}"
        return f"Video({self.path.name!r}, {format_time(self.duration)}, {size}, {self.fps:.3g} fps, {audio})"

    # --------------------------------------------------------------- frames

    def frames(
        self,
        span: SpanLike | None = None,
        fps: float = 1.0,
        max_frames: int | None = None,
        max_pixels: int | None = None,
    ) -> Frames:
        """Frames sampled uniformly from ``span`` (anything ``TimeSpan.parse``
        takes; None is the whole video), clamped to the video.

        Sampling: the span is cut into ``n = round(span.duration * fps)`` equal parts
        (at least 1; when ``max_frames`` is smaller, ``n = max_frames``, so the frames
        spread over the whole span). One time is taken at the centre of each part
        (``start + (k + 0.5) * duration / n``, i.e. ``start + (k + 0.5) / fps`` when
        the span holds a whole number of periods) and maps to the frame on screen at
        that time: the last frame whose presentation time is at or before it, or the
        span's first frame when that one began before the span. Repeats are dropped,
        so a rate above the video's gives each frame once.

        Frames are chosen by their real presentation times (the stream's own
        timestamps, not an average frame rate), so on a variable-frame-rate video
        too every frame returned begins inside the span; only a span shorter than
        the gap between two frames, holding no frame's start, gives the one frame
        on screen during it. Timestamps are those real times. ``max_pixels`` bounds
        each frame's area, keeping the aspect ratio. Frames are decoded in chunks of
        at most 32, so memory follows the frames asked for, not the video's length.
        """
        if not (isinstance(fps, (int, float, np.number)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if max_frames is not None and (not isinstance(max_frames, (int, np.integer)) or max_frames < 1):
            raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")
        s = self._clamp(span)
        n = max(1, int(math.floor(s.duration * fps + 0.5)))
        # frames lo .. hi - 1 begin inside the span (with the slack decord's float32 times need)
        lo, hi = np.searchsorted(self._starts(), [s.start - _EPS, s.end - _EPS])
        n = min(n, 4 * int(hi - lo + 1))  # sampling faster than the video's own rate only repeats frames
        if max_frames is not None:
            n = min(n, int(max_frames))
        times = s.start + (np.arange(n) + 0.5) * (s.duration / n)
        idx = self._index_at(times)
        if lo < hi:  # the span holds some frame's start: none from before it
            idx = np.maximum(idx, lo)
        return self._decode(np.unique(idx), max_pixels)

    def frame_at(self, t: float | str, max_pixels: int | None = None) -> Frames:
        """The one frame on screen at time ``t`` (seconds or ``HH:MM:SS``), clamped to the video."""
        t = min(parse_time(t), self.duration)
        return self._decode(self._index_at(np.array([t])), max_pixels)

    # ---------------------------------------------------------------- audio

    def audio(self, span: SpanLike | None = None, sr: int = 16000) -> np.ndarray:
        """The audio of ``span`` as mono float32 samples in [-1, 1] at rate ``sr``.

        The result has exactly ``round(span.duration * sr)`` samples and sample 0
        is at ``span.start``; stretches the audio track does not cover are silence.
        Decoding seeks to the span and stops after it, so memory follows the span.
        Raises :class:`NoAudioError` when the video has no audio track.
        """
        if not self.has_audio:
            raise NoAudioError(f"{self.path} has no audio track; use its frames (or on-screen text) instead")
        if not isinstance(sr, int) or sr <= 0:
            raise ValueError(f"sr must be a positive integer sample rate, got {sr!r}")
        import av

        s = self._clamp(span)
        out = np.zeros(int(round(s.duration * sr)), dtype=np.float32)
        if out.size == 0:
            return out
        start = self._t0 + s.start  # the span's start in container time
        cursor = start  # where the audio placed so far ends
        try:
            with av.open(str(self._decode_path)) as container:
                stream = container.streams.audio[0]
                if s.start > 0:  # land on a packet well before the span, then skip forward
                    container.seek(int(max(0.0, start - 1.0) / stream.time_base), stream=stream)
                resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
                for packet in container.demux(stream):
                    try:
                        decoded = packet.decode()
                    except av.FFmpegError:
                        continue  # a damaged audio packet: its stretch stays silent
                    for frame in decoded:
                        for chunk in resampler.resample(frame):
                            cursor = _place(out, chunk, cursor, start, sr)
                    if cursor >= start + s.duration:
                        break
                else:
                    for chunk in resampler.resample(None):
                        cursor = _place(out, chunk, cursor, start, sr)
        except av.FFmpegError as err:
            raise DamagedMedia(f"{self.path}: the audio cannot be decoded ({_short(err)}); {REENCODE}") from None
        return np.clip(out, -1.0, 1.0, out=out)

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the decoders. The Video stays usable: they reopen when next needed."""
        with self._lock:
            self._readers.clear()

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------- internals

    def _clamp(self, span: SpanLike | None) -> TimeSpan:
        return self.span if span is None else TimeSpan.parse(span).clamp(self.duration)

    def _reader(self, size: tuple[int, int] | None) -> Any:
        """The decord reader giving frames of ``size`` (None: native size), opened once.
        At most the native reader and one resized reader are kept."""
        reader = self._readers.get(size)
        if reader is None:
            import decord

            # FFmpeg's own lines about damaged packets stay out of the terminal: the damage is
            # reported once, by the VideoError a failed span raises (MCR_DEBUG_DECODER=1 shows them)
            decord.logging.set_level(
                decord.logging.DEBUG if os.environ.get("MCR_DEBUG_DECODER") else decord.logging.QUIET
            )
            kwargs = {} if size is None else {"width": size[0], "height": size[1]}
            try:
                reader = decord.VideoReader(str(self._decode_path), ctx=decord.cpu(0), **kwargs)
            except Exception as err:
                why = _short(err)
                raise VideoError(f"{self.path}: the frame decoder cannot open it ({why}); {REENCODE}") from None
            if size is not None:
                self._readers = {k: v for k, v in self._readers.items() if k is None}
            self._readers[size] = reader
        return reader

    def _starts(self) -> np.ndarray:
        """Presentation time of every frame, read once from decord's index (8 bytes a frame)."""
        if self._starts_cache is None:
            with self._lock:
                stamps = self._reader(None).get_frame_timestamp(np.arange(self.frame_count))
            self._starts_cache = np.asarray(stamps, dtype=np.float64).reshape(-1, 2)[:, 0]
        return self._starts_cache

    def _index_at(self, times: np.ndarray) -> np.ndarray:
        """Index of the frame on screen at each time."""
        idx = np.searchsorted(self._starts(), np.asarray(times) + _EPS, side="right") - 1
        return np.clip(idx, 0, self.frame_count - 1)

    def _target_size(self, max_pixels: int | None) -> tuple[int, int] | None:
        """``(w, h)`` with ``w * h <= max_pixels`` and the video's aspect ratio, or None
        when the native size already fits."""
        if max_pixels is None:
            return None
        if not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
        if self.width * self.height <= max_pixels:
            return None
        scale = math.sqrt(max_pixels / (self.width * self.height))
        w, h = max(1, int(self.width * scale)), max(1, int(self.height * scale))
        return (w, min(h, max(1, int(max_pixels) // w)))

    def _decode(self, indices: np.ndarray, max_pixels: int | None) -> Frames:
        """Decode ``indices`` (sorted, unique) chunk by chunk into one array."""
        size = self._target_size(max_pixels)
        chunk = max(1, min(CHUNK_FRAMES, CHUNK_BYTES // (self.width * self.height * 3)))
        starts = self._starts()
        out: np.ndarray | None = None
        with self._lock:
            for i in range(0, len(indices), chunk):
                part = [int(x) for x in indices[i : i + chunk]]
                try:
                    arr = self._decode_chunk(part, size)
                except Exception as err:
                    self._readers.clear()  # a decoder that failed may be left in a bad state
                    where = f"{format_time(starts[part[0]])}-{format_time(starts[part[-1]])}"
                    raise DamagedMedia(
                        f"{self.path}: frames at {where} cannot be decoded ({_short(err)}); the file is "
                        f"damaged there: ask for another span, or {REENCODE}"
                    ) from None
                if out is None:
                    out = np.empty((len(indices),) + arr.shape[1:], dtype=np.uint8)
                out[i : i + len(part)] = arr
                del arr
        assert out is not None
        return Frames(
            images=out,
            timestamps=[round(float(starts[j]), 6) for j in indices],
            indices=[int(j) for j in indices],
            source=str(self.path),
            video_id=self.id,
        )

    def _decode_chunk(self, part: list[int], size: tuple[int, int] | None) -> np.ndarray:
        """Frames ``part`` as ``(n, H, W, 3)`` uint8, resized to ``size`` when given.

        The decoder resizes where it can; decord fails on some target sizes, and
        those are resized with PIL from native-size frames instead.
        """
        if size is not None and size not in self._pil_sizes:
            try:
                arr = _as_numpy(self._reader(size).get_batch(part))
                if arr.shape[1:3] == (size[1], size[0]):
                    return arr
            except Exception:
                pass
            self._readers.pop(size, None)
            self._pil_sizes.add(size)
        arr = _as_numpy(self._reader(None).get_batch(part))
        if size is None:
            return arr
        from PIL import Image

        return np.stack([np.asarray(Image.fromarray(a).resize(size, Image.BILINEAR)) for a in arr])


# ----------------------------------------------------------------- helpers


def _as_numpy(batch: Any) -> np.ndarray:
    """decord's native NDArray (or a tensor, under another bridge) as a numpy array."""
    return batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)


def _place(out: np.ndarray, chunk: Any, cursor: float, start: float, sr: int) -> float:
    """Copy a resampled audio chunk into ``out`` at its presentation time (``cursor``,
    where the previous one ended, when it has none); return the time it ends."""
    samples = chunk.to_ndarray().reshape(-1)
    t = float(chunk.time) if chunk.time is not None else cursor
    offset = int(round((t - start) * sr))
    lo, hi = max(0, offset), min(out.size, offset + samples.size)
    if hi > lo:
        out[lo:hi] = samples[lo - offset : hi - offset]
    return t + samples.size / sr
