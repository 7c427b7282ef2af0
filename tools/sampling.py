"""Streaming frame sampling for passes over long spans: the index stages and the overview.

``Video.frames`` seeks for each chunk of frames it is asked for, which suits the
scattered look-ups of a tool call. A pass over minutes or hours wants the opposite:
decode the stream once, in order, with the decoder's own threads, and convert to RGB
only the frames that are kept. :func:`stream_frames` does that with PyAV: memory holds
one decoded frame at a time plus whatever the caller keeps, whatever the span's length.

The frame kept for a time ``t`` is the one on screen at ``t``: the last frame whose
presentation time is at or before ``t`` (the rule ``Video.frames`` follows too), so a
1 fps pass returns exactly the frames at 0, 1, 2 ... s.

:func:`keyframes` is the cheap overview: it hands only the keyframe packets to the
decoder, so an hour of video costs a few hundred frame decodes.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from mcr.media.video import REENCODE, DamagedMedia
from mcr.types import Frames, TimeSpan, format_time

from .base import ToolError

_EPS = 5e-4  # seconds of slack when comparing a frame's time with a wanted time
PARALLEL_MIN_S = 120.0  # passes over at least this long are decoded by several workers
SEGMENT_FRAMES = 48  # wanted frames per segment of a parallel pass (at least; segments start at keyframes)
_keyframe_cache: dict[tuple, np.ndarray] = {}


def _size_for(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    if not max_pixels or width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    w = max(2, int(width * scale) // 2 * 2)
    h = max(2, int(height * scale) // 2 * 2)
    return w, h


def _open(video: Any, threads: int):
    import av

    container = av.open(str(video.path))
    stream = container.streams.video[0]
    if threads != 1:
        stream.thread_type = "AUTO"
    stream.codec_context.thread_count = max(0, threads)
    tb = float(stream.time_base)
    t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return container, stream, tb, t0


def sample_times(span: TimeSpan, fps: float) -> np.ndarray:
    """``span.start, span.start + 1/fps, ...`` up to (not including) ``span.end``; at least one time."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    n = max(1, int(math.ceil(span.duration * fps - 1e-9)))
    return span.start + np.arange(n) / fps


def _constant_rate(video: Any) -> bool:
    """True when the frame count matches duration x rate (a constant-rate stream)."""
    return video.fps > 0 and abs(video.frame_count - video.duration * video.fps) <= 2


def _decoded(stream: Any, packets: Iterator[Any], broken: list | None = None, tb: float = 0.0, t0: float = 0.0):
    """Frames from ``packets``, then whatever the decoder still holds; the times of packets
    that cannot be decoded go into ``broken``."""
    import av

    for packet in packets:
        try:
            yield from packet.decode()
        except av.FFmpegError:
            if broken is not None and packet.pts is not None:
                broken.append(packet.pts * tb - t0)
            continue  # a damaged packet: the frames around it still come
    try:
        yield from stream.codec_context.decode(None)
    except av.FFmpegError:
        pass


