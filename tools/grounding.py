"""``temporal_grounding``: the spans of the video that best match a text query.

Up to four signals, each from the video index, each scored per item and laid on one
time grid (``dt`` seconds a bin):

- ``transcript``: sentence-embedding similarity of the query to each spoken sentence
  (all-MiniLM-L6-v2, the memory's encoder), plus the share of the query's words the
  sentence contains: exactly, or (for less) by sound or spelling, so what speech
  recognition misheard still matches (``matching``).
- ``captions``: the same against the clip captions, when the ``captions`` stage has been
  built for the video (grounding never builds it).
- ``ocr``: the same two scores against on-screen text, with word matching weighted more
  (on-screen text is short and literal; OCR often drops spaces, so words are matched
  inside the text with spaces removed).
- ``clip``: CLIP similarity of the query to each sampled frame, taken relative to the
  whole video (a frame counts when it stands out from the rest), when CLIP weights are
  on the machine.

Each signal is mapped to 0..1, weighted, summed, and smoothed with a Gaussian (so
signals that agree in time add up). Peaks are taken greedily; each becomes the span
around it where the smoothed score stays above half the peak, so neighbouring peaks
merge into one span. Every result reports each signal's share of its score. The ``k``
best always come back while the index has anything to offer; those scoring below
``CONFIDENT`` are marked weak, and the model decides what weak evidence is worth.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from mcr.quoting import UNTRUSTED, quote
from mcr.types import TimeSpan

from .base import ToolContext, ToolError, ToolResult, ToolRetry, tool
from .matching import WordIndex, query_words, word_scores
from .ocr import merge_entries
from .stages import check_span, stage_data, stage_for

WEIGHTS = {"transcript": 1.0, "captions": 1.0, "ocr": 1.0, "clip": 0.8}
TEXT_MIX = {  # (sentence similarity, word matches) per text signal: on-screen text is short and literal
    "transcript": (0.7, 0.5),
    "captions": (0.7, 0.5),
    "ocr": (0.5, 0.7),
}
SMOOTH_S = 1.0
CONFIDENT = 0.25  # a span scoring below this is returned marked weak
EVIDENCE_MIN = 0.1  # an item scoring this much is quoted as evidence


@dataclass
class TextSignal:
    name: str
    starts: np.ndarray
    ends: np.ndarray
    texts: list[str]
    words: WordIndex
    vecs: np.ndarray | None  # sentence embeddings, None without an encoder
    pad: float


@dataclass
class FrameSignal:
    times: np.ndarray
    vecs: np.ndarray
    period: float


@dataclass
class Grounded:
    span: TimeSpan
    score: float
    shares: dict[str, float]
    evidence: list[str] = field(default_factory=list)

    @property
    def weak(self) -> bool:
        """Below the confidence threshold: a lead to check, not evidence."""
        return self.score < CONFIDENT

    def to_dict(self) -> dict:
        return {
            "span": self.span.to_list(),
            "score": round(self.score, 4),
            "weak": self.weak,
            "shares": {k: round(v, 3) for k, v in self.shares.items()},
            "evidence": self.evidence,
        }


def _calibrate_similarity(sim: np.ndarray) -> np.ndarray:
    return np.clip((sim - 0.25) / 0.45, 0.0, 1.0)


@contextlib.contextmanager
def one_thread():
    """Encode a short query on one thread: for a few tokens, more threads only wait on
    each other (and on a busy machine they wait much longer)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _encode_query(ctx: ToolContext, query: str, signals: dict) -> tuple[Any, Any]:
    """The query's sentence embedding and CLIP text embedding (None where not needed),
    computed side by side on one torch thread each."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = {}
    if any(s.vecs is not None and len(s.texts) for n, s in signals.items() if n in TEXT_MIX):
        jobs["text"] = lambda: _encoder(ctx).encode([query])[0]
    if "clip" in signals and len(signals["clip"][0].times):
        from .clip import load_clip

        stage = signals["clip"][1]
        clip = load_clip(ctx.models, stage.model, stage.pretrained, stage.device)
        jobs["clip"] = lambda: clip.embed_texts([query])[0]
    with one_thread():
        if len(jobs) < 2:
            out = {name: job() for name, job in jobs.items()}
        else:  # CLIP on the helper thread, the sentence encoder here, side by side
            global _helper
            if _helper is None:
                _helper = ThreadPoolExecutor(1, thread_name_prefix="mcr-grounding")
            clip_future = _helper.submit(jobs["clip"])
            out = {"text": jobs["text"](), "clip": clip_future.result()}
    return out.get("text"), out.get("clip")


_helper: Any = None  # one thread kept for the CLIP half of a query (starting one costs a few ms)


def _encoder(ctx: ToolContext):
    if ctx.memory is not None:
        return ctx.memory.encoder
    from mcr.memory.encoder import default_encoder

    return default_encoder("cpu")


def _text_signal(ctx: ToolContext, name: str, make_items: Any, pad: float, key: tuple, notes: dict) -> TextSignal:
    def build() -> TextSignal:
        items = make_items()
        texts = [t for _, _, t in items]
        vecs = None
        try:
            enc = _encoder(ctx)
            vecs = enc.encode(texts) if texts else None
        except Exception as exc:  # no sentence encoder here: words alone still match
            notes[name] = f"word matching only ({type(exc).__name__}: {str(exc)[:120]})"
        return TextSignal(
            name,
            np.array([a for a, _, _ in items], dtype=np.float64),
            np.array([b for _, b, _ in items], dtype=np.float64),
            texts,
            WordIndex(texts),
            vecs,
            pad,
        )

    return ctx.models.get(("grounding-signal", name) + tuple(key), build)


def collect_signals(ctx: ToolContext) -> tuple[dict[str, Any], dict[str, str]]:
    """The signals this video has (building missing index stages where possible), and why
    the others are missing."""
    video = ctx.require_video()
    signals: dict[str, Any] = {}
    missing: dict[str, str] = {}
    notes: dict[str, str] = {}
    if not video.has_audio:
        missing["transcript"] = "no audio track"
    else:
        try:
            data = stage_data(ctx, "transcript")
            if data.status == "skipped":
                missing["transcript"] = data.reason
            else:
                entries = data.entries
                signals["transcript"] = _text_signal(
                    ctx,
                    "transcript",
                    lambda: [(e.span.start, e.span.end, e.text) for e in entries if e.span],
                    0.25,
                    data.key,
                    notes,
                )
        except ToolError as exc:
            missing["transcript"] = str(exc)
    try:
        stage = stage_for("ocr", ctx)
        data = stage_data(ctx, "ocr", stage=stage)
        entries, period = data.entries, 1.0 / stage.fps
        signals["ocr"] = _text_signal(
            ctx,
            "ocr",
            # a text's span runs to the next sampled frame; half a period each side of the frames that showed it
            lambda: [
                (m["span"].start, max(m["span"].start, m["span"].end - period), m["text"])
                for m in merge_entries(entries, period)
            ],
            0.5 * period,
            data.key,
            notes,
        )
    except ToolError as exc:
        missing["ocr"] = str(exc)
    captions = _captions(ctx, notes)
    if captions is not None:
        signals["captions"] = captions
    from .clip import unavailable_reason

    reason = unavailable_reason()
    if reason:
        missing["clip"] = reason
    else:
        try:
            stage = stage_for("embeddings", ctx)
            data = stage_data(ctx, "embeddings", stage=stage)
            arrays = [a for _, a in data.arrays]

            def build() -> FrameSignal:
                table = np.concatenate(arrays) if arrays else np.zeros((0, 2), np.float32)
                return FrameSignal(table[:, 0].astype(np.float64), np.ascontiguousarray(table[:, 1:]), 1.0 / stage.fps)

            signals["clip"] = (ctx.models.get(("grounding-frames",) + tuple(data.key), build), stage)
        except ToolError as exc:
            missing["clip"] = str(exc)
    missing.update({f"{k} note": v for k, v in notes.items()})
    return signals, missing


def _captions(ctx: ToolContext, notes: dict) -> TextSignal | None:
    """The ``captions`` stage's entries as a text signal when that stage has been built for
    this video with a memory (grounding never builds it: captioning needs a model and is
    slow); None when it has not. Any built version counts, whatever captioning model made
    it, so the stage need not even be registered here."""
    if ctx.memory is None:
        return None
    from mcr.memory.index import VideoIndex

    index = VideoIndex(ctx.require_video(), ctx.memory)
    st = index.state("captions")
    if st is None or st["status"] != "done":
        return None
    key = ("captions", str(ctx.memory.path), index.video_id, st["version"], st["updated_at"])
    entries = ctx.models.get(
        ("caption-entries",) + key,
        lambda: [e for e in index.entries("captions") if e.span and e.text.strip() and e.kind == "caption"],
    )
    if not entries:
        return None
    return _text_signal(ctx, "captions", lambda: [(e.span.start, e.span.end, e.text) for e in entries], 0.0, key, notes)


def _gaussian(values: np.ndarray, sigma_bins: float) -> np.ndarray:
    if sigma_bins < 0.5 or values.size < 3:
        return values
    radius = int(math.ceil(3 * sigma_bins))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma_bins) ** 2)
    kernel /= kernel.sum()
    return np.convolve(np.pad(values, radius, mode="edge"), kernel, mode="valid")


def _lay(grid: np.ndarray, t0: float, dt: float, starts, ends, scores) -> None:
    """Each item's score over the bins its span covers (the highest where items overlap)."""
    n = grid.size
    lo = np.clip(np.floor((np.asarray(starts) - t0) / dt), 0, n).astype(np.int64)
    hi = np.clip(np.ceil((np.asarray(ends) - t0) / dt) + 1, 0, n).astype(np.int64)
    width = np.maximum(hi - lo, 0)
    if not width.sum():
        return
    bins = np.repeat(lo - np.cumsum(width) + width, width) + np.arange(int(width.sum()))
    np.maximum.at(grid, bins, np.repeat(np.asarray(scores, dtype=grid.dtype), width))


