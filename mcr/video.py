"""The Video handle: metadata, frames with their real timestamps, and audio.

Frames are decoded with decord, audio with PyAV. Both libraries are imported
inside the methods that use them, so importing this module is cheap.

Opening a file probes it with PyAV first (the container opens, it has a video
stream, it is not a still image, its duration is positive, and a frame decodes
both at its start and near its end) and only then hands it to decord. Every
problem becomes a :class:`VideoError` that names the file and says what to do.
Damage in the middle of a file that the probe cannot see is reported by
:meth:`Video.frames` as a ``VideoError`` for the frames that fail to decode;
small damage that the codec conceals decodes with artefacts and is not an error.
"""
from __future__ import annotations

import hashlib
import math
import os
import pathlib
import threading
from typing import Any

import numpy as np

from mcr.types import Frames, SpanLike, TimeSpan, format_time, parse_time

__all__ = ["Video", "VideoError", "NoAudioError"]

CHUNK_FRAMES = 32  # at most this many frames are decoded per decoder call
CHUNK_BYTES = 64 * 1024 * 1024  # ... and at most about this many bytes of pixels
_EPS = 5e-4  # seconds of slack when matching times to float32 frame timestamps
_STILL_FORMATS = {"image2", "image2pipe", "png", "apng", "webp"}
_REENCODE = "re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4`"


class VideoError(Exception):
    """A video could not be opened or decoded; the message names the file and a fix."""


class NoAudioError(VideoError):
    """``audio()`` was asked of a video that has no audio track."""


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[-1] if text else type(err).__name__)[:300]