def stream_frames(
    video: Any,
    times: Sequence[float],
    max_pixels: int | None = None,
    threads: int = 1,
    workers: int | None = None,
    cancelled: threading.Event | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(timestamp, image)`` for the frame on screen at each of ``times`` (sorted,
    in video seconds), decoding the stream once from the keyframe before the first time.

    ``timestamp`` is the frame's real presentation time. A frame on screen at several of
    the times is yielded once. ``threads`` is the decoder's own thread count (0: its
    choice). :func:`stream_many` is the same pass serving several sets of times and sizes.

    A pass over more than two minutes is cut at keyframes into segments of about
    ``SEGMENT_FRAMES`` wanted frames, decoded by ``workers`` threads (default: two on a
    machine with two or more cores), each with its own single-threaded decoder; frames
    still come out in time order, and at most two segments per worker wait in memory.
    Independent segments use two cores better than the decoder's frame threads, which
    stall on each other and, on a busy machine, on everything else.

    Frames that no other frame is predicted from (non-reference frames, e.g. most
    B-frames) are not decoded unless they lie within a few frames of a wanted time:
    nothing depends on them, so the frames that are returned are the same, and a sparse
    pass decodes a third to a half fewer frames. This is done for constant-rate streams,
    where the frame on screen at ``t`` is always within one frame period of ``t``.

    Once ``cancelled`` is set (a tool call whose time is up), decoding stops at the next
    frame and ``ToolError`` is raised.
    """
    for t, images in stream_many(video, [Request(times, max_pixels)], threads, workers, cancelled):
        yield t, images[0]


class Request(NamedTuple):
    """Frames wanted from a pass: those on screen at ``times``, at most ``max_pixels`` each.
    ``strict``: packets that cannot be decoded while reading them raise ``DamagedMedia``
    (otherwise the frame on screen before them stands in, as a player shows it)."""

    times: Sequence[float]
    max_pixels: int | None = None
    strict: bool = False


def stream_many(
    video: Any,
    requests: Sequence[Request],
    threads: int = 1,
    workers: int | None = None,
    cancelled: threading.Event | None = None,
) -> Iterator[tuple[float, dict[int, np.ndarray]]]:
    """One decoding pass serving several requests: ``(timestamp, {i: image})`` in time order,
    where ``i`` is the index of each request that wants the frame, and its image is at that
    request's size. Each request gets exactly the frames :func:`stream_frames` would give it
    alone; a frame several requests want is decoded once."""
    wanted_by = [np.asarray(sorted(float(t) for t in r.times), dtype=np.float64) for r in requests]
    wanted = np.unique(np.concatenate(wanted_by)) if wanted_by else np.zeros(0)
    if wanted.size == 0:
        return
    sizes = [_size_for(video.width, video.height, r.max_pixels) for r in requests]
    strict = [r.strict for r in requests]
    if workers is None:
        workers = 2 if (os.cpu_count() or 1) >= 2 and wanted[-1] - wanted[0] >= PARALLEL_MIN_S else 1
    cuts = _segment_starts(video, wanted) if workers > 1 else []
    parts = [[np.split(w, np.searchsorted(w, cuts)) for w in wanted_by]]
    segments = [[p[j] for p in parts[0]] for j in range(len(cuts) + 1)]
    segments = [s for s in segments if any(x.size for x in s)]
    if len(segments) < 2:
        yield from _stream_part(video, wanted_by, sizes, strict, threads, cancelled)
        return
    yield from _parallel(video, segments, sizes, strict, threads, min(workers, len(segments)), cancelled)


def keyframe_times(video: Any) -> np.ndarray:
    """Presentation times of the video's keyframes (one demux pass, no decoding; cached)."""
    key = (str(video.path), video.path.stat().st_size, video.path.stat().st_mtime_ns)
    if key not in _keyframe_cache:
        container, stream, tb, t0 = _open(video, 1)
        try:
            stamps = [p.pts * tb - t0 for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
        finally:
            container.close()
        _keyframe_cache.clear()
        _keyframe_cache[key] = np.unique(np.asarray(stamps, dtype=np.float64))
    return _keyframe_cache[key]


def _segment_starts(video: Any, wanted: np.ndarray) -> list[float]:
    """Where to cut ``wanted`` into runs of about ``SEGMENT_FRAMES`` times: keyframe times,
    so decoding a run from its keyframe wastes nothing before its first time."""
    keys = keyframe_times(video)
    cuts, last = [], 0
    for k in keys:
        i = int(np.searchsorted(wanted, k - _EPS))
        if i - last >= SEGMENT_FRAMES and i < len(wanted):
            cuts.append(float(k - _EPS))
            last = i
    return cuts


def _parallel(
    video: Any,
    segments: list[list[np.ndarray]],
    sizes: list[tuple[int, int]],
    strict: list[bool],
    threads: int,
    workers: int,
    cancelled: threading.Event | None = None,
) -> Iterator[tuple[float, dict[int, np.ndarray]]]:
    stop = threading.Event()
    slots = [queue.Queue(maxsize=1) for _ in range(workers)]

    def work(w: int) -> None:
        for j in range(w, len(segments), workers):
            try:
                item: Any = list(_stream_part(video, segments[j], sizes, strict, threads, cancelled))
            except BaseException as exc:  # handed to the reader, which raises it
                item = exc
            while not stop.is_set():
                try:
                    slots[w].put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if stop.is_set() or isinstance(item, BaseException):
                return

    pool = [threading.Thread(target=work, args=(w,), daemon=True, name=f"frames-{w}") for w in range(workers)]
    for t in pool:
        t.start()
    held: tuple[float, dict] | None = None  # a frame on screen across a segment edge comes once
    try:
        for j in range(len(segments)):
            item = slots[j % workers].get()
            if isinstance(item, BaseException):
                raise item
            for t, images in item:
                if held is not None and t == held[0]:
                    held = (t, {**images, **held[1]})
                    continue
                if held is not None:
                    yield held
                held = (t, images)
        if held is not None:
            yield held
    finally:
        stop.set()
        for t in pool:
            t.join(timeout=5)


def _stream_part(
    video: Any,
    wanted_by: list[np.ndarray],
    sizes: list[tuple[int, int]],
    strict: list[bool],
    threads: int,
    cancelled: threading.Event | None = None,
) -> Iterator[tuple[float, dict[int, np.ndarray]]]:
    """The frames on screen at each request's sorted times ``wanted_by[i]``, decoded in one
    pass (see :func:`stream_frames` and :func:`stream_many`)."""
    live = [i for i, w in enumerate(wanted_by) if w.size]
    if not live:
        return
    wanted = np.unique(np.concatenate([wanted_by[i] for i in live]))
    container, stream, tb, t0 = _open(video, threads)
    window = 3.5 / video.fps if _constant_rate(video) else None
    broken: list[float] = []  # times of the packets that could not be decoded

    def packets() -> Iterator[Any]:
        mode = None
        for packet in container.demux(stream):
            if window is not None and packet.pts is not None:
                t = packet.pts * tb - t0
                k = int(np.searchsorted(wanted, t))
                near = (k < len(wanted) and wanted[k] - t <= window) or (k > 0 and t - wanted[k - 1] <= window)
                if near != mode:
                    stream.codec_context.skip_frame = "DEFAULT" if near else "NONREF"
                    mode = near
            yield packet

    def convert(frame: Any, takers: list[int]) -> dict[int, np.ndarray]:
        return {r: frame.to_ndarray(format="rgb24", width=sizes[r][0], height=sizes[r][1]) for r in takers}

    try:
        if wanted[0] > 0.5:
            container.seek(int((t0 + wanted[0]) / tb), stream=stream, backward=True, any_frame=False)
        at = {r: 0 for r in live}  # the next time each request waits for
        last_out = {r: None for r in live}
        prev, prev_t = None, -1.0
        for frame in _decoded(stream, packets(), broken, tb, t0):
            if cancelled is not None and cancelled.is_set():
                raise ToolError("the call was cancelled")
            if frame.pts is None:
                continue
            t = frame.pts * tb - t0
            takers = []
            for r in list(at):
                w = wanted_by[r]
                if t > w[at[r]] + _EPS:  # the frame before this one was on screen at w[at[r]]
                    if prev is not None and prev_t != last_out[r]:
                        takers.append(r)
                        last_out[r] = prev_t
                    while at[r] < len(w) and t > w[at[r]] + _EPS:
                        at[r] += 1
                    if at[r] >= len(w):
                        del at[r]
            if takers:
                yield round(prev_t, 6), convert(prev, takers)
            if not at:
                break
            prev, prev_t = frame, t
        else:
            takers = [r for r in at if prev is not None and prev_t != last_out[r]]
            if takers:
                yield round(prev_t, 6), convert(prev, takers)
        _check_damage(video, wanted_by, strict, broken)
    finally:
        container.close()


def _check_damage(video: Any, wanted_by: list[np.ndarray], strict: list[bool], broken: list[float]) -> None:
    """Raise ``DamagedMedia`` when a packet that could not be decoded lies among the times of a
    strict request (or before its first time, back to the keyframe the pass began at)."""
    for r, w in enumerate(wanted_by):
        if not (strict[r] and w.size and broken):
            continue
        hit = [b for b in broken if b <= w[-1] + _EPS]
        if hit:
            where = f"{format_time(min(hit))}-{format_time(max(hit))}"
            raise DamagedMedia(
                f"{video.path}: frames at {where} cannot be decoded (invalid data: the file is damaged there); "
                f"ask for another span, or {REENCODE}"
            )


def sample(
    video: Any,
    span: TimeSpan,
    fps: float,
    max_pixels: int | None = None,
    threads: int = 1,
    cancelled: threading.Event | None = None,
) -> Frames:
    """The frames at ``span.start + k / fps`` inside ``span`` as one :class:`Frames`."""
    span = span.clamp(video.duration)
    stamps, images = [], []
    for t, img in stream_frames(video, sample_times(span, fps), max_pixels, threads, cancelled=cancelled):
        stamps.append(t)
        images.append(img)
    w, h = _size_for(video.width, video.height, max_pixels)
    arr = np.stack(images) if images else np.zeros((0, h, w, 3), dtype=np.uint8)
    return Frames(images=arr, timestamps=stamps, source=str(video.path), video_id=video.id)


def keyframes(
    video: Any, span: TimeSpan | None = None, max_pixels: int | None = 160 * 90
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(timestamp, image)`` for each keyframe in ``span`` (default: the whole video),
    decoding keyframe packets only."""
    import av

    span = (span or video.span).clamp(video.duration)
    w, h = _size_for(video.width, video.height, max_pixels)
    container, stream, tb, t0 = _open(video, 1)
    try:
        stream.codec_context.skip_frame = "NONKEY"
        if span.start > 0.5:
            container.seek(int((t0 + span.start) / tb), stream=stream, backward=True, any_frame=False)

        def emit(frames):
            for frame in frames:
                t = frame.pts * tb - t0 if frame.pts is not None else None
                if t is not None and span.start - _EPS <= t <= span.end + _EPS:
                    yield round(t, 6), frame.to_ndarray(format="rgb24", width=w, height=h)

        for packet in container.demux(stream):
            if packet.pts is None or not packet.is_keyframe:
                continue
            if packet.pts * tb - t0 > span.end + _EPS:
                break
            try:
                yield from emit(packet.decode())
            except av.FFmpegError:
                continue
        try:  # frames the decoder still holds for reordering
            yield from emit(stream.codec_context.decode(None))
        except av.FFmpegError:
            pass
    finally:
        container.close()
