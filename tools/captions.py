"""``captions``: what is seen in each short clip of the video, in a sentence or two.

The ``captions`` index stage cuts every shot (from the ``shots`` stage) into clips of at
most ``clip_s`` seconds (10 by default; a shot is split into equal parts), and asks a
vision model for a caption of each clip from ``frames`` frames spread over it (at most
``max_pixels`` pixels each). The model is any backend with ``generate``: the run's own
model or a named one (``--caption-model SPEC``, ``Agent(caption_model=...)``). Requests to
an OpenAI-compatible server go out several at a time (``workers``, 4 by default; other
backends one at a time: a local model runs one request at once anyway).

Each caption is a memory entry of kind ``caption`` whose span is its clip, embedded with
the memory's sentence encoder as it is stored, so captions are found by meaning.

Entities: the model is asked for JSON, ``{"caption": ..., "entities": [...]}``, listing
the people and objects the caption names; the entities go into the memory's entity and
event graph (``memory_events``), one event per caption. When the reply is plain text, or
has no entity list, the entities are the noun phrases after an article or a number in
the caption ("a man in a red coat opens the door" gives man, red coat, door): up to two
words, cut at the first function word; a second word ending in -s or -ing, or following a
plural, is dropped (it is a verb, mostly: "a dog runs", "two dogs bark").

A clip whose request fails or times out (``timeout_s``) gets no caption; it is counted
(``failed_clips``) and listed with its reason (``failed``) in the stage's info, and the
other clips go on. A chunk in which every clip failed fails the stage, so the next build
retries it (a server that is down is not recorded as a video without captions). The
stage's info also counts clips, model calls, tokens and seconds, and per video hour.

Settings from the environment (so ``mcr-agent index`` and an ``Agent`` build the same
index): ``MCR_CAPTION_CLIP_S``, ``MCR_CAPTION_FRAMES``, ``MCR_CAPTION_MAX_PIXELS``,
``MCR_CAPTION_WORKERS``. The model's name and these settings make the stage's version.
"""

from __future__ import annotations

import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mcr.memory import ChunkResult, MemoryEntry, register_stage
from mcr.types import FramesPart, Message, TextPart, TimeSpan, format_time

from .stages import env_float

CAPTION_SYSTEM = (
    "You caption short clips of a video. Say what is seen: who or what is there and what happens, "
    "in one or two plain sentences. Do not guess what is not visible."
)
CAPTION_PROMPT = (
    'Reply with JSON only: {"caption": "one or two sentences", '
    '"entities": ["each person or object the caption names"]}.'
)
PROMPT_VERSION = "1"
MAX_CAPTION_CHARS = 400
MAX_LISTED_FAILURES = 50  # failed clips listed in the stage's info (all are counted)

_ARTICLES = r"a|an|the|one|two|three|four|five|six|several|some|many"
_FUNCTION = set(
    "a an the and or but of in on at to from with by for into onto over under near behind while as "
    "is are was were be being been has have had does do did who which that this these those it its "
    "his her their he she they we you i there then than who's".split()
)
_PHRASE = re.compile(rf"\b(?:{_ARTICLES})\s+([a-z][a-z'-]*)(?:\s+([a-z][a-z'-]*))?", re.I)


def clip_spans(shots: list[TimeSpan], clip_s: float, min_s: float = 0.5) -> list[TimeSpan]:
    """The clips of ``shots``: each shot cut into the fewest equal parts of at most ``clip_s``.

    A shot shorter than ``min_s`` joins the clip before it when the two fit in ``clip_s``
    (a flicker the shot detector cut is not worth a caption of its own)."""
    clips: list[TimeSpan] = []
    for shot in shots:
        if shot.duration <= 0:
            continue
        if clips and shot.duration < min_s and shot.end - clips[-1].start <= clip_s + 1e-6:
            clips[-1] = TimeSpan(clips[-1].start, shot.end)
            continue
        n = max(1, math.ceil(shot.duration / clip_s - 1e-9))
        step = shot.duration / n
        clips += [
            TimeSpan(shot.start + i * step, shot.start + (i + 1) * step if i < n - 1 else shot.end) for i in range(n)
        ]
    return clips


def clip_times(span: TimeSpan, n: int) -> list[float]:
    """``n`` times spread over ``span``: the middle of each of ``n`` equal parts."""
    return [span.start + (k + 0.5) * span.duration / n for k in range(max(1, n))]


def caption_messages(frames: Any, span: TimeSpan) -> list[Message]:
    """The request for one clip's caption: the clip's frames (with their times) and the prompt."""
    parts = [
        TextPart(f"A clip of the video, {span} ({span.duration:.1f} s), {len(frames)} frames:"),
        FramesPart(frames),
        TextPart(CAPTION_PROMPT),
    ]
    return [Message("system", CAPTION_SYSTEM), Message("user", parts)]


