"""Questions to evaluate (``Sample``), finding their videos, and scoring an answer.

A ``Sample`` is one question of a benchmark in one shape for all of them: the video it
is about, the question, the options (for multiple choice), the gold answer in the
answer form's own type (option index, ``[start, end]`` seconds, a count, or text) and
the categories it is reported under (duration group, task type, ...).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from mcr.errors import MCRError
from mcr.media.collection import VIDEO_EXTENSIONS


class EvalError(MCRError):
    """A problem with an evaluation the user can fix; printed as one line."""


class MissingVideos(EvalError):
    """Videos named by the annotations that are not in the video folder, all listed at once."""

    def __init__(self, missing: Sequence[str], total: int, folder: Path) -> None:
        self.missing = list(missing)
        shown = ", ".join(self.missing[:10])
        more = f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else ""
        super().__init__(
            f"{len(self.missing)} of {total} videos are not in {folder}: {shown}{more} "
            "(pass --skip-missing to evaluate the questions whose videos are there)"
        )


@dataclass
class Sample:
    """One question to answer, with its gold answer."""

    id: str
    video: str  # the video as the annotations name it (a file name, a relative path or an id)
    question: str
    form: str = "choice"  # choice | span | count | text
    options: list[str] = field(default_factory=list)
    gold: Any = None  # choice: option index; span: [start, end]; count: int; text: str; None: not scored
    categories: dict[str, Any] = field(default_factory=dict)  # e.g. {"duration": "long", "task": "OCR"}
    video_path: str | None = None  # resolved against the video folder
    candidates: list[str] = field(default_factory=list)  # relative paths to try before searching by name
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return self.gold is not None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "video": self.video,
            "video_path": self.video_path,
            "question": self.question,
            "form": self.form,
            "options": list(self.options),
            "gold": self.gold,
            "categories": dict(self.categories),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Sample":
        return cls(
            id=str(d["id"]),
            video=d["video"],
            question=d["question"],
            form=d.get("form", "choice"),
            options=list(d.get("options") or []),
            gold=d.get("gold"),
            categories=dict(d.get("categories") or {}),
            video_path=d.get("video_path"),
            meta=dict(d.get("meta") or {}),
        )


# ------------------------------------------------------------------- videos


class VideoFinder:
    """Finds videos under a folder by relative path, file name or stem; the folder is walked once."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder).expanduser().resolve()
        if not self.folder.is_dir():
            raise EvalError(f"video folder not found: {self.folder}")
        self._by_name: dict[str, list[Path]] = {}
        self._by_stem: dict[str, list[Path]] = {}
        for root, _dirs, files in os.walk(self.folder, followlinks=True):
            for name in files:
                path = Path(root) / name
                self._by_name.setdefault(name, []).append(path)
                if path.suffix.lower() in VIDEO_EXTENSIONS:
                    self._by_stem.setdefault(path.stem, []).append(path)

    def find(self, ref: str, candidates: Iterable[str] = ()) -> Path | None:
        """The file for ``ref``: one of ``candidates`` (relative paths, in order), ``ref`` as a relative
        path, a file of that name anywhere below, or a video whose name without extension is ``ref``."""
        for rel in [*candidates, ref]:
            path = self.folder / rel
            if rel and path.is_file():
                return path
        name = Path(ref).name
        for table, key in ((self._by_name, name), (self._by_stem, name), (self._by_stem, Path(name).stem)):
            found = table.get(key)
            if found:
                return sorted(found)[0]
        return None


def resolve_videos(samples: list[Sample], folder: str | os.PathLike, skip_missing: bool = False) -> list[Sample]:
    """Give every sample its video path. Missing videos are all reported at once: an error
    listing them, or (``skip_missing``) the samples whose videos are there."""
    finder = VideoFinder(folder)
    missing: dict[str, None] = {}
    kept = []
    for s in samples:
        path = finder.find(s.video, s.candidates)
        if path is None:
            missing.setdefault(s.video)
            continue
        s.video_path = str(path)
        kept.append(s)
    if missing and not skip_missing:
        total = len({s.video for s in samples})
        raise MissingVideos(list(missing), total, finder.folder)
    return kept


# ------------------------------------------------------------------ scoring

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]")


def normalize_text(text: str) -> str:
    """Lower case, no punctuation or articles, single spaces."""
    text = _PUNCT.sub(" ", str(text).lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def text_matches(answer: str, gold: str) -> bool:
    """The normalised gold text equals the answer or appears in it as whole words."""
    a, g = normalize_text(answer), normalize_text(gold)
    if not g:
        return False
    return a == g or f" {g} " in f" {a} "


def temporal_iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    """Intersection over union of two ``[start, end]`` spans (0 when either is missing)."""
    if a is None or b is None:
        return 0.0
    s1, e1 = float(a[0]), float(a[1])
    s2, e2 = float(b[0]), float(b[1])
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    union = max(e1, e2) - min(s1, s2)
    if union <= 0:
        return 1.0 if (s1, e1) == (s2, e2) else 0.0
    return inter / union


def predicted_value(form: str, answer: str, value: Any, options: Sequence[str] | None = None) -> Any:
    """The typed prediction: the run's typed value when it has one, else the answer text read for the form."""
    if form == "choice" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if form == "span" and isinstance(value, (list, tuple)) and len(value) == 2:
        return [float(value[0]), float(value[1])]
    if form == "count" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if form == "text":
        return answer or (value if isinstance(value, str) else "")
    if not answer:
        return None
    from mcr.run.answers import interpret

    typed, problem = interpret(form, answer, list(options or []))
    if problem or typed.value is None:
        return None
    v = typed.value
    return [v.start, v.end] if form == "span" else v


def score(form: str, gold: Any, predicted: Any) -> dict:
    """``correct`` (None when there is no gold answer) and, for spans, ``iou``."""
    if gold is None:
        return {"correct": None, "iou": None}
    if form == "span":
        iou = temporal_iou(predicted, gold) if predicted is not None else 0.0
        return {"correct": iou >= 0.5, "iou": round(iou, 6)}
    if form == "text":
        return {"correct": bool(predicted) and text_matches(str(predicted), str(gold)), "iou": None}
    return {"correct": predicted is not None and predicted == gold, "iou": None}


def duration_group(seconds: float | None) -> str | None:
    """A duration bucket for benchmarks that name none (Video-MME's boundaries: 2 and 15 minutes)."""
    if seconds is None:
        return None
    if seconds < 120:
        return "short (<2 min)"
    if seconds <= 900:
        return "medium (2-15 min)"
    return "long (>15 min)"


__all__ = [
    "EvalError",
    "MissingVideos",
    "Sample",
    "VideoFinder",
    "duration_group",
    "normalize_text",
    "predicted_value",
    "resolve_videos",
    "score",
    "temporal_iou",
    "text_matches",
]
