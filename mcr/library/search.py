"""Search a library: the spans that best match a query across many indexed videos.

Two steps. The videos worth grounding in are chosen first: all of them in a small library;
in a large one, those whose transcript, on-screen text or captions come nearest the query in
the on-disk vector index of the memory (filtered to the library's videos inside the search).
Then each chosen video is searched with the fused grounding of ``temporal_grounding``
(speech, on-screen text, captions, frames: the same scores, shares and weak marker as the
one-video search), and the spans of all of them are ranked together by score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .build import LibraryError, find_videos

GROUND_ALL_BELOW = 12  # a library of at most this many videos is grounded video by video, whole
CANDIDATES = 8  # in a larger one, the videos the vector index puts nearest the query
TEXT_KINDS = ("transcript", "ocr", "caption")


@dataclass
class LibraryVideo:
    path: str
    video: Any  # the opened Video


def library_videos(paths: Sequence[str], memory: Any) -> tuple[list[LibraryVideo], list[str]]:
    """The indexed videos that ``paths`` name (files, folders, globs), and those not indexed in
    ``memory`` (by path)."""
    from mcr.media.sources import open_video

    found, missing = [], []
    for path in find_videos(paths):
        try:
            video = open_video(path, progress=False)
        except Exception:  # noqa: BLE001 - a file that cannot be opened is one that cannot be searched
            missing.append(str(path))
            continue
        row = memory.store.conn.execute(
            "SELECT 1 FROM stages WHERE video_id = ? AND status IN ('done', 'skipped') LIMIT 1", (video.id,)
        ).fetchone()
        (found.append(LibraryVideo(str(path), video)) if row else missing.append(str(path)))
    return found, missing


def candidate_videos(memory: Any, videos: list[LibraryVideo], query: str, n: int = CANDIDATES) -> list[LibraryVideo]:
    """The ``n`` videos whose indexed text comes nearest ``query`` (all of them when few)."""
    if len(videos) <= GROUND_ALL_BELOW:
        return videos
    from mcr.memory.vectors import StoreVectors

    vectors = StoreVectors(memory.store, "entry:" + memory.encoder.name, memory.encoder.dim)
    if vectors.writable():
        memory.embed_pending()
        vectors.sync()
    q = memory.encoder.encode([query])[0]
    by_id = {v.video.id: v for v in videos}
    recs, scores, codes = vectors.search(q, 50 * n, list(by_id), list(TEXT_KINDS))
    ranked: list[str] = []
    for code in recs["video"]:
        video_id = codes[int(code)]
        if video_id in by_id and video_id not in ranked:
            ranked.append(video_id)
    return [by_id[v] for v in ranked[:n]] or videos[:n]


def search_library(paths: Sequence[str], query: str, memory: Any, k: int = 5, device: str = "auto") -> dict:
    """The ``k`` best spans for ``query`` across the indexed videos that ``paths`` name:
    ``{"query", "results": [{"video", "video_id", "span", "score", "weak", "shares", "evidence"}],
    "searched", "not_indexed", "signals", "unavailable"}``. Raises ``LibraryError`` when none of
    them is indexed."""
    from mcr.tools.grounding import search_spans

    if not query.strip():
        raise LibraryError("the query is empty: say what to find")
    if not 1 <= k <= 20:
        raise LibraryError(f"k must be between 1 and 20, not {k}")
    videos, missing = library_videos(paths, memory)
    if not videos:
        raise LibraryError(
            f"none of the {len(missing)} videos in {', '.join(paths)} is indexed in {memory.path}; "
            "run `mcr-agent index` on them first"
        )
    results, signals, unavailable = [], set(), {}
    chosen = candidate_videos(memory, videos, query.strip())
    for item in chosen:
        found = search_spans(item.video, memory, query.strip(), k, None, device)
        if found.is_error:
            unavailable[item.path] = found.text.removeprefix("error: ").strip()
            continue
        meta = found.metadata
        signals.update(meta.get("signals", []))
        for name, why in meta.get("unavailable", {}).items():
            unavailable.setdefault(name, why)
        for r in meta["results"]:
            results.append({"video": str(Path(item.path)), "video_id": item.video.id, **r})
    results.sort(key=lambda r: -r["score"])
    return {
        "query": query,
        "results": results[:k],
        "searched": len(chosen),
        "videos": len(videos),
        "not_indexed": missing,
        "signals": sorted(signals),
        "unavailable": unavailable,
    }
