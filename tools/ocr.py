"""``ocr``: text shown on screen, with when it is shown and where, read with RapidOCR.

RapidOCR runs the PP-OCR detection and recognition models (they ship inside the
``rapidocr-onnxruntime`` wheel) with onnxruntime. On eight frames of drawn text over
plain and busy backgrounds (``benchmarks/perception.py`` part f) it found 85% of the
words against tesseract 5's 60%, at the same speed on an idle CPU (0.12 against 0.13 s a
640x360 frame) and several times faster on a busy one; and it needs no system package.

Frames are sampled at a fixed rate. A frame that barely differs from the last one read
is not read again: its text is carried over; but each shot's representative frame (the
sampled frame nearest the middle of the shot, from the index's shot cuts) is always read,
since a cut can change the colours and the text while the grey cells stay alike. The frames
to read are shared out among one engine per core. The same text in the same place over
consecutive sampled frames becomes one entry whose span runs from the first frame it
was seen in to the next sampled frame after the last one (the text left the screen
somewhere in that last interval), clamped to the video's end.

Spaces: the recognition model can write a space, but mostly leaves out a narrow one ("EXIT14AIRPORT"
for "EXIT 14 AIRPORT"). RapidOCR also gives where each character was read (``return_word_box``),
and a space is put back between two characters with a blank stretch between them at least
``WORD_GAP`` times the line's ink height wide. On 1,686 lines drawn in eight DejaVu faces at
14-44 px over plain and noisy backgrounds this put back 333 of the 446 spaces the model had left
out and added none (gaps inside words reach 0.39 of the ink height, e.g. "11" in a serif face).
"""

from __future__ import annotations

import difflib
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from mcr.memory import ChunkResult, MemoryEntry, register_stage
from mcr.quoting import UNTRUSTED, quote
from mcr.types import TimeSpan

from .base import ToolContext, ToolError, ToolResult, shared_models, tool
from .change import ChangeGate
from .frame_pass import FrameStage
from .sampling import Request, sample_times
from .stages import check_span, env_float, stage_data

MIN_SCORE = 0.5
WORD_GAP = 0.42  # a blank stretch this wide (times the line's ink height) between two characters is a space
# a frame is read again when some cell of a 32 x 18 grid of grey means (0..1) changed this much: a short
# caption on a still background changes the frame's mean too little to count, but its own cells by 0.2 or more
SAME_CELL_DIFF = 0.05  # a frame is read again when some grey cell moved this much (tools.change)
_locks: dict[int, threading.Lock] = {}  # one per engine: RapidOCR keeps state between its steps
_locks_lock = threading.Lock()


def _lock_of(engine: Any) -> threading.Lock:
    with _locks_lock:
        return _locks.setdefault(id(engine), threading.Lock())


def ocr_workers() -> int:
    """Engines reading the frames of a chunk side by side (``MCR_OCR_WORKERS``; default: one per
    core, at most four). Each runs on one thread."""
    return max(1, int(os.environ.get("MCR_OCR_WORKERS") or min(4, os.cpu_count() or 1)))


def load_ocr(models: Any, slot: int = 0) -> Any:
    """A RapidOCR engine, loaded once per process (``slot``: which of the side-by-side engines)."""

    def load():
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            raise ToolError("on-screen text needs rapidocr-onnxruntime: `pip install rapidocr-onnxruntime`") from None
        # Detect at the frame's own size (the default upscales small frames to 736 px first).
        # One onnxruntime thread by default: its spinning worker threads cost more than they
        # give on a small or busy CPU (measured: 0.6 s a frame on one thread, 1.2 s on two).
        threads = int(os.environ.get("MCR_OCR_THREADS") or 1)
        return RapidOCR(
            det_limit_type="max",
            det_limit_side_len=960,
            use_cls=False,
            print_verbose=False,
            intra_op_num_threads=threads,
            inter_op_num_threads=1,
        )

    return models.get(("rapidocr", slot), load)


@dataclass
class Detection:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the video's pixels
    score: float