def noun_phrases(text: str) -> list[str]:
    """People and things a caption names: the words after an article or number (see the module)."""
    found: list[str] = []
    for m in _PHRASE.finditer(text):
        words = [w.lower().strip("'-") for w in m.groups() if w]
        if not words or words[0] in _FUNCTION:
            continue
        if len(words) == 2 and (words[1] in _FUNCTION or words[1].endswith(("s", "ing")) or words[0].endswith("s")):
            words = words[:1]
        phrase = " ".join(words)
        if phrase and phrase not in found:
            found.append(phrase)
    return found


def parse_caption(reply: str) -> tuple[str, list[str]]:
    """``(caption, entities)`` from a model's reply: its JSON fields, or its text (see the module)."""
    from mcr.models.parse import json_values, split_reasoning

    _, text = split_reasoning(reply or "")
    blob = next((v for v in json_values(text) if isinstance(v, dict) and v.get("caption")), None)
    entities = None
    if blob is not None:
        caption = str(blob["caption"])
        listed = blob.get("entities")
        if isinstance(listed, list):
            entities = [str(e).strip() for e in listed if isinstance(e, (str, int, float)) and str(e).strip()]
    else:
        caption = re.sub(r"```\w*", "", text)
    caption = " ".join(caption.split())[:MAX_CAPTION_CHARS].strip()
    if entities is None:
        entities = noun_phrases(caption)
    seen: set[str] = set()
    unique = [e for e in entities if not (e.lower() in seen or seen.add(e.lower()))]
    return caption, unique[:20]


def _model_name(model: Any) -> str:
    return model if isinstance(model, str) else str(getattr(model, "name", None) or type(model).__name__)


def _default_workers(model: Any) -> int:
    from mcr.models.openai_server import OpenAIServerModel  # imports no client library by itself

    inner = getattr(model, "inner", None)  # a RecordingModel around a server
    return 4 if isinstance(model, OpenAIServerModel) or isinstance(inner, OpenAIServerModel) else 1


