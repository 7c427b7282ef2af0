"""How tools read the video index's stages, and the settings the perception stages share.

The stages themselves live beside their engines and register themselves with
``mcr.memory.index``: ``transcript`` (faster-whisper, in ``asr``), ``ocr`` (RapidOCR, in
``ocr``), ``embeddings`` (CLIP, in ``clip``) and ``shots`` (the shot detector, in
``shots``).

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
from dataclasses import dataclass, field, replace
from typing import Any

from mcr.memory.index import VideoIndex, make_stage, walk
from mcr.types import TimeSpan, format_time

from .base import ToolContext, ToolError, ToolRetry


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    try:
        return float(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def env_device() -> str:
    return os.environ.get("MCR_DEVICE") or "auto"


def stage_for(name: str, ctx: ToolContext | None = None) -> Any:
    """The stage ``name`` set up for a tool's context (its device and model cache)."""
    if ctx is None:
        return make_stage(name)
    return make_stage(name, device=ctx.device if ctx.device != "auto" else None, models=ctx.models)


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


def _run_all(video: Any, stage: Any, progress: Any = None) -> StageData:
    """The stage over the whole video, kept in this process only (a run without memory);
    ``progress(stage, done, total)`` after each chunk."""
    reason = stage.skip_reason(video)
    if reason:
        return StageData(stage.name, stage.version, "skipped", reason)
    entries, arrays = [], []
    if progress is not None:
        progress(stage.name, 0.0, float(video.duration))
    for span, result in walk(video, stage):
        entries += result.entries
        arrays += sorted(result.arrays.items())
        if progress is not None:
            progress(stage.name, span.end, float(video.duration))
    return StageData(stage.name, stage.version, "done", entries=entries, arrays=arrays)


def stage_data(ctx: ToolContext, name: str, stage: Any = None, build: bool = True) -> StageData | None:
    """The results of stage ``name`` for the context's video.

    With a memory they come from its video index, which builds the stage the first time
    (later calls and later runs reuse it); without one they are computed once per
    process. A stage that fails raises a ``ToolError`` that says why. With
    ``build=False`` a stage that is not built yet gives None.
    """
    video = ctx.require_video()
    stage = stage or stage_for(name, ctx)
    if ctx.memory is not None and ctx.memory.store.readonly:  # what it holds is read; the rest computed here
        st = VideoIndex(video, ctx.memory).state(stage.name)
        if st is None or st["version"] != stage.version or st["status"] not in ("done", "skipped"):
            return stage_data(replace(ctx, memory=None), name, stage, build)
    if ctx.memory is None:
        key = ("stage-data", video.content_hash, stage.name, stage.version)
        if not build and key not in ctx.models:
            return None
        with _lock(key):
            try:
                data = ctx.models.get(key, lambda: _run_all(video, stage, ctx.progress))
            except ToolError:
                raise
            except Exception as exc:
                raise ToolError(f"the {stage.name} index could not be built: {type(exc).__name__}: {exc}") from None
        data.key = key
        return data

    index = VideoIndex(video, ctx.memory)
    lock_key = (str(ctx.memory.path), video.id, stage.name)
    with _lock(lock_key):
        st = index.state(stage.name)
        fresh = st is not None and st["version"] == stage.version and st["status"] in ("done", "skipped")
        if not fresh:
            if not build:
                return None
            if ctx.progress is not None:  # the wait starts now: said before the first chunk is done
                ctx.progress(stage.name, 0.0, float(video.duration))
            (report,) = index.build([stage], progress=ctx.progress)
            if report.status == "failed":
                raise ToolError(f"the {stage.name} index could not be built: {report.reason}")
            st = index.state(stage.name)
        key = ("stage-data", str(ctx.memory.path), video.id, stage.name, stage.version, st["updated_at"])

        def load() -> StageData:
            if st["status"] == "skipped":
                return StageData(stage.name, stage.version, "skipped", st["info"].get("reason", ""))
            return StageData(
                stage.name, stage.version, "done", entries=index.entries(stage.name), arrays=index.arrays(stage.name)
            )

        data = ctx.models.get(key, load)
    data.key = key
    return data


def check_span(video: Any, span: TimeSpan | None) -> TimeSpan:
    """``span`` clamped to the video (None: the whole video); a span past the end is a retry."""
    if span is None:
        return video.span
    if span.start >= video.duration and not (span.start == 0 == video.duration):
        raise ToolRetry(
            f"the span {span} starts after the video ends ({format_time(video.duration)}); "
            f"choose a span inside 00:00:00.0-{format_time(video.duration)}"
        )
    return span.clamp(video.duration)