def read_text(engine: Any, image: np.ndarray, scale: float = 1.0) -> list[Detection]:
    """Text lines in an RGB image, with the spaces between words; boxes are multiplied by ``scale``."""
    with _lock_of(engine):  # RapidOCR takes BGR arrays
        result, _ = engine(np.ascontiguousarray(image[..., ::-1]), use_cls=False, return_word_box=True)
    grey = None
    out = []
    for item in result or []:
        quad, text, score = item[0], str(item[1]), item[2]
        if len(item) > 3 and item[3]:  # where each character was read
            if grey is None:
                grey = image.mean(axis=2, dtype=np.float32)
            text = restore_spaces(grey, quad, text, item[3])
        text = " ".join(text.split())
        if float(score) < MIN_SCORE or len(text.replace(" ", "")) < 2:
            continue
        q = np.asarray(quad, dtype=np.float32) * scale
        out.append(
            Detection(
                text,
                (float(q[:, 0].min()), float(q[:, 1].min()), float(q[:, 0].max()), float(q[:, 1].max())),
                float(score),
            )
        )
    return out


def _cjk(ch: str) -> bool:
    """Chinese, Japanese or Korean script: no spaces between its characters."""
    return "\u2e80" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uf900" <= ch <= "\ufaff"


def restore_spaces(grey: np.ndarray, quad: Any, text: str, char_boxes: Any) -> str:
    """``text`` with a space put back between two characters the recognizer read together when
    the line's image shows a word break between them.

    ``grey`` is the image the line was read in, ``quad`` the line's corners, ``char_boxes`` the
    corners of each character of ``text`` (RapidOCR's ``return_word_box``). A column of the line
    holds ink when some pixel differs from the line's median grey by a quarter of its strong
    contrast (at least 20 levels); a run of columns without ink between the centres of two
    characters, ``WORD_GAP`` times the height of the rows holding ink or wider, is a space. Lines
    that are not about level, busy backgrounds (no blank columns) and CJK text are left as read.
    """
    if len(text) < 2 or len(char_boxes) != len(text):
        return text
    q = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
    if abs(q[1, 1] - q[0, 1]) > 0.1 * max(1.0, abs(q[1, 0] - q[0, 0])):  # a slanted line
        return text
    x0, y0 = max(0, int(q[:, 0].min())), max(0, int(q[:, 1].min()))
    x1, y1 = min(grey.shape[1], int(np.ceil(q[:, 0].max()))), min(grey.shape[0], int(np.ceil(q[:, 1].max())))
    if y1 - y0 < 4 or x1 - x0 < y1 - y0:  # tiny, or a vertical line
        return text
    crop = grey[y0:y1, x0:x1]
    diff = np.abs(crop - np.median(crop))
    ink = diff >= max(20.0, 0.25 * float(np.percentile(diff, 98)))
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return text
    min_gap = max(2.0, WORD_GAP * (rows[-1] - rows[0] + 1))
    cols = ink.any(axis=0)
    # the blank runs of columns, as [start, end) in image x
    edges = np.flatnonzero(np.diff(np.concatenate(([1], cols.view(np.int8), [1]))))
    blanks = edges.reshape(-1, 2) + x0
    centres = [float(np.mean([p[0] for p in box])) for box in char_boxes]
    out = [text[0]]
    for i in range(1, len(text)):
        a, b = text[i - 1], text[i]
        if not (a.isspace() or b.isspace() or _cjk(a) or _cjk(b)):
            lo, hi = centres[i - 1], centres[i]
            if any(e - s >= min_gap and s >= lo and e <= hi for s, e in blanks):
                out.append(" ")
        out.append(b)
    return "".join(out)


def compact(text: str) -> str:
    """Lower case letters and digits only: how texts are compared (OCR often drops spaces)."""
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def box_iou(a: Iterable[float], b: Iterable[float]) -> float:
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def same_text(a: str, b: str) -> bool:
    ca, cb = compact(a), compact(b)
    return ca == cb or difflib.SequenceMatcher(None, ca, cb).ratio() >= 0.8


@dataclass
class _Run:
    text: str
    box: tuple[float, float, float, float]
    score: float
    first: float
    last: float
    frames: int = 1
    texts: dict = field(default_factory=dict)


def track(frames: Iterable[tuple[float, list[Detection]]], period: float) -> list[_Run]:
    """Join detections of consecutive sampled frames (same text, overlapping box) into runs."""
    done: list[_Run] = []
    active: list[_Run] = []
    prev_t = None
    for t, dets in frames:
        if prev_t is not None and t - prev_t > 1.5 * period:  # a gap in the sampling ends every run
            done += active
            active = []
        still: list[_Run] = []
        for d in dets:
            match = next((r for r in active if box_iou(r.box, d.box) >= 0.3 and same_text(r.text, d.text)), None)
            if match is None:
                run = _Run(d.text, d.box, d.score, t, t)
                run.texts[d.text] = d.score
                still.append(run)
                continue
            active.remove(match)
            match.last, match.frames = t, match.frames + 1
            match.texts[d.text] = max(match.texts.get(d.text, 0.0), d.score)
            match.score = max(match.score, d.score)
            still.append(match)
        done += active
        active = still
        prev_t = t
    done += active
    for r in done:
        r.text = max(r.texts.items(), key=lambda kv: (kv[1], len(kv[0])))[0]
    return sorted(done, key=lambda r: (r.first, r.box[1], r.box[0]))