def ground(ctx: ToolContext, query: str, k: int = 5, span: TimeSpan | None = None) -> tuple[list[Grounded], dict]:
    """The ``k`` best spans for ``query`` and a report of the signals used."""
    video = ctx.require_video()
    window = span or video.span
    started = time.perf_counter()  # the index stages built for this call count in its time
    signals, missing = collect_signals(ctx)
    dt = max(0.25, window.duration / 16000)
    n = max(1, int(math.ceil(window.duration / dt)) + 1)
    grid_t = window.start + np.arange(n) * dt
    layers: dict[str, np.ndarray] = {}
    words = query_words(query)
    item_scores: dict[str, tuple[Any, np.ndarray]] = {}
    qvec, cvec = _encode_query(ctx, query, signals)
    for name, (w_sem, w_words) in TEXT_MIX.items():
        sig = signals.get(name)
        if sig is None or not len(sig.texts):
            continue
        lex = word_scores(words, sig.words)
        sem = raw = np.zeros_like(lex)
        if sig.vecs is not None and qvec is not None:
            raw = sig.vecs @ qvec
            sem = _calibrate_similarity(raw)
        score = np.clip(w_sem * sem + w_words * lex, 0, 1)
        # every item stays a candidate: one nothing matches keeps a trace of its raw
        # similarity, so the best weak candidates still come back, in order
        floor = 0.002 + 0.02 * np.clip(raw, 0, 1)
        grid = np.zeros(n, dtype=np.float32)
        _lay(grid, window.start, dt, sig.starts - sig.pad, sig.ends + sig.pad, np.maximum(score, floor))
        layers[name] = grid
        item_scores[name] = (sig, score)
    if "clip" in signals:
        frames, stage = signals["clip"]
        if len(frames.times) and cvec is not None:
            sims = frames.vecs @ cvec
            z = (sims - sims.mean()) / (sims.std() + 1e-6)
            # a frame counts when it stands out; the rest keep a trace of their rank as weak candidates
            frame_score = np.maximum(np.clip((z - 1.0) / 2.5, 0.0, 1.0), 0.002 + 0.02 * np.clip((z + 3.0) / 6.0, 0, 1))
            idx = np.clip(np.searchsorted(frames.times, grid_t + frames.period / 2) - 1, 0, len(frames.times) - 1)
            near = np.abs(frames.times[idx] - grid_t) <= frames.period
            layers["clip"] = np.where(near, frame_score[idx], 0.0).astype(np.float32)
    report = {"signals": sorted(layers), "unavailable": missing, "grid_s": dt}
    if not layers:
        return [], report
    weighted = {name: WEIGHTS[name] * g for name, g in layers.items()}
    fused = _gaussian(sum(weighted.values()), SMOOTH_S / dt)
    work = fused.copy()
    results: list[Grounded] = []
    while len(results) < k:
        peak = int(np.argmax(work))
        value = float(work[peak])
        if value <= 0.0:  # nothing left that any signal covers
            break
        lo = peak
        while lo > 0 and fused[lo - 1] >= 0.5 * value and work[lo - 1] > 0:
            lo -= 1
        hi = peak
        while hi < n - 1 and fused[hi + 1] >= 0.5 * value and work[hi + 1] > 0:
            hi += 1
        a, b = lo, hi  # the whole hill goes, down to where it stops falling (a level stretch is another candidate)
        while a > 0 and 0 < fused[a - 1] < fused[a]:
            a -= 1
        while b < n - 1 and 0 < fused[b + 1] < fused[b]:
            b += 1
        work[a : b + 1] = 0.0
        total = sum(float(g[lo : hi + 1].sum()) for g in weighted.values()) or 1.0
        shares = {name: float(g[lo : hi + 1].sum()) / total for name, g in weighted.items()}
        res_span = TimeSpan(float(grid_t[lo]), min(float(grid_t[hi]), window.end)).clamp(video.duration)
        evidence = []
        for name, (sig, score) in item_scores.items():
            inside = np.flatnonzero(
                (sig.starts <= res_span.end) & (sig.ends >= res_span.start) & (score >= EVIDENCE_MIN)
            )
            if inside.size:
                best = int(inside[np.argmax(score[inside])])
                evidence.append(f"{name}: {sig.texts[best]!r}")
        results.append(Grounded(res_span, value, shares, evidence))
    report["latency_s"] = round(time.perf_counter() - started, 4)
    return results, report


