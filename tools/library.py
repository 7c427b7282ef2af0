"""A library: several videos asked about at once.

``Library`` holds the videos of a run by name and by id. In a library run every tool that looks
at a video takes a ``video`` argument; the registry turns it into the video the tool sees as
``ctx.video`` before the tool runs (``mcr.tools.registry.point_at_video``). ``library_search`` finds spans
across the videos in two steps: the videos worth grounding in are chosen (all of them in a small
library; in a large one, those whose indexed text comes nearest the query in the memory's vector
index), then each is searched with the fused grounding of ``temporal_grounding``, and the spans
of all of them are ranked together by score.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

from mcr.quoting import UNTRUSTED, quote
from mcr.types import TimeSpan

from .base import ToolContext, ToolError, ToolResult, ToolRetry, tool

if TYPE_CHECKING:  # pragma: no cover
    from mcr.media.video import Video

GROUND_ALL_BELOW = 12  # a library of at most this many videos is grounded video by video, whole
CANDIDATES = 8  # in a larger one, the videos the vector index puts nearest the query
TEXT_KINDS = ("transcript", "ocr", "caption")


class Library:
    """The videos of a run, each known by its name (the file name; the path where two files
    share a name) and by its id (the content hash)."""

    def __init__(self, videos: Sequence[Video]) -> None:
        if not videos:
            raise ValueError("a library needs at least one video")
        self.videos = list({v.id: v for v in videos}.values())  # a file named twice is one video
        counts = Counter(v.path.name for v in self.videos)
        self._names = {v.id: v.path.name if counts[v.path.name] == 1 else str(v.path) for v in self.videos}
        self._by_name = {name: self.by_id(vid) for vid, name in self._names.items()}

    @classmethod
    def open(cls, paths: Sequence[Any]) -> Library:
        """The videos ``paths`` name (files, folders, globs, URLs, or opened ``Video``s), opened."""
        from mcr.media.collection import find_videos
        from mcr.media.sources import open_video
        from mcr.media.video import Video

        videos: list[Video] = []
        for p in paths:
            found = [p] if isinstance(p, Video) else find_videos([str(p)])
            videos += [open_video(f, progress=False) for f in found]
        return cls(videos)

    @property
    def names(self) -> list[str]:
        return [self._names[v.id] for v in self.videos]

    def by_id(self, video_id: str) -> Video | None:
        return next((v for v in self.videos if v.id == video_id), None)

    def name_of(self, video: Video) -> str:
        return self._names.get(video.id, video.path.name)

    def find(self, ref: Any) -> Video | None:
        """The video ``ref`` names: its name, its file name, its path, its file name without the
        extension, or its id; None when none of them is named so."""
        text = str(ref or "").strip()
        if not text:
            return None
        found = self._by_name.get(text) or self.by_id(text)
        if found is not None:
            return found
        for v in self.videos:
            if text in (v.path.name, str(v.path), v.path.stem):
                return v
        return None

    def listing(self) -> str:
        return ", ".join(self.names)


def candidate_videos(memory: Any, videos: Sequence[Video], query: str, n: int = CANDIDATES) -> list[Video]:
    """The ``n`` videos whose indexed text comes nearest ``query`` (all of them when few)."""
    if len(videos) <= GROUND_ALL_BELOW or memory is None:
        return list(videos)
    from mcr.memory.vectors import StoreVectors

    vectors = StoreVectors(memory.store, "entry:" + memory.encoder.name, memory.encoder.dim)
    if vectors.writable():
        memory.embed_pending()
        vectors.sync()
    q = memory.encoder.encode([query])[0]
    by_id = {v.id: v for v in videos}
    recs, _, codes = vectors.search(q, 50 * n, list(by_id), list(TEXT_KINDS))
    ranked: list[str] = []
    for code in recs["video"]:
        video_id = codes[int(code)]
        if video_id in by_id and video_id not in ranked:
            ranked.append(video_id)
    return [by_id[v] for v in ranked[:n]] or list(videos[:n])


def search_videos(named: Sequence[tuple[str, Video]], memory: Any, query: str, k: int, device: str = "auto") -> dict:
    """The ``k`` best spans for ``query`` across the videos ``named`` (``(name, video)`` pairs):
    ``{"results": [{"video", "video_id", "span", "score", "weak", "shares", "evidence"}],
    "searched", "signals", "unavailable"}``; a video whose search failed is in ``unavailable``
    under its name."""
    from .grounding import search_spans

    names = {v.id: name for name, v in named}
    chosen = candidate_videos(memory, [v for _, v in named], query)
    results, signals, unavailable = [], set(), {}
    for video in chosen:
        found = search_spans(video, memory, query, k, None, device)
        if found.is_error:
            unavailable[names[video.id]] = found.text.removeprefix("error: ").strip()
            continue
        meta = found.metadata
        signals.update(meta.get("signals", []))
        for name, why in meta.get("unavailable", {}).items():
            unavailable.setdefault(name, why)
        results += [{"video": names[video.id], "video_id": video.id, **r} for r in meta["results"]]
    results.sort(key=lambda r: -r["score"])
    return {"results": results[:k], "searched": len(chosen), "signals": sorted(signals), "unavailable": unavailable}


@tool
def library_search(ctx: ToolContext, query: str, k: int = 5) -> ToolResult:
    """Find which videos of the library show or say something, and when: the best spans across
    all of them, best first, each naming its video.

    The same fused search as temporal_grounding (speech, on-screen text, captions, frames), over
    every video of the library (in a large one, over those whose indexed text comes nearest the
    query). A result marked weak is a lead to check, not evidence: look at the span with another
    tool, passing its video.

    Args:
        query: What to find, e.g. "the chef adds salt" or "the slide titled Ohm's law".
        k: How many spans to return (1-20).
    """
    library: Library | None = ctx.library
    if library is None:
        raise ToolError("this run has one video, not a library: use temporal_grounding")
    if not query.strip():
        raise ToolRetry("the query is empty: describe what to find, e.g. 'the man opens the door'")
    if not 1 <= k <= 20:
        raise ToolRetry("k must be between 1 and 20")
    found = search_videos([(library.name_of(v), v) for v in library.videos], ctx.memory, query.strip(), k, ctx.device)
    from .grounding import CONFIDENT

    used = ", ".join(found["signals"]) or "none"
    gone = "; ".join(f"{name}: {why}" for name, why in found["unavailable"].items())
    head = f"searched {found['searched']} of {len(library.videos)} videos; signals used: {used}"
    head += f" (not used: {gone})" if gone else ""
    meta = {**found, "threshold": CONFIDENT}
    if not found["results"]:
        return ToolResult(f"nothing in the library can be searched for {query!r}.\n{head}", metadata=meta)
    lines = []
    for i, r in enumerate(found["results"], 1):
        shares = ", ".join(
            f"{name} {share:.0%}"
            for name, share in sorted(r["shares"].items(), key=lambda kv: -kv[1])
            if share >= 0.005
        )
        start, end = r["span"]
        said = "\n" + quote("\n".join(r["evidence"]), "index") if r["evidence"] else ""
        mark = " WEAK" if r["weak"] else ""
        lines.append(f"{i}. video {r['video']} {TimeSpan(start, end)} score {r['score']:.2f}{mark} ({shares})" + said)
    return ToolResult(
        f"best matches in the library for {query!r}:\n" + "\n".join(lines) + f"\n{head}",
        metadata=meta,
        trust=UNTRUSTED if any(r["evidence"] for r in found["results"]) else "trusted",
    )