def ocr_frames(
    engine: Any, video: Any, span: TimeSpan, fps: float, max_pixels: int | None = 640 * 360, counts: dict | None = None
) -> list:
    """Entries (kind ``ocr``) for the text on screen in ``span``, sampled at ``fps``. ``counts``
    is given the frames sampled and the frames actually read (the others looked the same)."""
    from .sampling import stream_frames

    frames = stream_frames(video, sample_times(span, fps), max_pixels=max_pixels)
    return read_frames_text(engine, video, frames, fps, counts)


def read_frames_text(
    engine: Any, video: Any, frames: Iterable, fps: float, counts: dict | None = None, always: Iterable[float] = ()
) -> list:
    """Entries for the text on the ``(timestamp, image)`` frames sampled at ``fps`` (see
    :func:`ocr_frames`). The frames at the times in ``always`` are read whatever they look like.
    ``engine`` may be a list of engines: the frames to read are then shared out among them and
    read side by side (which frames are read does not depend on what is read in them)."""
    engines = engine if isinstance(engine, list) else [engine]
    gate, always = ChangeGate(SAME_CELL_DIFF), set(always)
    frames = list(frames)
    # a frame that looks the same as the last one read shows the same text
    todo = [i for i, (t, image) in enumerate(frames) if gate.changed(image, force=t in always)]

    def read_one(k: int) -> list[Detection]:
        image = frames[todo[k]][1]
        return read_text(engines[k % len(engines)], image, scale=video.width / image.shape[1])

    if len(engines) > 1 and len(todo) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(engines), thread_name_prefix="ocr") as pool:
            found = dict(zip(todo, pool.map(read_one, range(len(todo)))))
    else:
        found = {i: read_one(k) for k, i in enumerate(todo)}
    read: list[tuple[float, list[Detection]]] = []
    last_dets: list[Detection] = []
    for i, (t, _) in enumerate(frames):
        last_dets = found.get(i, last_dets)
        read.append((t, last_dets))
    if counts is not None:
        counts.update(frames=gate.seen, frames_read=gate.passed, frames_forced=gate.forced)
    entries = []
    for r in track(read, 1.0 / fps):
        # on screen until the next sampled frame, which no longer showed it (or the video's end)
        end = max(r.first, min(r.last + 1.0 / fps, video.duration))
        entries.append(
            MemoryEntry(
                r.text,
                "ocr",
                span=TimeSpan(r.first, end),
                confidence=round(r.score, 3),
                data={"box": [round(v, 1) for v in r.box], "frames": r.frames},
            )
        )
    return entries


def shot_frames(times: Sequence[float], span: TimeSpan, cuts: Sequence[float]) -> list[float]:
    """Of the sampled ``times`` in the chunk ``span``, each shot's representative frame: the one
    nearest the middle of the shot's part of the chunk (the shots run between ``cuts``; a shot
    without a sampled frame has none)."""
    bounds = [span.start, *sorted(c for c in cuts if span.start < c < span.end), span.end]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        inside = [t for t in times if a <= t < b]
        if inside:
            out.append(min(inside, key=lambda t: abs(t - 0.5 * (a + b))))
    return out


def merge_entries(entries: list, gap: float) -> list[dict]:
    """Entries of the same text in the same place that meet across chunk edges, joined:
    ``[{"text", "span", "box", "score", "ids"}]`` in time order. ``gap`` is the sampling
    interval: an entry's span already runs to the next sampled frame, where the next chunk's
    entry begins, so entries join when one begins within half an interval of the other's end."""
    out: list[dict] = []
    for e in sorted(entries, key=lambda e: (e.span.start, e.span.end)):
        box = tuple(e.data.get("box") or (0, 0, 0, 0))
        for item in reversed(out[-20:]):
            if (
                e.span.start - item["span"].end <= 0.5 * gap + 1e-3
                and box_iou(item["box"], box) >= 0.3
                and same_text(item["text"], e.text)
            ):
                item["span"] = TimeSpan(item["span"].start, max(item["span"].end, e.span.end))
                item["ids"].append(e.id)
                item["score"] = max(item["score"], e.confidence or 0.0)
                break
        else:
            out.append({"text": e.text, "span": e.span, "box": box, "score": e.confidence or 0.0, "ids": [e.id]})
    return out


