"""What the service's routes share, kept on ``app.state`` and handed to them through ``Depends``:
the bearer token check, the run pool, the memory, and the videos this service has opened."""

# no "from __future__ import annotations": FastAPI reads the dependency types at run time

import asyncio
import contextlib
import json
import secrets
from pathlib import Path
from typing import Annotated, Any, Sequence

from fastapi import Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from mcr.errors import MCRError
from mcr.memory import Memory
from mcr.service.paths import MediaCount, media_path, media_videos, under_roots
from mcr.service.runs import RunPool, RunState

NO_URL = "it gave no video this service may fetch (not reachable, not a video, or not a public address)"


class Service:
    """The service's state: media roots, memory, where traces go, the pool, the upload limit and
    the videos it was given. Each video given (a file, a URL's download, an upload) is recorded in
    the memory database, so its id still works after a restart."""

    def __init__(
        self,
        roots: Sequence[Path],
        memory: Memory,
        traces: Path,
        pool: RunPool,
        upload_limit: int,
        allow_private_urls: bool = False,
    ) -> None:
        self.roots, self.memory, self.traces, self.pool = list(roots), memory, traces, pool
        self.upload_limit, self.allow_private_urls = upload_limit, allow_private_urls
        self.videos: dict[str, Any] = {}
        self.uploads = memory.path.parent / "uploads"

    def open_spec(self, spec: str) -> Any:
        """The video ``spec`` names: an id given before, a URL, or a file under the media roots."""
        from mcr.media.sources import is_url, open_video
        from mcr.media.video import VideoError

        if spec in self.videos or self.memory.store.added_video(spec) is not None:
            return self.known(spec)
        if is_url(spec):
            return self.fetch(spec)
        try:
            video = open_video(media_path(spec, self.roots))
        except ValueError as exc:
            raise HTTPException(403, str(exc)) from None
        except (VideoError, MCRError) as exc:
            raise HTTPException(400, exc.one_line()) from None
        return self.add(video, "file")

    def open_many(self, specs: Sequence[str], limit: int) -> list[Any]:
        """The videos ``specs`` name, each once: ids given before, and files and folders under the
        media roots (a folder's videos are all taken). URLs are added one by one first
        (``POST /v1/videos``), so a list cannot start many downloads at once."""
        from mcr.media.sources import is_url

        videos: dict[str, Any] = {}
        for spec in specs:
            if spec in self.videos or self.memory.store.added_video(spec) is not None:
                found = [self.known(spec)]
            elif is_url(spec):
                raise HTTPException(400, f"{spec[:120]!r}: add a URL with POST /v1/videos, then name its video_id")
            else:
                try:
                    paths = media_videos([spec], self.roots, limit)
                except ValueError as exc:  # outside the roots: refused as any other path is
                    raise HTTPException(400 if isinstance(exc, MediaCount) else 403, str(exc)) from None
                found = [self.open_spec(str(p)) for p in paths]
            videos.update((v.id, v) for v in found)
            if len(videos) > limit:
                raise HTTPException(400, f"these name more than {limit} videos: name fewer files or folders")
        return list(videos.values())

    def fetch(self, url: str) -> Any:
        """The video at ``url``, fetched only from public addresses (unless the service allows
        private ones); every failure gives the same answer, so the answers cannot map a network."""
        from mcr.media.download import check_public, public_only
        from mcr.media.sources import open_video

        try:
            with contextlib.ExitStack() as guarded:
                if not self.allow_private_urls:
                    check_public(url)
                    guarded.enter_context(public_only())
                video = open_video(url, progress=False)
        except Exception:  # noqa: BLE001 - one answer whatever went wrong (refused, timed out, blocked...)
            raise HTTPException(400, f"cannot add {url}: {NO_URL}") from None
        return self.add(video, "url")

    def add(self, video: Any, origin: str) -> Any:
        self.videos[video.id] = video
        self.memory.store.add_video(video.id, str(video.path), origin)
        return video

    def known(self, video_id: str) -> Any:
        """A video this service was given (now or before a restart), or one its memory has seen
        under the media roots."""
        from mcr.media.sources import open_video
        from mcr.media.video import VideoError

        if video_id in self.videos:
            return self.videos[video_id]
        record = self.memory.store.added_video(video_id)
        path = record["path"] if record else self.memory.store.video_path(video_id)
        if path is None or not Path(path).is_file():
            raise HTTPException(404, f"no video {video_id} here: add it with POST /v1/videos")
        inside = under_roots(path, self.roots) or (record and record["origin"] in ("url", "upload"))
        if not inside:
            raise HTTPException(404, f"video {video_id} is not under the media roots")
        try:
            video = open_video(path)
        except (VideoError, MCRError) as exc:
            raise HTTPException(400, exc.one_line()) from None
        self.videos[video_id] = video
        return video

    def forget(self, video_id: str) -> bool:
        """Drop the video's record (and its file, when it was uploaded here). True when it was known."""
        record = self.memory.store.added_video(video_id)
        self.videos.pop(video_id, None)
        if record is None:
            return False
        self.memory.store.remove_added_video(video_id)
        if record["origin"] == "upload" and Path(record["path"]).parent == self.uploads:
            Path(record["path"]).unlink(missing_ok=True)
        return True

    def sweep_uploads(self) -> int:
        """Remove upload files no record names (a record deleted, an upload cut short by a stop)."""
        if not self.uploads.is_dir():
            return 0
        named = {Path(r["path"]).name for r in self.memory.store.added_videos("upload")}
        gone = 0
        for f in self.uploads.iterdir():
            if f.is_file() and f.name not in named:
                f.unlink(missing_ok=True)
                gone += 1
        return gone

    def run(self, run_id: str) -> RunState:
        state = self.pool.get(run_id)
        if state is None:
            raise HTTPException(404, f"no run {run_id}")
        return state

    def trace_of(self, state: RunState) -> Path | None:
        """The run's trace file: named in its result once it has finished, found by its id before."""
        done = (state.result or {}).get("trace_path") or state.trace
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
    scheme, _, given = (request.headers.get("authorization") or "").strip().partition(" ")
    if not scheme:  # the scheme's name is case-insensitive (RFC 9110); the query form has none
        scheme, given = "bearer", request.query_params.get("access_token", "")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)")


ServiceDep = Annotated[Service, Depends(get_service)]
PoolDep = Annotated[RunPool, Depends(get_pool)]
MemoryDep = Annotated[Memory, Depends(get_memory)]


def event_stream(pool: RunPool, job_id: str, after: int | None) -> StreamingResponse:
    """The job's events as Server-Sent Events numbered from 1, from after ``after`` (the
    ``Last-Event-ID`` header or ``?after=``) on; a comment line keeps a quiet connection open."""
    state = pool.get(job_id)
    if state is not None and state.retired and not (state.trace and Path(state.trace).is_file()):
        raise HTTPException(404, f"{job_id}'s events are no longer kept and it left no trace file")
    source = pool.events(job_id, after or 0, poll_s=5.0)

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


LastEventId = Annotated[
    int | None, Header(alias="Last-Event-ID", ge=0, le=10**9, description="the last event number already seen")
]
After = Annotated[int | None, Query(ge=0, le=10**9, description="events after this number (as Last-Event-ID)")]


__all__ = ["After", "LastEventId", "MemoryDep", "PoolDep", "Service", "ServiceDep", "event_stream", "require_token"]