class CaptionStage:
    """The ``captions`` index stage: a ``caption`` entry per clip of at most ``clip_s`` seconds.

    Args:
        model: the captioning model: an object with ``generate`` or a spec for ``load_model``
            (loaded on first use). None: the stage is skipped, saying a model is needed.
        device, models: where a model named by a spec runs, and the process's model cache.
        memory: the memory whose ``shots`` stage gives the shots (built first when missing);
            without one the shot detector runs over the video here.
        clip_s, frames, max_pixels: the longest clip, the frames per clip and their size.
        workers: requests in flight at once (default: 4 for a server, else 1).
        timeout_s: a clip whose request takes longer counts as failed (None: no limit).
        max_tokens: the longest caption reply.
        chunk_s: the video is captioned (and committed) this many seconds at a time.
    """

    name = "captions"
    embed = True

    def __init__(
        self,
        model: Any = None,
        device: str | None = None,
        models: Any = None,
        memory: Any = None,
        clip_s: float | None = None,
        frames: int | None = None,
        max_pixels: int | None = None,
        workers: int | None = None,
        timeout_s: float | None = None,
        max_tokens: int = 160,
        chunk_s: float = 60.0,
    ) -> None:
        from .shots import ShotStage

        self.model = model
        self.device = device
        self.models = models
        self.memory = memory
        self.clip_s = clip_s or env_float("MCR_CAPTION_CLIP_S", 10.0)
        self.frames = int(frames or env_float("MCR_CAPTION_FRAMES", 4))
        self.max_pixels = int(max_pixels or env_float("MCR_CAPTION_MAX_PIXELS", 448 * 448))
        if self.clip_s <= 0 or self.frames < 1 or self.max_pixels < 1:
            raise ValueError("captions need clip_s > 0, frames >= 1 and max_pixels >= 1")
        self.workers = int(workers or env_float("MCR_CAPTION_WORKERS", 0)) or None
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.chunk_s = chunk_s
        self.shots_version = ShotStage.version
        self._loaded: Any = None
        self._clips: dict[str, list[TimeSpan]] = {}
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        model = _model_name(self.model) if self.model is not None else "none"
        return (
            f"{PROMPT_VERSION};model={model};clip={self.clip_s:g};frames={self.frames};"
            f"px={self.max_pixels};shots={self.shots_version}"
        )

    @staticmethod
    def model_in(version: str) -> str | None:
        """The captioning model a stored version of this stage names (None: none)."""
        found = re.search(r";model=(.*);clip=", version or "")
        return found.group(1) if found and found.group(1) != "none" else None

    # ------------------------------------------------------------ the model
    def caption_model(self) -> Any:
        """The model, loaded the first time (a spec that names no usable model raises ``ModelError``)."""
        if self._loaded is None:
            if not isinstance(self.model, str):
                self._loaded = self.model
            else:
                from mcr.models import load_model

                options = {"device": self.device} if self.device and self.device != "auto" else {}
                if self.models is not None:
                    key = ("caption-model", self.model, self.device)
                    self._loaded = self.models.get(key, lambda: load_model(self.model, **options))
                else:
                    self._loaded = load_model(self.model, **options)
        return self._loaded

    def skip_reason(self, video: Any) -> str | None:
        if self.model is None:
            return "captions need a model: name one with --caption-model SPEC (or Agent(caption_model=...)), or run with a model"
        self.caption_model()  # a model that is not here is one clear error now, not a failure per clip
        return None

    # ------------------------------------------------------------ clips
    def clips(self, video: Any) -> list[TimeSpan]:
        """Every clip of the video, from its shots (computed once per video)."""
        with self._lock:
            if video.id not in self._clips:
                from .shots import shot_spans

                self._clips[video.id] = clip_spans(shot_spans(self._cuts(video), float(video.duration)), self.clip_s)
            return self._clips[video.id]

    def _cuts(self, video: Any) -> list[MemoryEntry]:
        from mcr.memory.index import VideoIndex, walk

        from .shots import ShotStage

        if self.memory is not None:
            index = VideoIndex(video, self.memory)
            if not index.is_built("shots", ShotStage.version):
                (report,) = index.build(["shots"])
                if report.status == "failed":
                    raise RuntimeError(f"the shots the captions need could not be found: {report.reason}")
            return [e for e in index.entries("shots") if e.span is not None]
        return [e for _, result in walk(video, ShotStage()) for e in result.entries if e.span is not None]

    # ------------------------------------------------------------ captioning
    def _caption(self, model: Any, video: Any, clip: TimeSpan) -> dict:
        """One clip's caption (``text``, ``entities``, ``usage``, ``frames``) or its ``error``."""
        from .frames import frames_at

        t0 = time.perf_counter()
        out: dict = {}
        try:
            frames = frames_at(video, clip_times(clip, self.frames), self.max_pixels)
            if not len(frames):
                return {"error": "no frame could be decoded", "seconds": time.perf_counter() - t0}
            out["frames"] = list(frames.timestamps)
            messages = caption_messages(frames, clip)
            reply = self._generate(model, messages)
        except Exception as exc:  # one clip's failure is counted; the others go on
            return {"error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - t0, **out}
        text, entities = parse_caption(reply.text)
        out.update(seconds=time.perf_counter() - t0, usage=reply.usage)
        if not text:
            return {**out, "error": "the model replied with no caption"}
        return {**out, "text": text, "entities": entities}

    def _generate(self, model: Any, messages: list[Message]) -> Any:
        options = {"max_new_tokens": self.max_tokens, "temperature": 0.0}  # every backend takes these
        if self.timeout_s is None:
            return model.generate(messages, **options)
        box: dict = {}

        def call() -> None:
            try:
                box["out"] = model.generate(messages, **options)
            except BaseException as exc:  # handed back below
                box["error"] = exc

        worker = threading.Thread(target=call, name="mcr-caption", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            raise TimeoutError(f"no caption within {self.timeout_s:g} s")
        if "error" in box:
            raise box["error"]
        return box["out"]

    def run_chunk(self, video: Any, span: TimeSpan) -> ChunkResult:
        clips = [c for c in self.clips(video) if span.start - 1e-6 <= c.start < span.end - 1e-6]
        if not clips:
            return ChunkResult()
        model = self.caption_model()
        t0 = time.perf_counter()
        workers = min(len(clips), self.workers or _default_workers(model))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mcr-captions") as pool:
                results = list(pool.map(lambda c: self._caption(model, video, c), clips))
        else:
            results = [self._caption(model, video, c) for c in clips]
        entries, failed = [], []
        for clip, r in zip(clips, results):
            if "error" in r:
                failed.append([round(clip.start, 3), round(clip.end, 3), r["error"][:300]])
                continue
            data = {"frames": [round(t, 3) for t in r["frames"]], "entities": r["entities"]}
            entries.append(MemoryEntry(r["text"], "caption", span=clip, data=data))
        if failed and not entries:
            first = failed[0]
            raise RuntimeError(
                f"no clip of {span} could be captioned by {_model_name(model)} "
                f"({len(failed)} failed; {format_time(first[0])}: {first[2]})"
            )
        calls = [r for r in results if "usage" in r]
        info = {
            "clips": len(clips),
            "model_calls": sum(1 for r in results if "frames" in r),
            "input_tokens": sum(r["usage"].input_tokens for r in calls),
            "output_tokens": sum(r["usage"].output_tokens for r in calls),
            "seconds": round(time.perf_counter() - t0, 3),
            "failed_clips": len(failed),
        }
        if failed:
            info["failed"] = failed[:MAX_LISTED_FAILURES]
        return ChunkResult(entries, info=info)


register_stage("captions", CaptionStage)
