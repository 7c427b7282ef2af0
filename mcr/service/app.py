"""``mcr-agent serve``: MCR as an HTTP service (FastAPI, OpenAPI docs at ``/docs``).

Runs go to a bounded pool (:mod:`mcr.service.runs`); their events stream as Server-Sent Events
numbered from 1, so a listener that reconnects with ``Last-Event-ID`` misses nothing and sees
nothing twice. Videos are files under the media roots (no ``..``, no symlink out of a root), URLs
(:mod:`mcr.media.sources`), or uploads (size-limited, and kept only when they open as a video). Bound to
127.0.0.1 by default; any other address needs a bearer token. No endpoint reads or writes a file
a request names outside the media roots.
"""

# no "from __future__ import annotations": FastAPI reads the request models from the handlers at run time

import asyncio
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from mcr.errors import MCRError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
UPLOAD_LIMIT = 2 << 30


class ServiceError(MCRError):
    """The service cannot start as asked."""


def media_path(spec: str, roots: Sequence[Path]) -> Path:
    """The file ``spec`` names under one of ``roots`` (relative to a root, or absolute inside one);
    ``ValueError`` with the reason otherwise. Symlinks are followed before the check."""
    if not roots:
        raise ValueError("this service has no media roots: start it with --media-root DIR to serve files")
    if ".." in Path(spec).parts:
        raise ValueError(f"{spec!r} holds '..': name a file inside a media root")
    candidates = [Path(spec)] if Path(spec).is_absolute() else [root / spec for root in roots]
    for candidate in candidates:
        real = candidate.resolve()
        if any(real.is_relative_to(root.resolve()) for root in roots) and real.is_file():
            return real
        if candidate.exists() or candidate.is_symlink():
            raise ValueError(f"{spec!r} is outside the media roots")
    raise ValueError(f"{spec!r} is not a file under the media roots")


