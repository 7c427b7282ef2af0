"""The perception stages of the video index, and how tools read them.

Stages (registered by name in ``mcr.memory.index.STAGES``):

- ``transcript``: faster-whisper sentences with word times (entries of kind ``transcript``).
- ``ocr``: on-screen text with its boxes, deduplicated over consecutive sampled frames
  (entries of kind ``ocr``).
- ``embeddings``: open_clip image embeddings of frames sampled at a fixed rate (arrays:
  one ``(n, 1 + dim)`` float32 array per chunk, column 0 the frame times).

Settings come from the environment, so ``mcr-agent index`` and an ``Agent`` build the
same index: ``MCR_WHISPER_MODEL``, ``MCR_OCR_FPS``, ``MCR_CLIP_MODEL``,
``MCR_CLIP_PRETRAINED``, ``MCR_CLIP_FPS`` and ``MCR_DEVICE``. The model (and the rate)
is part of each stage's version, so changing it rebuilds that stage.

:func:`stage_data` is how a tool gets a stage's results: from the run's memory when it
has one (building the stage the first time), otherwise computed once per process.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mcr.types import TimeSpan, format_time

from .base import ToolContext, ToolError, ToolRetry, shared_models


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    try:
        return float(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _env_device() -> str:
    return os.environ.get("MCR_DEVICE") or "auto"


# -------------------------------------------------------------------- stages

class TranscriptStage:
    """Speech to text over the whole audio track, a few minutes of audio at a time."""

    name = "transcript"

    def __init__(self, model: str | None = None, device: str | None = None, chunk_s: float = 480.0,
                 models: Any = None) -> None:
        from .asr import model_spec

        self.spec = model or model_spec()
        self.device = device or _env_device()
        self.chunk_s = chunk_s
        self.models = models or shared_models
        self.version = f"1:{self.spec}"

    def skip_reason(self, video: Any) -> str | None:
        return None if video.has_audio else "no audio track"

    def run_chunk(self, video: Any, span: TimeSpan):
        from mcr.memory.entries import MemoryEntry
        from mcr.memory.index import ChunkResult

        from .asr import SAMPLE_RATE, audio_damage, load_whisper, quietest_point, transcribe

        model = load_whisper(self.models, self.spec, self.device)
        start, end = quietest_point(video, span.start), quietest_point(video, span.end)
        if end <= start:
            return ChunkResult([])
        bad, total = audio_damage(video, TimeSpan(start, end))
        if total and bad > total // 2:
            raise RuntimeError(f"the audio track is damaged: {bad} of {total} audio packets in "
                               f"{TimeSpan(start, end)} cannot be decoded; re-encode the audio, e.g. "
                               "`ffmpeg -i IN -c:v copy -c:a aac OUT.mp4`")
        audio = video.audio(TimeSpan(start, end), sr=SAMPLE_RATE)
        entries = []
        for s in transcribe(model, audio, offset=start):
            a = min(max(s.start, 0.0), video.duration)
            b = min(max(s.end, a), video.duration)
            words = [[w, round(ws, 3), round(we, 3), round(p, 3)] for w, ws, we, p in s.words]
            entries.append(MemoryEntry(s.text, "transcript", span=TimeSpan(a, b),
                                       confidence=round(min(1.0, max(0.0, s.confidence)), 3),
                                       data={"words": words, "language": s.language}))
        return ChunkResult(entries)


class OcrStage:
    """On-screen text of frames sampled at ``fps``, read with RapidOCR (PP-OCR models)."""

    name = "ocr"

    def __init__(self, fps: float | None = None, chunk_s: float = 60.0, max_pixels: int = 960 * 540,
                 models: Any = None) -> None:
        self.fps = fps or _env_float("MCR_OCR_FPS", 0.5)
        self.chunk_s = chunk_s
        self.max_pixels = max_pixels
        self.models = models or shared_models
        self.version = f"1:rapidocr:{self.fps:g}"

    def skip_reason(self, video: Any) -> str | None:
        return None

    def run_chunk(self, video: Any, span: TimeSpan):
        from mcr.memory.index import ChunkResult

        from .ocr import load_ocr, ocr_frames

        engine = load_ocr(self.models)
        return ChunkResult(ocr_frames(engine, video, span, self.fps, self.max_pixels))


class EmbeddingStage:
    """open_clip image embeddings of frames sampled at ``fps``."""

    name = "embeddings"

    def __init__(self, model: str | None = None, pretrained: str | None = None, fps: float | None = None,
                 device: str | None = None, chunk_s: float = 60.0, models: Any = None) -> None:
        from .clip import clip_spec

        self.model, self.pretrained = clip_spec(model, pretrained)
        self.fps = fps or _env_float("MCR_CLIP_FPS", 1.0)
        self.device = device or _env_device()
        self.chunk_s = chunk_s
        self.models = models or shared_models
        self.version = f"1:{self.model}:{os.path.basename(str(self.pretrained))}:{self.fps:g}"

    def skip_reason(self, video: Any) -> str | None:
        return None

    def run_chunk(self, video: Any, span: TimeSpan):
        from mcr.memory.index import ChunkResult

        from .clip import load_clip
        from .sampling import sample_times, stream_frames

        clip = load_clip(self.models, self.model, self.pretrained, self.device)
        stamps, vecs, batch = [], [], []
        side = max(64, clip.image_size)
        max_pixels = int(side * side * 16 / 9) if video.width >= video.height else int(side * side * 9 / 16)
        for t, image in stream_frames(video, sample_times(span, self.fps), max_pixels=max(max_pixels, 64 * 64)):
            stamps.append(t)
            batch.append(image)
            if len(batch) == 32:
                vecs.append(clip.embed_images(batch))
                batch = []
        if batch:
            vecs.append(clip.embed_images(batch))
        if not stamps:
            return ChunkResult()
        emb = np.concatenate(vecs).astype(np.float32)
        return ChunkResult(arrays={span.start: np.concatenate([np.asarray(stamps, np.float32)[:, None], emb], 1)})


def _shots(**_: Any):
    from mcr.memory.shots import ShotStage

    return ShotStage()


STAGE_CLASSES: dict[str, Callable[..., Any]] = {
    "transcript": lambda device=None, models=None: TranscriptStage(device=device, models=models),
    "ocr": lambda device=None, models=None: OcrStage(models=models),
    "embeddings": lambda device=None, models=None: EmbeddingStage(device=device, models=models),
    "shots": _shots,
}


def make_stage(name: str, ctx: ToolContext | None = None) -> Any:
    """The stage ``name`` set up for a tool's context (its device and model cache)."""
    if name not in STAGE_CLASSES:
        raise ValueError(f"unknown stage {name!r}")
    if ctx is None:
        return STAGE_CLASSES[name]()
    device = ctx.device if ctx.device != "auto" else None
    return STAGE_CLASSES[name](device=device, models=ctx.models)