@tool
def temporal_grounding(ctx: ToolContext, query: str, k: int = 5, span: Optional[TimeSpan] = None) -> ToolResult:
    """Find when something happens: the spans that best match a description, best first.

    Fuses what is said (transcript), what is written on screen (OCR), what clips are
    captioned as (when the captions index is built) and what is seen (CLIP frame
    similarity, when its weights are installed). Words heard or spelt slightly wrong
    still match, for less. Each result gives the share of each signal, so you can tell
    heard from read from seen; a result marked weak is below the confidence threshold:
    a lead to check (inspect its frames or transcript), not evidence.

    Args:
        query: What to find, e.g. "the chef adds salt" or "the scoreboard shows 2-1".
        k: How many spans to return (1-20).
        span: Only search inside this span (default: the whole video).
    """
    video = ctx.require_video()
    if not query.strip():
        raise ToolRetry("the query is empty: describe what to find, e.g. 'the man opens the door'")
    if not 1 <= k <= 20:
        raise ToolRetry("k must be between 1 and 20")
    window = check_span(video, span)
    results, report = ground(ctx, query.strip(), k, window)
    used = ", ".join(report["signals"]) or "none"
    gone = "; ".join(f"{name}: {why}" for name, why in report["unavailable"].items())
    head = f"signals used: {used}" + (f" (not used: {gone})" if gone else "")
    meta = {
        "signals": report["signals"],
        "unavailable": report["unavailable"],
        "threshold": CONFIDENT,
        "results": [r.to_dict() for r in results],
        "latency_s": report.get("latency_s"),
    }
    if not results:
        return ToolResult(f"nothing in {window} can be searched for {query!r}.\n{head}", spans=[], metadata=meta)
    lines = []
    for i, r in enumerate(results, 1):
        shares = ", ".join(
            f"{name} {share:.0%}" for name, share in sorted(r.shares.items(), key=lambda kv: -kv[1]) if share >= 0.005
        )
        mark = " WEAK" if r.weak else ""
        said = "\n" + quote("\n".join(r.evidence), "index") if r.evidence else ""
        lines.append(f"{i}. {r.span} score {r.score:.2f}{mark} ({shares})" + said)
    weak = sum(r.weak for r in results)
    note = (
        f"\n{weak} of {len(results)} below the confidence threshold {CONFIDENT} (marked WEAK): "
        "leads to check, not evidence"
        if weak
        else ""
    )
    title = "best matches" if weak < len(results) else "no confident match; the best weak candidates"
    return ToolResult(
        f"{title} for {query!r}:\n" + "\n".join(lines) + note + f"\n{head}",
        spans=[r.span for r in results],
        metadata=meta,
        trust=UNTRUSTED if any(r.evidence for r in results) else "trusted",
    )


def search_spans(
    video: Any, memory: Any, query: str, k: int = 5, span: Optional[TimeSpan] = None, device: str = "auto"
):
    """``temporal_grounding`` called outside a run (search commands, the service, MCP): the
    ``ToolResult`` whose ``metadata`` holds the ranked spans; an error result says why."""
    from mcr.types import ToolCall

    from .registry import ToolRegistry

    arguments = {"query": query, "k": k, **({"span": str(span)} if span else {})}
    ctx = ToolContext(video=video, memory=memory, device=device)
    return ToolRegistry([temporal_grounding]).execute(ToolCall("temporal_grounding", arguments, "search"), ctx)
