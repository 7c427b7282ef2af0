"""Search a library: the spans that best match a query across many indexed videos.

The search itself is ``mcr.tools.library.search_videos`` (the one the agent's ``library_search``
tool runs): the videos worth grounding in are chosen (all of them in a small library; in a large
one, those whose indexed text comes nearest the query in the memory's on-disk vector index),
each is searched with the fused grounding of ``temporal_grounding``, and the spans of all of
them are ranked together by score. This module adds what a command needs: the paths, which
videos are indexed, and the checks of a user's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mcr.media.collection import LibraryError, find_videos
from mcr.tools.library import search_videos


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


def search_library(paths: Sequence[str], query: str, memory: Any, k: int = 5, device: str = "auto") -> dict:
    """The ``k`` best spans for ``query`` across the indexed videos that ``paths`` name:
    ``{"query", "results": [{"video", "video_id", "span", "score", "weak", "shares", "evidence"}],
    "searched", "not_indexed", "signals", "unavailable"}``. Raises ``LibraryError`` when none of
    them is indexed."""
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
    found = search_videos([(str(Path(v.path)), v.video) for v in videos], memory, query.strip(), k, device)
    return {
        "query": query,
        "results": found["results"],
        "searched": found["searched"],
        "videos": len(videos),
        "not_indexed": missing,
        "signals": found["signals"],
        "unavailable": found["unavailable"],
    }
