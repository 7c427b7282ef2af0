"""What the service's routes share, kept on ``app.state`` and handed to them through ``Depends``:
the bearer token check, the run pool, the memory, and the videos this service has opened."""

# no "from __future__ import annotations": FastAPI reads the dependency types at run time

import asyncio
import json
import secrets
from pathlib import Path
from typing import Annotated, Any, Sequence

from fastapi import Depends, HTTPException, Request
from fastapi.responses import StreamingResponse

from mcr.errors import MCRError
from mcr.memory import Memory
from mcr.service.paths import media_path, under_roots
from mcr.service.runs import RunPool, RunState


class Service:
    """The service's state: media roots, memory, where traces go, the pool, the upload limit and
    the videos opened so far (uploads and URLs are known by id only here)."""

    def __init__(self, roots: Sequence[Path], memory: Memory, traces: Path, pool: RunPool, upload_limit: int) -> None:
        self.roots, self.memory, self.traces, self.pool = list(roots), memory, traces, pool
        self.upload_limit = upload_limit
        self.videos: dict[str, Any] = {}

    def open_spec(self, spec: str) -> Any:
        """The video ``spec`` names: an id seen before, a URL, or a file under the media roots."""
        from mcr.media.sources import is_url, open_video
        from mcr.media.video import VideoError

        if spec in self.videos:
            return self.videos[spec]
        try:
            video = open_video(spec, progress=False) if is_url(spec) else open_video(media_path(spec, self.roots))
        except ValueError as exc:
            raise HTTPException(403, str(exc)) from None
        except (VideoError, MCRError) as exc:
            raise HTTPException(400, exc.one_line()) from None
        self.videos[video.id] = video
        return video

    def known(self, video_id: str) -> Any:
        """A video this service opened, or one its memory has seen under the media roots."""
        if video_id in self.videos:
            return self.videos[video_id]
        path = self.memory.store.video_path(video_id)
        if path is None or not Path(path).is_file():
            raise HTTPException(404, f"no video {video_id} here: add it with POST /v1/videos")
        if not under_roots(path, self.roots):
            raise HTTPException(404, f"video {video_id} is not under the media roots")
        return self.open_spec(path)

    def run(self, run_id: str) -> RunState:
        state = self.pool.runs.get(run_id)
        if state is None:
            raise HTTPException(404, f"no run {run_id}")
        return state

    def trace_of(self, state: RunState) -> Path | None:
        """The run's trace file: named in its result once it has finished, found by its id before."""
        done = (state.result or {}).get("trace_path")
        if done:
            return Path(done) if Path(done).is_file() else None
        found = sorted(self.traces.glob(f"*-{state.run_id}.jsonl")) if self.traces.is_dir() else []
        return found[-1] if found else None


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_pool(request: Request) -> RunPool:
    return request.app.state.pool


def get_memory(request: Request) -> Memory:
    return request.app.state.memory


def require_token(request: Request) -> None:
    """With a token set, every ``/v1/`` request carries it (``Authorization: Bearer TOKEN``, or
    ``?access_token=`` where a browser cannot set headers: EventSource, ``<video>``, ``<img>``)."""
    token = request.app.state.token
    if not token:
        return
    given = request.headers.get("authorization") or f"Bearer {request.query_params.get('access_token', '')}"
    if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)")


ServiceDep = Annotated[Service, Depends(get_service)]
PoolDep = Annotated[RunPool, Depends(get_pool)]
MemoryDep = Annotated[Memory, Depends(get_memory)]


def event_stream(pool: RunPool, job_id: str, request: Request) -> StreamingResponse:
    """The job's events as Server-Sent Events numbered from 1, from after ``Last-Event-ID`` (or
    ``?after=``) on; a comment line keeps a quiet connection open."""
    try:
        after = int(request.headers.get("last-event-id") or request.query_params.get("after") or 0)
    except ValueError:
        raise HTTPException(400, "Last-Event-ID must be an event number") from None
    source = pool.events(job_id, after, poll_s=5.0)

    async def stream() -> Any:
        while True:
            item = await asyncio.to_thread(next, source, None)
            if item is None:
                return
            n, event = item
            if event is None:
                yield ": keep-alive\n\n"
                continue
            yield f"id: {n}\nevent: {event.get('event', 'message')}\ndata: {json.dumps(event, default=str)}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


__all__ = ["MemoryDep", "PoolDep", "Service", "ServiceDep", "event_stream", "require_token"]
