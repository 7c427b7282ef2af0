"""The library: the spans that best match a query across the indexed videos under the media
roots (all of them, or the files and folders named), ranked together as ``mcr-agent search``
ranks a library's. Paths in the answers are relative to their media root."""

# no "from __future__ import annotations": FastAPI reads the parameter types from the handlers at run time

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from mcr.service.deps import MemoryDep, ServiceDep, require_token
from mcr.service.paths import MediaCount, media_videos, shown_name, under_roots

MAX_NAMED = 20  # videos= values in one request
MAX_VIDEOS = 100  # videos one search opens: each is read whole once to know its id
MAX_SPEC = 2048

router = APIRouter(prefix="/v1/library", tags=["library"], dependencies=[Depends(require_token)])

Named = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=MAX_SPEC)]] | None,
    Query(
        max_length=MAX_NAMED,
        description="files or folders under a media root to search (default: every indexed video under the roots)",
    ),
]


class LibraryHit(BaseModel):
    """One span: its video (path relative to its media root, and id), its score, whether it is
    below the confidence threshold, and each signal's share of the score."""

    model_config = ConfigDict(extra="allow")
    video: str
    video_id: str
    span: list[float]
    score: float
    weak: bool
    shares: dict[str, float]


class LibraryResults(BaseModel):
    """The ranked spans; ``searched`` of the ``videos`` indexed ones were grounded,
    ``not_indexed`` lists those named that have no index yet."""

    query: str
    results: list[LibraryHit]
    searched: int
    videos: int
    not_indexed: list[str]
    signals: list[str]
    unavailable: dict[str, str]


@router.get("/search")
def search_library(
    service: ServiceDep,
    memory: MemoryDep,
    q: str = Query(min_length=1, max_length=500, description="what to look for"),
    k: int = Query(5, ge=1, le=20, description="how many spans, across all the videos"),
    videos: Named = None,
) -> LibraryResults:
    from mcr.library.search import search_library as search
    from mcr.media.collection import LibraryError

    if not q.strip():
        raise HTTPException(
            422, [{"loc": ["query", "q"], "msg": "q is blank: say what to look for", "type": "value_error"}]
        )
    paths = named_videos(videos, service) if videos else indexed_videos(service, memory)
    if not paths:
        raise HTTPException(404, "no video under the media roots is indexed: add them with POST /v1/videos")
    try:
        found = search([str(p) for p in paths], q, memory, k)
    except LibraryError:
        raise HTTPException(
            404, f"none of the {len(paths)} videos named is indexed: add them with POST /v1/videos"
        ) from None
    return LibraryResults(**relative(found, service.roots))


def named_videos(specs: list[str], service: Any) -> list[Path]:
    try:
        return media_videos(specs, service.roots, MAX_VIDEOS)
    except ValueError as exc:  # outside the roots: refused as the other routes refuse it
        raise HTTPException(400 if isinstance(exc, MediaCount) else 403, str(exc)) from None


def indexed_videos(service: Any, memory: Any) -> list[Path]:
    """The files under the media roots that the memory has indexed, each once, most recent first."""
    if not service.roots:
        raise HTTPException(403, "this service has no media roots: start it with --media-root DIR to serve files")
    found: dict[Path, None] = {}
    for row in memory.store.videos():
        path = Path(row["path"])
        if path.is_file() and under_roots(path, service.roots):
            found[path.resolve()] = None
    if len(found) > MAX_VIDEOS:
        raise HTTPException(
            400,
            f"the media roots hold {len(found)} indexed videos, over {MAX_VIDEOS}: "
            "name the ones to search with videos=",
        )
    return list(found)


def relative(found: dict, roots: list[Path]) -> dict:
    """``found`` with every path given as :func:`shown_name` gives it, in keys and reasons too."""
    shown = {}
    for path in [*found["not_indexed"], *(r["video"] for r in found["results"]), *found["unavailable"]]:
        if Path(path).is_absolute():
            shown[path] = shown_name(path, roots)

    def name(text: str) -> str:
        for path, short in shown.items():
            text = text.replace(path, short)
        return text

    return {
        **found,
        "results": [{**r, "video": name(r["video"])} for r in found["results"]],
        "not_indexed": [name(p) for p in found["not_indexed"]],
        "unavailable": {name(key): name(str(why)) for key, why in found["unavailable"].items()},
    }


__all__ = ["router"]
