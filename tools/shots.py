"""``shots``: the video's shot boundaries (hard cuts and gradual transitions), and the detector behind them.

The ``shots`` index stage takes ``fps`` small frames a second of each chunk (from the index's
one decoding pass, ``tools.frame_pass``), with ``PAD_S`` seconds on each side so a transition
across the chunk's edge is seen whole; a span that cannot be decoded fails the chunk, which the
index then reads in smaller pieces to skip the damaged span. Each frame becomes a 16x12 grid of
block means in Y, Cb and Cr (0..255), so a change of colour at equal brightness counts as
much as a change of brightness, and a small camera move shifts block means only a little.
A step's change is the mean absolute difference of two consecutive grids.

:func:`find_cuts` turns the steps into boundaries:

- a **hard cut** is a step whose change is large (``cut_min``) and several times
  (``cut_ratio``) the larger of its two neighbours' and the neighbourhood's median, so
  camera motion and people walking past, which change every step a little, are not cuts;
  two large steps in a row are one cut when the frames around them differ as much as
  the steps do, and a flash frame (a frame unlike both its neighbours, which are alike) when
  they do not;
- a **gradual transition** (a fade or a dissolve) is a window of steps whose frames move
  straight from the first frame to the last: the end-to-end change is large and close to
  the sum of the steps (``coherence``), the middle frame is a mix of the two ends, and no
  one step carries most of it. A pan wanders (its steps add up to far more than the
  end-to-end change) and its middle frame is no mix of its ends. Overlapping windows, and
  a fade out and fade in that meet at a dark frame, are merged into one boundary whose
  span is the transition's extent.

Each boundary is stored as a ``shot`` entry whose span runs from the last frame before it
to the first frame after it (for a gradual transition, its extent); ``span.end`` is where
the next shot starts, and ``data["transition"]`` is ``"cut"`` or ``"gradual"``. The
``shots`` tool reads the stage.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

from mcr.media.video import DamagedMedia
from mcr.memory import ChunkResult, MemoryEntry, register_stage
from mcr.types import TimeSpan, format_time

from .base import ToolContext, ToolResult, tool
from .frame_pass import FrameStage, read_frames
from .sampling import Request
from .stages import check_span, stage_data

SAMPLE_PIXELS = 96 * 72
GRID = (12, 16)  # rows, columns of the block-mean grid
PAD_S = 3.0  # seconds decoded on each side of a chunk, so a transition across its edge is seen whole


class Boundary(NamedTuple):
    """A shot boundary: ``start`` is the last frame before it, ``end`` the first frame after it
    (the next shot's start); for a gradual transition they bound the transition."""

    start: float
    end: float
    strength: float  # 0..1
    transition: str  # "cut" or "gradual"


def frame_signature(image: np.ndarray) -> np.ndarray:
    """The frame as a flat 16x12 grid of block means of Y, Cb and Cr, each 0..255 (float32)."""
    rgb = image.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    planes = np.stack(
        [
            0.299 * r + 0.587 * g + 0.114 * b,
            128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b,
            128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b,
        ]
    )
    h, w = planes.shape[1:]
    if h < GRID[0] or w < GRID[1]:  # a frame smaller than the grid: repeat its pixels
        planes = planes.repeat(-(-GRID[0] // h), axis=1).repeat(-(-GRID[1] // w), axis=2)
        h, w = planes.shape[1:]
    ys = (np.arange(GRID[0]) * h) // GRID[0]
    xs = (np.arange(GRID[1]) * w) // GRID[1]
    sums = np.add.reduceat(np.add.reduceat(planes, ys, axis=1), xs, axis=2)
    counts = np.outer(np.diff(np.append(ys, h)), np.diff(np.append(xs, w)))
    return (sums / counts).ravel().astype(np.float32)


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b).mean(axis=-1)


def _mix_residual(frames: np.ndarray) -> float:
    """How far the inner frames are from mixes of the first and last (the largest mean
    absolute residual); a dissolve or fade gives noise, a pan or a wipe a large part of the change."""
    first, last = frames[0], frames[-1]
    span = first - last
    inner = frames[1:-1] - last
    alpha = np.clip(inner @ span / max(float(span @ span), 1e-6), 0.0, 1.0)
    return float(np.abs(inner - alpha[:, None] * span).mean(axis=1).max())


def _hard_cuts(
    sig: np.ndarray, d: np.ndarray, fps: float, cut_min: float, cut_ratio: float, mix_tol: float
) -> list[int]:
    """Steps ``i`` (between frames ``i`` and ``i + 1``) that are hard cuts."""
    half = max(2, int(round(fps)))  # the neighbourhood: a second each side
    steps = []
    for i in np.flatnonzero(d >= cut_min):
        before = d[i - 1] if i > 0 else 0.0
        after = d[i + 1] if i + 1 < len(d) else 0.0
        around = np.concatenate([d[max(0, i - half) : i - 1], d[i + 2 : i + 2 + half]])
        base = max(float(np.median(around)) if len(around) else 0.0, 1.0)
        if d[i] < cut_ratio * base or d[i] < max(before, after):
            continue
        if d[i] < 2.0 * max(before, after):  # two large steps in a row: a flash, a quick fade, or a cut
            lo = i - 1 if before >= after else i
            trio = sig[lo : lo + 3]
            ends = float(_dist(trio[0], trio[2]))
            if ends < 0.5 * min(d[lo], d[lo + 1]):
                continue  # a flash frame: unlike both its neighbours, which are alike
            if _mix_residual(trio) <= mix_tol * ends:
                continue  # the middle frame is a mix of the two around it: a quick fade or dissolve
        steps.append(int(i))
    return steps


def _flat(frame: np.ndarray) -> bool:
    """A frame of nearly one colour (the black or white in the middle of a fade)."""
    return float(frame.reshape(3, -1).std(axis=1).max()) < 6.0


def _thumb(image: np.ndarray, size: tuple[int, int] = (36, 48)) -> np.ndarray:
    """A small grey picture of the frame (block means, 0..255)."""
    grey = image.astype(np.float32).mean(axis=2)
    h, w = grey.shape
    ys = (np.arange(min(size[0], h)) * h) // min(size[0], h)
    xs = (np.arange(min(size[1], w)) * w) // min(size[1], w)
    sums = np.add.reduceat(np.add.reduceat(grey, ys, axis=0), xs, axis=1)
    return sums / np.outer(np.diff(np.append(ys, h)), np.diff(np.append(xs, w)))


def _shift_gain(a: np.ndarray, b: np.ndarray, reach: int = 4) -> float:
    """How much of the difference between two thumbnails a shift of up to ``reach`` pixels
    explains: the best shifted residual over the unshifted one (near 1: no motion; small: a pan)."""
    h, w = a.shape
    core = b[reach : h - reach, reach : w - reach]
    still = float(np.abs(a[reach : h - reach, reach : w - reach] - core).mean())
    if still < 1e-6:
        return 1.0
    best = min(
        float(np.abs(a[reach + dy : h - reach + dy, reach + dx : w - reach + dx] - core).mean())
        for dy in range(-reach, reach + 1)
        for dx in range(-reach, reach + 1)
    )
    return best / still


def _detail(image: np.ndarray) -> float:
    """The frame's fine detail: the mean absolute difference of neighbouring grey pixels."""
    grey = image.astype(np.float32).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def _gradual(
    sig: np.ndarray,
    d: np.ndarray,
    detail: np.ndarray,
    thumbs: list[np.ndarray],
    fps: float,
    grad_min: float,
    coherence: float,
    max_s: float,
    mix_tol: float,
) -> list[tuple[int, int]]:
    """Frame windows ``(a, b)`` of gradual transitions, one per transition."""
    n = len(sig)
    csum = np.concatenate([[0.0], np.cumsum(d)])
    gains: dict[int, float] = {}

    def moving(a: int, b: int) -> bool:  # most steps are explained by a shift: camera motion
        for k in range(a, b):
            if k not in gains:
                gains[k] = _shift_gain(thumbs[k], thumbs[k + 1])
        return float(np.median([gains[k] for k in range(a, b)])) < 0.6

    found = []
    for w in range(2, min(n - 1, max(2, int(round(max_s * fps)))) + 1):
        a = np.arange(n - w)
        end_to_end = _dist(sig[a], sig[a + w])
        path = csum[a + w] - csum[a]
        biggest = np.lib.stride_tricks.sliding_window_view(d, w).max(axis=1)[: len(a)]
        share = max(0.5, 1.0 / w + 0.25)  # no one step carries most of the change
        ok = (end_to_end >= grad_min) & (end_to_end >= coherence * path) & (biggest <= share * end_to_end)
        for i in np.flatnonzero(ok):
            # a mix of two pictures (or of one and a plain frame) loses detail halfway; a pan keeps it
            dip = detail[i + w // 2] <= 0.85 * max(detail[i], detail[i + w])
            if dip and _mix_residual(sig[i : i + w + 1]) <= mix_tol * end_to_end[i] and not moving(i, i + w):
                found.append((int(i), int(i + w), float(end_to_end[i])))
    groups: list[list[tuple[int, int, float]]] = []
    for c in sorted(found):
        if groups and c[0] < max(g[1] for g in groups[-1]):
            groups[-1].append(c)
        else:
            groups.append([c])
    chosen: list[tuple[int, int, float]] = []
    for pool in groups:  # in each group of overlapping windows: the shortest that holds (nearly) all of the change
        while pool:
            top = max(c[2] for c in pool)
            best = min((c for c in pool if c[2] >= 0.9 * top), key=lambda c: (c[1] - c[0], -c[2]))
            chosen.append(best)
            pool = [c for c in pool if c[1] <= best[0] or c[0] >= best[1]]
    chosen.sort()
    out: list[list[int]] = []
    gap = max(1, int(round(0.5 * fps)))
    for a, b, _ in chosen:
        if out and a - out[-1][1] <= gap:
            if any(_flat(sig[k]) for k in range(out[-1][1], a + 1)):
                out[-1][1] = b  # a fade out and a fade in meeting at a plain frame: one transition
            continue  # otherwise the tail of the transition before it
        out.append([a, b])
    return [(a, b) for a, b in out]


def find_cuts(
    timestamps: list[float],
    images: np.ndarray,
    cut_min: float = 12.0,
    cut_ratio: float = 3.0,
    grad_min: float = 14.0,
    coherence: float = 0.6,
    gradual_max_s: float = 3.0,
    mix_tol: float = 0.25,
    min_shot_s: float = 0.4,
) -> list[Boundary]:
    """The shot boundaries between frames sampled at ``timestamps`` (about evenly spaced), in
    time order: hard cuts between two consecutive frames and gradual transitions over several.
    Changes are on the 0..255 scale of :func:`frame_signature`."""
    if len(timestamps) < 2:
        return []
    t = np.asarray(timestamps, dtype=np.float64)
    fps = 1.0 / max(float(np.median(np.diff(t))), 1e-3)
    sig = np.stack([frame_signature(img) for img in images])
    d = _dist(sig[1:], sig[:-1])
    steps = _hard_cuts(sig, d, fps, cut_min, cut_ratio, mix_tol)
    gap = max(1, int(round(0.5 * fps)))
    gradual = []
    detail = np.array([_detail(img) for img in images])
    thumbs = [_thumb(img) for img in images]
    for a, b in _gradual(sig, d, detail, thumbs, fps, grad_min, coherence, gradual_max_s, mix_tol):
        # a cut to a plain frame just before a fade in (or from one just after a fade out) is part of it
        for i in [i for i in steps if a - gap <= i + 1 <= a and any(_flat(sig[k]) for k in range(i + 1, a + 1))]:
            steps.remove(i)
            a = min(a, i)
        for i in [i for i in steps if b <= i <= b + gap and any(_flat(sig[k]) for k in range(b, i + 1))]:
            steps.remove(i)
            b = max(b, i + 1)
        inside = [i for i in steps if a < i < b - 1]  # a large step amid the transition's own steps is part of it
        steps = [i for i in steps if i not in inside]
        gradual.append((a, b))
    kept: list[Boundary] = []
    for i in sorted(steps, key=lambda i: -d[i]):  # the stronger of two cuts too close together
        if all(abs(t[i + 1] - k.end) >= min_shot_s for k in kept):
            kept.append(Boundary(float(t[i]), float(t[i + 1]), min(1.0, float(d[i]) / 100.0), "cut"))
    for a, b in gradual:
        if any(t[a] <= c.start and c.end <= t[b] for c in kept):
            continue  # a hard cut at its first or last step: the cut is the boundary
        strength = min(1.0, float(_dist(sig[a], sig[b])) / 100.0)
        kept.append(Boundary(float(t[a]), float(t[b]), strength, "gradual"))
    return sorted(kept, key=lambda c: c.end)


class ShotStage(FrameStage):
    """The ``shots`` index stage: boundary entries (kind ``shot``), a minute of video at a time."""

    name = "shots"
    version = "3"  # 3: frames from the index's one decoding pass (PyAV)

    def __init__(self, fps: float = 4.0, chunk_s: float = 60.0, device: str | None = None, models: Any = None) -> None:
        self.fps = fps
        self.chunk_s = chunk_s

    def skip_reason(self, video: Any) -> str | None:
        return None

    def _times(self, span: TimeSpan) -> np.ndarray:
        """The centre of each of the ``fps``-long parts of ``span`` (as ``Video.frames`` samples)."""
        n = max(1, int(np.floor(span.duration * self.fps + 0.5)))
        return span.start + (np.arange(n) + 0.5) * (span.duration / n)

    def _window(self, video: Any, span: TimeSpan) -> TimeSpan:
        return TimeSpan(max(0.0, span.start - PAD_S), min(video.duration, span.end + PAD_S))

    def request(self, video: Any, span: TimeSpan) -> Request:
        return Request(self._times(self._window(video, span)), SAMPLE_PIXELS, strict=True)

    def run_chunk(self, video: Any, span: TimeSpan) -> ChunkResult:
        try:
            return super().run_chunk(video, span)
        except DamagedMedia:  # the padding around the span reached damaged frames: the span alone
            if self._window(video, span) == span:
                raise
            (frames,) = read_frames(video, [Request(self._times(span), SAMPLE_PIXELS, strict=True)])
            return self.from_frames(video, span, frames)

    def from_frames(self, video: Any, span: TimeSpan, frames: list) -> ChunkResult:
        if len(frames) < 2:
            return ChunkResult([], info={"frames": len(frames)})
        times, images = [t for t, _ in frames], np.stack([img for _, img in frames])
        entries = []
        for b in find_cuts(times, images, gradual_max_s=3.0):
            if not (span.start <= b.end < span.end or (b.end >= span.end and span.end >= video.duration)):
                continue
            what = "shot cut" if b.transition == "cut" else "gradual shot change"
            entries.append(
                MemoryEntry(
                    f"{what} at {format_time(b.end)} (change {b.strength:.2f})",
                    "shot",
                    span=TimeSpan(b.start, b.end),
                    confidence=b.strength,
                    data={"transition": b.transition},
                )
            )
        return ChunkResult(entries, info={"frames": len(frames)})


def shot_spans(cuts: list[MemoryEntry], duration: float) -> list[TimeSpan]:
    """The shots between the stored cuts, covering the whole video."""
    bounds = [0.0] + [c.span.end for c in sorted(cuts, key=lambda e: e.span.end)] + [duration]
    return [TimeSpan(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


register_stage("shots", ShotStage)


@tool
def shots(ctx: ToolContext, span: Optional[TimeSpan] = None) -> ToolResult:
    """The shots of the video (between camera cuts or scene changes), with their spans.

    Args:
        span: Only shots overlapping this span (default: the whole video).
    """
    video = ctx.require_video()
    window = check_span(video, span)
    data = stage_data(ctx, "shots")
    cuts = [e for e in data.entries if e.span is not None]
    spans = [
        s
        for s in shot_spans(cuts, video.duration)
        if s.overlaps(window) and min(s.end, window.end) > max(s.start, window.start)
    ] or [window]
    lines = [f"{i}. {s} ({s.duration:.1f} s)" for i, s in enumerate(spans, 1)]
    cut_times = sorted(round(e.span.end, 3) for e in cuts if window.start < e.span.end < window.end)
    fades = sum(1 for e in cuts if window.start < e.span.end < window.end and e.data.get("transition") == "gradual")
    head = f"{len(spans)} shots in {window}" + (f", cuts at {len(cut_times)} times" if cut_times else ", no cuts")
    if fades:
        head += f" ({fades} of them fades or dissolves)"
    return ToolResult(head + ":\n" + "\n".join(lines), spans=spans, metadata={"cuts": cut_times})