# ------------------------------------------------------------------ the index stage


class OcrStage(FrameStage):
    """On-screen text of frames sampled at ``fps``, read with RapidOCR (PP-OCR models)."""

    name = "ocr"
    uses = ("shots",)  # each shot's representative frame is read even when it looks like the last one read

    def __init__(
        self,
        fps: float | None = None,
        chunk_s: float = 60.0,
        max_pixels: int = 960 * 540,
        device: str | None = None,
        models: Any = None,
    ) -> None:
        self.fps = fps or env_float("MCR_OCR_FPS", 0.5)
        self.chunk_s = chunk_s
        self.max_pixels = max_pixels
        self.models = models or shared_models
        # 3: spaces between words put back; spans run to the next sampled frame. 4: each shot's
        # representative frame read (when the shots are indexed)
        self.version = f"4:rapidocr:{self.fps:g}"

    def skip_reason(self, video: Any) -> str | None:
        return None

    def request(self, video: Any, span: TimeSpan) -> Request:
        return Request(sample_times(span, self.fps), self.max_pixels)

    def from_frames(self, video: Any, span: TimeSpan, frames: list) -> ChunkResult:
        counts: dict = {}
        cuts = self.known.get("shots")
        always = shot_frames([t for t, _ in frames], span, [e.span.end for e in cuts]) if cuts is not None else []
        engines = [load_ocr(self.models, k) for k in range(ocr_workers())]
        entries = read_frames_text(engines, video, frames, self.fps, counts, always)
        return ChunkResult(entries, info=counts)


register_stage("ocr", OcrStage)


@tool(reads="text")
def ocr(ctx: ToolContext, span: Optional[TimeSpan] = None, query: str = "") -> ToolResult:
    """Text shown on screen (signs, captions, slides, scoreboards) with when and where it appears.

    Frames are sampled every few seconds; the result is cached for the whole video.

    Args:
        span: Only text shown inside this span (default: the whole video).
        query: Only lines containing these words (optional).
    """
    video = ctx.require_video()
    clamped = check_span(video, span)
    stage = OcrStage(models=ctx.models)
    data = stage_data(ctx, "ocr", stage=stage, build=False)
    note = ""
    if data is None and video.duration > 600 and clamped.duration < video.duration / 2:
        entries = ctx.models.get(
            ("ocr-span", video.content_hash, stage.version, clamped.to_list()[0], clamped.to_list()[1]),
            lambda: ocr_frames(load_ocr(ctx.models), video, clamped, stage.fps, stage.max_pixels),
        )
        note = " (read for this span only; the whole video's text is not indexed yet)"
    else:
        data = data or stage_data(ctx, "ocr", stage=stage)
        entries = data.entries
    items = [m for m in merge_entries(entries, 1.0 / stage.fps) if m["span"].overlaps(clamped)]
    if query.strip():
        words = [compact(w) for w in query.split() if compact(w)]
        items = [m for m in items if all(w in compact(m["text"]) for w in words)]
    if not items:
        what = f" matching {query!r}" if query.strip() else ""
        return ToolResult(
            f"no on-screen text{what} found in {clamped}{note}.",
            spans=[clamped],
            metadata={"lines": 0, "fps": stage.fps},
        )
    lines = [
        f"[{m['span']}] {m['text']!r} at x{m['box'][0]:.0f}-{m['box'][2]:.0f} y{m['box'][1]:.0f}-{m['box'][3]:.0f}"
        for m in items
    ]
    text = f"{len(items)} on-screen text lines in {clamped} (frames read every {1 / stage.fps:g} s){note}:\n" + quote(
        "\n".join(lines), "ocr"
    )
    return ToolResult(
        text,
        trust=UNTRUSTED,
        spans=[m["span"] for m in items],
        metadata={
            "lines": len(items),
            "fps": stage.fps,
            "items": [
                {"text": m["text"], "span": m["span"].to_list(), "box": list(m["box"]), "score": round(m["score"], 3)}
                for m in items
            ],
        },
    )
