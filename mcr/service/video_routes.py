"""Videos: add one (a file under the media roots or a URL) and build its index in the background,
upload one, read what is known of it, follow its index job, and search it."""

# no "from __future__ import annotations": FastAPI reads the request models from the handlers at run time

import asyncio
import json
import os
import tempfile
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from mcr.errors import MCRError
from mcr.service.deps import After, LastEventId, MemoryDep, PoolDep, ServiceDep, event_stream, require_token
from mcr.service.runs import QueueFull

INDEX_STAGES = ["shots", "transcript", "ocr"]
STATE_STAGES = ("shots", "transcript", "ocr", "embeddings")
MAX_SPEC = 2048
UPLOAD_TYPES = ("video/", "application/octet-stream")  # a cross-site form can send neither

router = APIRouter(prefix="/v1/videos", tags=["videos"], dependencies=[Depends(require_token)])


class VideoRequest(BaseModel):
    path: str | None = Field(None, min_length=1, max_length=MAX_SPEC, description="a file under a media root")
    url: str | None = Field(None, min_length=1, max_length=MAX_SPEC, description="an http(s) URL of a video")
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


class VideoRemoved(BaseModel):
    video_id: str
    removed: bool


class SearchResults(BaseModel):
    """The query and the ranked spans with what the search tool reports beside them."""

    model_config = ConfigDict(extra="allow")
    video_id: str
    query: str


@router.post("", status_code=201)
def add_video(body: VideoRequest, service: ServiceDep, pool: PoolDep, memory: MemoryDep) -> VideoAdded:
    if bool(body.path) == bool(body.url):
        raise HTTPException(400, "give one of path (under a media root) or url")
    if body.url is not None and not body.url.lower().startswith(("http://", "https://")):
        raise HTTPException(400, "url must be an http(s) address")
    video = service.open_spec(body.path or body.url or "")
    try:
        job = pool.index(video, memory, INDEX_STAGES).run_id if body.index else None
    except QueueFull as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": "30"}) from None
    return VideoAdded(video_id=video.id, info=video.info(), index_job=job)


@router.get("/{video_id}/events", responses={200: {"content": {"text/event-stream": {}}}})
async def index_events(
    video_id: str, service: ServiceDep, pool: PoolDep, last_event_id: LastEventId = None, after: After = None
) -> Any:
    """The video's index job as Server-Sent Events (progress, then each stage's outcome)."""
    job_id = f"index-{video_id}"
    service.run(job_id)
    return event_stream(pool, job_id, last_event_id if last_event_id is not None else after)


@router.post("/upload", status_code=201)
async def upload(request: Request, service: ServiceDep) -> VideoUploaded:
    """The request's body as a video file: kept (under its id) only when it opens as a video."""
    from mcr.media.sources import open_video
    from mcr.media.video import VideoError

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not kind.startswith(UPLOAD_TYPES):
        raise HTTPException(415, "send the video's bytes as video/* or application/octet-stream")
    limit = service.upload_limit
    try:
        size = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise HTTPException(400, "Content-Length must be a number of bytes") from None
    if size > limit:
        raise HTTPException(413, f"the upload is {size} bytes, over the limit of {limit}")
    folder = service.uploads
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
        damage = await asyncio.to_thread(undecodable, video)
        if damage:
            raise HTTPException(415, f"the upload does not decode whole: {damage}; send the file complete")
        final = folder / f"{video.id}.video"
        os.replace(tmp, final)
        video = service.add(open_video(final), "upload")
        return VideoUploaded(video_id=video.id, info=video.info())
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def undecodable(video: Any) -> str:
    """Why ``video`` does not decode at its start, middle and end; empty when it does."""
    if video.damaged:
        return "it is cut off at " + ", ".join(str(s) for s in video.damaged)
    end = max(0.0, video.duration - 0.5)
    for where, t in (("start", 0.0), ("middle", video.duration / 2), ("end", end)):
        try:
            video.frame_at(t, max_pixels=64 * 64)
        except Exception:  # noqa: BLE001 - any decoder failure means the upload is refused
            return f"no frame at its {where} ({t:.1f} s)"
    return ""


@router.delete("/{video_id}")
def remove_video(video_id: str, service: ServiceDep, pool: PoolDep) -> VideoRemoved:
    """Forget a video given to this service; an uploaded one's file is deleted too."""
    busy = [r.run_id for r in list(pool.runs.values()) if video_id in r.video_ids and not r.done]
    if busy:
        raise HTTPException(409, f"run {busy[0]} is using video {video_id}: cancel it or wait for it")
    return VideoRemoved(video_id=video_id, removed=service.forget(video_id))


@router.get("/{video_id}")
def video_state(video_id: str, service: ServiceDep, memory: MemoryDep) -> VideoState:
    from mcr.memory import VideoIndex

    video = service.known(video_id)
    index = VideoIndex(video, memory)
    stages = {name: index.state(name) for name in STATE_STAGES}
    return VideoState(video_id=video_id, info=video.info(), index={k: v["status"] for k, v in stages.items() if v})


@router.get("/{video_id}/search")
def search(
    video_id: str,
    service: ServiceDep,
    memory: MemoryDep,
    q: str = Query(min_length=1, max_length=500, description="what to look for"),
    k: int = Query(5, ge=1, le=20, description="how many spans"),
) -> SearchResults:
    from mcr.tools.grounding import search_spans

    if not q.strip():
        raise HTTPException(
            422, [{"loc": ["query", "q"], "msg": "q is blank: say what to look for", "type": "value_error"}]
        )
    result = search_spans(service.known(video_id), memory, q, k)
    if result.is_error:
        raise HTTPException(422, result.text.removeprefix("error: ").removeprefix("retry: ").strip())
    found = json.loads(json.dumps(result.metadata, default=str))
    return SearchResults(**{"video_id": video_id, "query": q, **found})


__all__ = ["router"]