class Video:
    """A video file, opened and validated at construction.

    >>> v = Video("boats.mp4")
    >>> v.duration, v.fps, v.size, v.has_audio
    >>> f = v.frames("00:02-00:06", fps=2, max_pixels=448 * 448)

    A Video is safe to share between threads: decoding is serialised by a lock.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path).expanduser().resolve()
        self._hash: str | None = None
        self._starts_cache: np.ndarray | None = None
        self._readers: dict[tuple[int, int] | None, Any] = {}
        self._pil_sizes: set[tuple[int, int]] = set()  # sizes decord failed to resize to
        self._lock = threading.RLock()
        self._check_file()
        meta = self._probe()
        self.width: int = meta["width"]
        self.height: int = meta["height"]
        self.has_audio: bool = meta["has_audio"]
        reader = self._reader(None)
        self.frame_count: int = len(reader)
        if self.frame_count < 1:
            raise VideoError(f"{self.path}: the video stream has no frames; {_REENCODE}")
        fps = meta["fps"] or float(reader.get_avg_fps() or 0.0)
        duration = meta["duration"]
        if not duration or duration <= 0:
            duration = self.frame_count / fps if fps > 0 else 0.0
        if duration <= 0:
            raise VideoError(f"{self.path}: cannot tell the video's duration; {_REENCODE}")
        self.fps: float = fps if fps > 0 else self.frame_count / duration
        self.duration: float = float(duration)

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
        """sha256 of the file's bytes (read in 1 MiB chunks once, then cached).

        It depends on the bytes only, so a renamed or moved copy has the same hash;
        it is the key for per-video caches.
        """
        if self._hash is None:
            digest = hashlib.sha256()
            with open(self.path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            self._hash = digest.hexdigest()
        return self._hash

    @property
    def id(self) -> str:
        """A short id for the video: the first 16 hex digits of :attr:`content_hash`."""
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
        }

    def __repr__(self) -> str:
        audio = "audio" if self.has_audio else "no audio"
        return (
            f"Video({self.path.name!r}, {format_time(self.duration)}, {self.width}x{self.height}, "
            f"{self.fps:.3g} fps, {audio})"
        )

    # --------------------------------------------------------------- frames

    def frames(
        self,
        span: SpanLike | None = None,
        fps: float = 1.0,
        max_frames: int | None = None,
        max_pixels: int | None = None,
    ) -> Frames:
        """Frames sampled uniformly from ``span`` (the whole video if None).

        The span is clamped to the video and cut into ``n = round(duration * fps)``
        equal parts (at least 1; at most ``max_frames`` when given, which spreads
        the frames over the whole span instead). One time is taken at the centre of
        each part, and each time maps to the frame on screen at that moment (the last
        frame whose presentation time is at or before it). Repeated frames are
        dropped, so asking for more than the video's own rate gives every frame once.

        The returned timestamps are the real presentation times of the decoded
        frames, so each lies within one frame period before its requested time (the
        first can start slightly before ``span.start``). ``max_pixels`` bounds the
        area of each frame (aspect ratio kept); the decoder does the resizing.
        Frames are decoded in chunks of at most 32, so memory follows the number of
        frames asked for, not the length of the video.
        """
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
            raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")
        s = self._clamp(span)
        n = max(1, int(math.floor(s.duration * fps + 0.5)))
        if max_frames is not None:
            n = min(n, max_frames)
        times = s.start + (np.arange(n) + 0.5) * (s.duration / n)
        return self._decode(np.unique(self._index_at(times)), max_pixels)

    def frame_at(self, t: float | str, max_pixels: int | None = None) -> Frames:
        """The one frame on screen at time ``t`` (seconds or ``HH:MM:SS``), clamped to the video."""
        t = min(parse_time(t), self.duration)
        return self._decode(self._index_at(np.array([t])), max_pixels)

    # ---------------------------------------------------------------- audio

    def audio(self, span: SpanLike | None = None, sr: int = 16000) -> np.ndarray:
        """The audio of ``span`` as mono float32 samples in [-1, 1] at rate ``sr``.

        The result has exactly ``round(span.duration * sr)`` samples; sample 0 is at
        ``span.start``. Stretches the audio track does not cover are silence. Decoding
        seeks to the span and stops after it, so memory follows the span's length.
        Raises :class:`NoAudioError` when the video has no audio track.
        """
        if not self.has_audio:
            raise NoAudioError(f"{self.path} has no audio track; use the frames (or on-screen text) instead")
        if not isinstance(sr, int) or sr <= 0:
            raise ValueError(f"sr must be a positive integer sample rate, got {sr!r}")
        import av

        s = self._clamp(span)
        out = np.zeros(int(round(s.duration * sr)), dtype=np.float32)
        if out.size == 0:
            return out
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.audio[0]
                if s.start > 0:  # land on a packet well before the span, then skip forward
                    container.seek(int(max(0.0, s.start - 1.0) / stream.time_base), stream=stream)
                resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
                cursor = 0.0  # end time (s) of the audio placed so far
                for packet in container.demux(stream):
                    try:
                        decoded = packet.decode()
                    except av.FFmpegError:
                        continue  # a damaged audio packet: leave its stretch silent
                    for frame in decoded:
                        for chunk in resampler.resample(frame):
                            cursor = self._put_audio(out, chunk, cursor, s.start, sr)
                    if cursor >= s.end:
                        break
                else:
                    for chunk in resampler.resample(None):
                        cursor = self._put_audio(out, chunk, cursor, s.start, sr)
        except av.FFmpegError as err:
            raise VideoError(
                f"could not decode the audio of {self.path} ({_short(err)}); the file may be damaged; {_REENCODE}"
            ) from None
        np.clip(out, -1.0, 1.0, out=out)
        return out

    @staticmethod
    def _put_audio(out: np.ndarray, chunk: Any, cursor: float, start: float, sr: int) -> float:
        """Copy one resampled chunk into ``out`` at its presentation time (or at ``cursor``,
        where the previous chunk ended, when it has none); return the time it ends."""
        samples = chunk.to_ndarray().reshape(-1)
        t = float(chunk.time) if chunk.time is not None else cursor
        offset = int(round((t - start) * sr))
        lo, hi = max(0, offset), min(out.size, offset + samples.size)
        if hi > lo:
            out[lo:hi] = samples[lo - offset : hi - offset]
        return t + samples.size / sr

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the decoders. The Video stays usable: they reopen on the next call."""
        with self._lock:
            self._readers.clear()

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------- internals

    def _clamp(self, span: SpanLike | None) -> TimeSpan:
        return self.span if span is None else TimeSpan.parse(span).clamp(self.duration)

    def _check_file(self) -> None:
        p = self.path
        if not p.exists():
            raise VideoError(f"video file not found: {p} (check the path)")
        if p.is_dir():
            raise VideoError(f"{p} is a directory, not a video file; pass the path of a video inside it")
        if not p.is_file():
            raise VideoError(f"{p} is not a regular file; pass the path of a video file")
        if p.stat().st_size == 0:
            raise VideoError(f"{p} is empty (0 bytes); the file was not written or downloaded completely")

    def _probe(self) -> dict:
        """Check the file with PyAV (which fails cleanly) before decord sees it."""
        import av

        p = self.path
        try:
            container = av.open(str(p))
        except Exception as err:
            raise VideoError(
                f"{p} is not a video that FFmpeg can read ({_short(err)}); check that it is a video file "
                "and that it was copied completely (an mp4 cut short loses its index and fails like this)"
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
            duration = None
            if stream.duration and tb:
                duration = float(stream.duration * tb)
            elif container.duration:
                duration = container.duration / 1_000_000
            rate = stream.average_rate or stream.guessed_rate
            meta = {
                "width": int(stream.codec_context.width or 0),
                "height": int(stream.codec_context.height or 0),
                "fps": float(rate) if rate else 0.0,
                "duration": duration,
                "has_audio": bool(container.streams.audio),
            }
            if meta["width"] <= 0 or meta["height"] <= 0:
                raise VideoError(f"{p}: the video stream has no picture size; {_REENCODE}")
            if duration is not None and duration <= 0:
                raise VideoError(f"{p}: the video has zero duration; {_REENCODE}")
            if not self._decodes_one(container, stream):
                raise VideoError(
                    f"{p}: the first frame cannot be decoded; the file is damaged or its codec is not "
                    f"supported; {_REENCODE}"
                )
            if duration and duration > 2.0 and tb:
                try:
                    offset = (duration - 1.0) / tb + (stream.start_time or 0)
                    container.seek(int(offset), stream=stream)
                    ok = self._decodes_one(container, stream)
                except Exception:
                    ok = False
                if not ok:
                    raise VideoError(
                        f"{p}: the end of the video cannot be decoded, so the file is truncated or damaged; "
                        "copy or download it again, or cut off the damaged end with ffmpeg"
                    )
        return meta

    @staticmethod
    def _decodes_one(container: Any, stream: Any, max_packets: int = 600) -> bool:
        """True when a frame decodes from the current position (packet errors tolerated)."""
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
            return False
        return False

    def _reader(self, size: tuple[int, int] | None) -> Any:
        """A decord reader for frames of ``size`` (None: the native size), opened once."""
        reader = self._readers.get(size)
        if reader is not None:
            return reader
        import decord

        kwargs = {} if size is None else {"width": size[0], "height": size[1]}
        try:
            reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0), **kwargs)
        except Exception as err:
            raise VideoError(f"{self.path}: the frame decoder cannot open it ({_short(err)}); {_REENCODE}") from None
        for key in [k for k in self._readers if k is not None]:
            del self._readers[key]  # keep the native reader and one resized one
        self._readers[size] = reader
        return reader

    def _starts(self) -> np.ndarray:
        """Presentation time of every frame (8 bytes a frame, read once from the index)."""
        if self._starts_cache is None:
            with self._lock:
                reader = self._reader(None)
                stamps = reader.get_frame_timestamp(np.arange(self.frame_count))
            self._starts_cache = np.asarray(stamps, dtype=np.float64).reshape(-1, 2)[:, 0]
        return self._starts_cache

    def _index_at(self, times: np.ndarray) -> np.ndarray:
        """Index of the frame on screen at each time."""
        idx = np.searchsorted(self._starts(), np.asarray(times) + _EPS, side="right") - 1
        return np.clip(idx, 0, self.frame_count - 1)

    def _target_size(self, max_pixels: int | None) -> tuple[int, int] | None:
        if max_pixels is None:
            return None
        if not isinstance(max_pixels, int) or max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
        if self.width * self.height <= max_pixels:
            return None
        scale = math.sqrt(max_pixels / (self.width * self.height))
        w, h = max(1, int(self.width * scale)), max(1, int(self.height * scale))
        if w * h > max_pixels:  # only when a side was pushed up to 1 pixel
            h = max(1, max_pixels // w)
        return (w, h)

    def _decode(self, indices: np.ndarray, max_pixels: int | None) -> Frames:
        """Decode ``indices`` (sorted, unique) in bounded chunks into one array."""
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
                    self._readers.clear()  # a failed decoder may be left in a bad state
                    where = f"{format_time(starts[part[0]])}-{format_time(starts[part[-1]])}"
                    raise VideoError(
                        f"{self.path}: frames at {where} cannot be decoded ({_short(err)}); the file is "
                        f"damaged there: ask for another span, or {_REENCODE}"
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


def _as_numpy(batch: Any) -> np.ndarray:
    """decord's native NDArray (or a tensor from another bridge) as a numpy array."""
    return batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
