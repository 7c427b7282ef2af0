"""``temporal_grounding``: the spans of the video that best match a text query.

Three signals, each from the video index, each scored per item and laid on one time
grid (``dt`` seconds a bin):

- ``transcript``: sentence-embedding similarity of the query to each spoken sentence
  (all-MiniLM-L6-v2, the memory's encoder), plus the share of the query's words the
  sentence contains.
- ``ocr``: the same two scores against on-screen text, with word matching weighted more
  (on-screen text is short and literal; OCR often drops spaces, so words are matched
  inside the text with spaces removed).
- ``clip``: CLIP similarity of the query to each sampled frame, taken relative to the
  whole video (a frame counts when it stands out from the rest), when CLIP weights are
  on the machine.

Each signal is mapped to 0..1, weighted, summed, and smoothed with a Gaussian (so
signals that agree in time add up). Peaks are taken greedily; each becomes the span
around it where the smoothed score stays above half the peak, so neighbouring peaks
merge into one span. Every result reports each signal's share of its score.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from mcr.types import TimeSpan

from .base import ToolContext, ToolError, ToolResult, ToolRetry, tool
from .ocr import merge_entries
from .stages import check_span, stage_data, stage_for

WEIGHTS = {"transcript": 1.0, "ocr": 1.0, "clip": 0.8}
SMOOTH_S = 1.0
MIN_PEAK = 0.08
STOPWORDS = set(
    """a an the and or of to in on at by for with from into onto over under is are was were be been