def make_app(
    model: Any,
    media_roots: Sequence[str | os.PathLike] = (),
    memory: str | os.PathLike | None = None,
    token: str | None = None,
    workers: int = 2,
    queue_limit: int = 8,
    upload_limit: int = UPLOAD_LIMIT,
    trace_dir: str | os.PathLike | None = None,
) -> Any:
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
    from pydantic import BaseModel

    from mcr.agents import Agent
    from mcr.media.sources import is_url, open_video
    from mcr.media.video import VideoError
    from mcr.memory import Memory
    from mcr.service.runs import QueueFull, RunPool

    roots = [Path(r).expanduser().resolve() for r in media_roots]
    db = Memory(memory)
    traces = Path(trace_dir) if trace_dir else db.path.parent / "traces"
    videos: dict[str, Any] = {}

    def make_agent(request: dict) -> Any:
        return Agent(
            model=model,
            memory=db,
            policy=request.get("policy") or None,
            max_steps=request.get("max_steps") or 12,
            trace_dir=traces,
        )

    pool = RunPool(make_agent, workers=workers, queue_limit=queue_limit)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> Any:
        yield
        pool.close()

    app = FastAPI(
        title="MCR", description="Questions about long videos, answered by an agent.", version="1", lifespan=lifespan
    )
    app.state.pool, app.state.memory = pool, db

    class RunRequest(BaseModel):
        video: str
        question: str
        options: list[str] | None = None
        policy: str | None = None
        max_steps: int | None = None

    class VideoRequest(BaseModel):
        path: str | None = None
        url: str | None = None
        index: bool = True  # build (or reuse) its index in the background: GET /v1/videos/ID/events

    @app.middleware("http")
    async def bearer(request: Request, call_next: Any) -> Any:
        given = request.headers.get("authorization") or f"Bearer {request.query_params.get('access_token', '')}"
        if token and request.url.path.startswith("/v1/") and given != f"Bearer {token}":  # EventSource: ?access_token=
            return JSONResponse({"detail": "missing or wrong bearer token (Authorization: Bearer TOKEN)"}, 401)
        return await call_next(request)

    def open_spec(spec: str) -> Any:
        if spec in videos:  # a video added before (an upload, a URL)
            return videos[spec]
        try:
            video = open_video(spec, progress=False) if is_url(spec) else open_video(media_path(spec, roots))
        except ValueError as exc:
            raise HTTPException(403, str(exc)) from None
        except (VideoError, MCRError) as exc:
            raise HTTPException(400, exc.one_line()) from None
        videos[video.id] = video
        return video

    def known(video_id: str) -> Any:
        if video_id in videos:
            return videos[video_id]
        row = db.store.conn.execute("SELECT path FROM videos WHERE video_id = ?", (video_id,)).fetchone()
        if row is None or not Path(row[0]).is_file():
            raise HTTPException(404, f"no video {video_id} here: add it with POST /v1/videos")
        if not any(Path(row[0]).resolve().is_relative_to(r) for r in roots):
            raise HTTPException(404, f"video {video_id} is not under the media roots")
        return open_spec(row[0])

    @app.post("/v1/runs", status_code=202)
    def start_run(body: RunRequest) -> dict:
        if not body.question.strip():
            raise HTTPException(400, "the question is empty")
        if body.policy not in (None, "mcr", "plain", "baseline"):
            raise HTTPException(400, f"unknown policy {body.policy!r}: mcr, plain or baseline")
        video = open_spec(body.video)
        try:
            state = pool.submit(body.model_dump(), video)
        except QueueFull as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": "5"}) from None
        return {"run_id": state.run_id, "video_id": video.id}

    def state_of(run_id: str) -> Any:
        state = pool.runs.get(run_id)
        if state is None:
            raise HTTPException(404, f"no run {run_id}")
        return state

    @app.get("/v1/runs/{run_id}")
    def get_run(run_id: str) -> dict:
        return state_of(run_id).to_dict()

    @app.delete("/v1/runs/{run_id}", status_code=202)
    def cancel_run(run_id: str) -> dict:
        state = state_of(run_id)
        pool.cancel(run_id)
        return {"run_id": run_id, "status": state.status if state.done else "cancelling"}

    @app.get("/v1/runs/{run_id}/events")
    async def run_events(run_id: str, request: Request) -> Any:
        state_of(run_id)
        try:
            after = int(request.headers.get("last-event-id") or request.query_params.get("after") or 0)
        except ValueError:
            raise HTTPException(400, "Last-Event-ID must be an event number") from None
        source = pool.events(run_id, after, poll_s=5.0)

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

    @app.get("/v1/runs/{run_id}/report", response_class=HTMLResponse)
    def run_report(run_id: str) -> Any:
        state = state_of(run_id)
        trace = (state.result or {}).get("trace_path")
        if not trace or not Path(trace).is_file():
            raise HTTPException(404, "this run has no trace yet: ask again when it has finished")
        from mcr.outputs.report import run_report
        from mcr.outputs.report_page import render

        return HTMLResponse(render(run_report(trace), video_url=f"/v1/videos/{state.video_id}/file"))

    @app.post("/v1/videos", status_code=201)
    def add_video(body: VideoRequest) -> dict:
        if bool(body.path) == bool(body.url):
            raise HTTPException(400, "give one of path (under a media root) or url")
        video = open_spec(body.path or body.url or "")
        job = pool.index(video, db, ["shots", "transcript", "ocr"]).run_id if body.index else None
        return {"video_id": video.id, "info": video.info(), "index_job": job}

    @app.get("/v1/videos/{video_id}/events")
    async def index_events(video_id: str, request: Request) -> Any:
        """The video's index job as Server-Sent Events (progress, then each stage's outcome)."""
        return await run_events(f"index-{video_id}", request)

    @app.post("/v1/videos/upload", status_code=201)
    async def upload(request: Request) -> dict:
        size = int(request.headers.get("content-length") or 0)
        if size > upload_limit:
            raise HTTPException(413, f"the upload is {size} bytes, over the limit of {upload_limit}")
        folder = db.path.parent / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=folder)
        got = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    got += len(chunk)
                    if got > upload_limit:
                        raise HTTPException(413, f"the upload is over the limit of {upload_limit} bytes")
                    out.write(chunk)
            try:
                video = await asyncio.to_thread(open_video, tmp)
            except (VideoError, MCRError) as exc:
                raise HTTPException(415, "the upload is not a video: " + exc.one_line().replace(tmp, "it")) from None
            final = folder / f"{video.id}.video"
            os.replace(tmp, final)
            video = open_video(final)
            videos[video.id] = video
            return {"video_id": video.id, "info": video.info()}
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @app.get("/v1/videos/{video_id}")
    def video_info(video_id: str) -> dict:
        from mcr.memory import VideoIndex

        video = known(video_id)
        index = VideoIndex(video, db)
        stages = {name: index.state(name) for name in ("shots", "transcript", "ocr", "embeddings")}
        return {"video_id": video_id, "info": video.info(), "index": {k: v["status"] for k, v in stages.items() if v}}

    @app.get("/v1/videos/{video_id}/search")
    def search(video_id: str, q: str, k: int = 5) -> dict:
        from mcr.tools.grounding import search_spans

        result = search_spans(known(video_id), db, q, max(1, min(k, 20)))
        if result.is_error:
            raise HTTPException(422, result.text.removeprefix("error: ").strip())
        return {"video_id": video_id, "query": q, **json.loads(json.dumps(result.metadata, default=str))}

    @app.get("/", response_class=HTMLResponse)
    def page() -> Any:
        from mcr.service.page import PAGE

        return HTMLResponse(PAGE)

    @app.get("/v1/media")
    def media() -> dict:
        """The video files under the media roots (for the page's picker)."""
        from mcr.media.sources import MEDIA_SUFFIXES

        found = []
        for root in roots:
            for p in sorted(root.rglob("*")):
                if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES and p.resolve().is_relative_to(root):
                    found.append(str(p.relative_to(root)))
                if len(found) >= 500:
                    break
        return {"files": found}

    @app.get("/v1/videos/{video_id}/file")
    def video_file(video_id: str) -> Any:
        from fastapi.responses import FileResponse

        video = known(video_id)
        return FileResponse(video.path, media_type="video/mp4")

    return app


def check_bind(host: str, token: str | None) -> None:
    if host not in LOOPBACK and not token:
        raise ServiceError(
            f"binding to {host} makes the service reachable from other machines: give a bearer token "
            "with --token or MCR_TOKEN (or keep the default --host 127.0.0.1)"
        )


__all__ = ["ServiceError", "check_bind", "make_app", "media_path"]
