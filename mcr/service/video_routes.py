"""Videos: add one (a file under the media roots or a URL) and build its index in the background,
upload one, read what is known of it, follow its index job, and search it."""

# no "from __future__ import annotations": FastAPI reads the request models from the handlers at run time

import asyncio
import json
import os
import tempfile
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict

from mcr.errors import MCRError
from mcr.service.deps import MemoryDep, PoolDep, ServiceDep, event_stream, require_token

INDEX_STAGES = ["shots", "transcript", "ocr"]
STATE_STAGES = ("shots", "transcript", "ocr", "embeddings")

router = APIRouter(prefix="/v1/videos", tags=["videos"], dependencies=[Depends(require_token)])


class VideoRequest(BaseModel):
    path: str | None = None
    url: str | None = None
    index: bool = True  # build (or reuse) its index in the background: GET /v1/videos/ID/events


class VideoAdded(BaseModel):
    video_id: str
    info: dict[str, Any]
    index_job: str | None


class VideoUploaded(BaseModel):
    video_id: str
    info: dict[str, Any]


class VideoState(BaseModel):
    video_id: str
    info: dict[str, Any]
    index: dict[str, str]  # stage: its status (running | done | skipped | failed)


class SearchResults(BaseModel):
    """The query and the ranked spans with what the search tool reports beside them."""

    model_config = ConfigDict(extra="allow")
    video_id: str
    query: str


@router.post("", status_code=201)
def add_video(body: VideoRequest, service: ServiceDep, pool: PoolDep, memory: MemoryDep) -> VideoAdded:
    if bool(body.path) == bool(body.url):
        raise HTTPException(400, "give one of path (under a media root) or url")
    video = service.open_spec(body.path or body.url or "")
    job = pool.index(video, memory, INDEX_STAGES).run_id if body.index else None
    return VideoAdded(video_id=video.id, info=video.info(), index_job=job)


@router.get("/{video_id}/events", responses={200: {"content": {"text/event-stream": {}}}})
async def index_events(video_id: str, request: Request, service: ServiceDep, pool: PoolDep) -> Any:
    """The video's index job as Server-Sent Events (progress, then each stage's outcome)."""
    job_id = f"index-{video_id}"
    service.run(job_id)
    return event_stream(pool, job_id, request)


@router.post("/upload", status_code=201)
async def upload(request: Request, service: ServiceDep) -> VideoUploaded:
    """The request's body as a video file: kept (under its id) only when it opens as a video."""
    from mcr.media.sources import open_video
    from mcr.media.video import VideoError

    limit = service.upload_limit
    size = int(request.headers.get("content-length") or 0)
    if size > limit:
        raise HTTPException(413, f"the upload is {size} bytes, over the limit of {limit}")
    folder = service.memory.path.parent / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=folder)
    got = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                got += len(chunk)
                if got > limit:
                    raise HTTPException(413, f"the upload is over the limit of {limit} bytes")
                out.write(chunk)
        try:
            video = await asyncio.to_thread(open_video, tmp)
        except (VideoError, MCRError) as exc:
            raise HTTPException(415, "the upload is not a video: " + exc.one_line().replace(tmp, "it")) from None
        final = folder / f"{video.id}.video"
        os.replace(tmp, final)
        video = open_video(final)
        service.videos[video.id] = video
        return VideoUploaded(video_id=video.id, info=video.info())
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@router.get("/{video_id}")
def video_state(video_id: str, service: ServiceDep, memory: MemoryDep) -> VideoState:
    from mcr.memory import VideoIndex

    video = service.known(video_id)
    index = VideoIndex(video, memory)
    stages = {name: index.state(name) for name in STATE_STAGES}
    return VideoState(video_id=video_id, info=video.info(), index={k: v["status"] for k, v in stages.items() if v})


@router.get("/{video_id}/search")
def search(video_id: str, q: str, service: ServiceDep, memory: MemoryDep, k: int = 5) -> SearchResults:
    from mcr.tools.grounding import search_spans

    result = search_spans(service.known(video_id), memory, q, max(1, min(k, 20)))
    if result.is_error:
        raise HTTPException(422, result.text.removeprefix("error: ").strip())
    found = json.loads(json.dumps(result.metadata, default=str))
    return SearchResults(**{"video_id": video_id, "query": q, **found})


__all__ = ["router"]