being it its this that these those there here what which who whom whose when where why how does do did doing
done has have had having i you he she we they me him her us them my your his our their some any about as than
then so such very can could should would will shall may might must not no yes up down out off again once
scene video shown shows show part moment time say says said tell tells someone something""".split()
)


@dataclass
class TextSignal:
    name: str
    starts: np.ndarray
    ends: np.ndarray
    texts: list[str]
    compact: "Haystack"  # the texts lower-cased without spaces or punctuation
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

    def to_dict(self) -> dict:
        return {
            "span": self.span.to_list(),
            "score": round(self.score, 4),
            "shares": {k: round(v, 3) for k, v in self.shares.items()},
            "evidence": self.evidence,
        }


def _compact(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def query_words(query: str) -> list[str]:
    words = [w for w in re.findall(r"[0-9a-z]+", query.lower()) if w not in STOPWORDS]
    return [w for w in words if len(w) > 1 or w.isdigit()]


def lexical_scores(words: list[str], compact_texts: "list[str] | Haystack") -> np.ndarray:
    """Share of the query's words found in each text (a long word also counts without its
    last three letters, so "sleeping" finds "sleeps" and "judging" finds "judge")."""
    hay = compact_texts if isinstance(compact_texts, Haystack) else Haystack(compact_texts)
    if not words or not hay.count:
        return np.zeros(hay.count, dtype=np.float32)
    out = np.zeros(hay.count, dtype=np.float32)
    for w in words:  # a word counts once per text, found whole or by its stem
        out += hay.contains(w[: max(4, len(w) - 3)] if len(w) >= 6 else w)
    return out / len(words)


class Haystack:
    """Texts joined into one string, so a word is looked for in all of them by one scan."""

    def __init__(self, texts: list[str]) -> None:
        self.count = len(texts)
        self.joined = "\x00".join(texts)
        self.starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]]) if texts else np.zeros(0, int)

    def contains(self, needle: str) -> np.ndarray:
        """1.0 for each text that holds ``needle``, else 0.0."""
        found = np.zeros(self.count, dtype=np.float32)
        at = [m.start() for m in re.finditer(re.escape(needle), self.joined)]
        if at:
            found[np.searchsorted(self.starts, at, side="right") - 1] = 1.0
        return found


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
    if any(s.vecs is not None and len(s.texts) for n, s in signals.items() if n in ("transcript", "ocr")):
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
            Haystack([_compact(t) for t in texts]),
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
            lambda: [(m["span"].start, m["span"].end, m["text"]) for m in merge_entries(entries, period)],
            0.5 * period,
            data.key,
            notes,
        )
    except ToolError as exc:
        missing["ocr"] = str(exc)
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
    signals, missing = collect_signals(ctx)
    started = time.perf_counter()
    dt = max(0.25, window.duration / 16000)
    n = max(1, int(math.ceil(window.duration / dt)) + 1)
    grid_t = window.start + np.arange(n) * dt
    layers: dict[str, np.ndarray] = {}
    words = query_words(query)
    item_scores: dict[str, tuple[Any, np.ndarray]] = {}
    qvec, cvec = _encode_query(ctx, query, signals)
    for name in ("transcript", "ocr"):
        sig = signals.get(name)
        if sig is None:
            continue
        lex = lexical_scores(words, sig.compact)
        sem = np.zeros_like(lex)
        if sig.vecs is not None and len(sig.texts) and qvec is not None:
            sem = _calibrate_similarity(sig.vecs @ qvec)
        score = np.clip(0.7 * sem + 0.5 * lex, 0, 1) if name == "transcript" else np.clip(0.5 * sem + 0.7 * lex, 0, 1)
        keep = score >= 0.1
        grid = np.zeros(n, dtype=np.float32)
        _lay(grid, window.start, dt, sig.starts[keep] - sig.pad, sig.ends[keep] + sig.pad, score[keep])
        layers[name] = grid
        item_scores[name] = (sig, score)
    if "clip" in signals:
        frames, stage = signals["clip"]
        if len(frames.times) and cvec is not None:
            sims = frames.vecs @ cvec
            z = (sims - sims.mean()) / (sims.std() + 1e-6)
            frame_score = np.clip((z - 1.0) / 2.5, 0.0, 1.0)
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
        if value < MIN_PEAK or (results and value < 0.1 * results[0].score):
            break
        lo = peak
        while lo > 0 and fused[lo - 1] >= 0.5 * value and work[lo - 1] > 0:
            lo -= 1
        hi = peak
        while hi < n - 1 and fused[hi + 1] >= 0.5 * value and work[hi + 1] > 0:
            hi += 1
        a, b = lo, hi  # the whole hill goes, down to where it stops falling
        while a > 0 and 0 < fused[a - 1] <= fused[a]:
            a -= 1
        while b < n - 1 and 0 < fused[b + 1] <= fused[b]:
            b += 1
        work[a : b + 1] = 0.0
        total = sum(float(g[lo : hi + 1].sum()) for g in weighted.values()) or 1.0
        shares = {name: float(g[lo : hi + 1].sum()) / total for name, g in weighted.items()}
        res_span = TimeSpan(float(grid_t[lo]), min(float(grid_t[hi]), window.end)).clamp(video.duration)
        evidence = []
        for name, (sig, score) in item_scores.items():
            inside = np.flatnonzero((sig.starts <= res_span.end) & (sig.ends >= res_span.start) & (score >= 0.1))
            if inside.size:
                best = int(inside[np.argmax(score[inside])])
                evidence.append(f"{name}: {sig.texts[best]!r}")
        results.append(Grounded(res_span, value, shares, evidence))
    report["latency_s"] = round(time.perf_counter() - started, 4)
    return results, report


@tool
def temporal_grounding(ctx: ToolContext, query: str, k: int = 5, span: Optional[TimeSpan] = None) -> ToolResult:
    """Find when something happens: the spans that best match a description, best first.

    Fuses what is said (transcript), what is written on screen (OCR) and what is seen
    (CLIP frame similarity, when its weights are installed). Each result gives the share
    of each signal, so you can tell heard from read from seen.

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
        "results": [r.to_dict() for r in results],
        "latency_s": report.get("latency_s"),
    }
    if not results:
        return ToolResult(f"nothing in {window} matches {query!r}.\n{head}", spans=[], metadata=meta)
    lines = []
    for i, r in enumerate(results, 1):
        shares = ", ".join(
            f"{name} {share:.0%}" for name, share in sorted(r.shares.items(), key=lambda kv: -kv[1]) if share >= 0.005
        )
        lines.append(f"{i}. {r.span} score {r.score:.2f} ({shares})" + ("".join(f"\n   {ev}" for ev in r.evidence)))
    return ToolResult(
        f"best matches for {query!r}:\n" + "\n".join(lines) + f"\n{head}",
        spans=[r.span for r in results],
        metadata=meta,
    )