# ------------------------------------------------------------ reading stages

@dataclass
class StageData:
    """A stage's results for one video. ``status`` is ``done`` or ``skipped`` (with ``reason``)."""

    name: str
    version: str
    status: str
    reason: str = ""
    entries: list = field(default_factory=list)
    arrays: list = field(default_factory=list)  # [(key, array)]
    key: tuple = ()


_locks: dict[tuple, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(key: tuple) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _run_all(video: Any, stage: Any) -> StageData:
    reason = stage.skip_reason(video)
    if reason:
        return StageData(stage.name, stage.version, "skipped", reason)
    entries, arrays, cursor = [], [], 0.0
    while cursor < video.duration - 1e-6:
        span = TimeSpan(cursor, min(video.duration, cursor + stage.chunk_s))
        result = stage.run_chunk(video, span)
        entries += result.entries
        arrays += sorted(result.arrays.items())
        cursor = span.end
    return StageData(stage.name, stage.version, "done", entries=entries, arrays=arrays)


def stage_data(ctx: ToolContext, name: str, stage: Any = None, build: bool = True) -> StageData | None:
    """The results of stage ``name`` for the context's video.

    With a memory they come from its video index, which builds the stage the first time
    (later calls and later runs reuse it); without one they are computed once per
    process. A stage that fails raises a ``ToolError`` that says why. With
    ``build=False`` a stage that is not built yet gives None.
    """
    video = ctx.require_video()
    stage = stage or make_stage(name, ctx)
    if ctx.memory is None:
        key = ("stage-data", video.content_hash, stage.name, stage.version)
        if not build and key not in ctx.models:
            return None
        with _lock(key):
            try:
                data = ctx.models.get(key, lambda: _run_all(video, stage))
            except ToolError:
                raise
            except Exception as exc:
                raise ToolError(f"the {stage.name} index could not be built: {type(exc).__name__}: {exc}") from None
        data.key = key
        return data

    from mcr.memory.index import VideoIndex

    index = VideoIndex(video, ctx.memory)
    lock_key = (str(ctx.memory.path), video.id, stage.name)
    with _lock(lock_key):
        st = index.state(stage.name)
        fresh = st is not None and st["version"] == stage.version and st["status"] in ("done", "skipped")
        if not fresh:
            if not build:
                return None
            (report,) = index.build([stage])
            if report.status == "failed":
                raise ToolError(f"the {stage.name} index could not be built: {report.reason}")
            st = index.state(stage.name)
        row = ctx.memory.store.conn.execute("SELECT updated_at FROM stages WHERE video_id = ? AND stage = ?",
                                            (video.id, stage.name)).fetchone()
        key = ("stage-data", str(ctx.memory.path), video.id, stage.name, stage.version, row[0] if row else None)

        def load() -> StageData:
            if st["status"] == "skipped":
                return StageData(stage.name, stage.version, "skipped", st["info"].get("reason", ""))
            return StageData(stage.name, stage.version, "done", entries=index.entries(stage.name),
                             arrays=index.arrays(stage.name))

        data = ctx.models.get(key, load)
    data.key = key
    return data


def check_span(video: Any, span: TimeSpan | None) -> TimeSpan:
    """``span`` clamped to the video (None: the whole video); a span past the end is a retry."""
    if span is None:
        return video.span
    if span.start >= video.duration and not (span.start == 0 == video.duration):
        raise ToolRetry(f"the span {span} starts after the video ends ({format_time(video.duration)}); "
                        f"choose a span inside 00:00:00.0-{format_time(video.duration)}")
    return span.clamp(video.duration)


def registered_factories() -> dict[str, Callable[[], Any]]:
    """Factories for ``mcr.memory.index.STAGES`` (settings from the environment)."""
    return {"transcript": TranscriptStage, "ocr": OcrStage, "embeddings": EmbeddingStage}
