"""Runs: ask a question about a video (or about several at once: a list, or a folder under a
media root), follow its events, cancel it, read its report, and the run drawn so far (the
report's own pieces, for the page)."""

# no "from __future__ import annotations": FastAPI reads the request models from the handlers at run time

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from mcr.errors import MCRError
from mcr.service.deps import After, LastEventId, PoolDep, ServiceDep, event_stream, require_token
from mcr.service.paths import media_path
from mcr.service.runs import QueueFull

MAX_QUESTION = 4000
MAX_OPTIONS, MAX_OPTION = 10, 300
MAX_SPEC = 2048  # a path, a URL or a video id
MAX_NAMED, MAX_LIBRARY = 20, 20  # names in videos, and the videos they come to (each is indexed before the run)
Option = Annotated[str, Field(max_length=MAX_OPTION)]
Spec = Annotated[str, Field(min_length=1, max_length=MAX_SPEC)]

router = APIRouter(prefix="/v1/runs", tags=["runs"], dependencies=[Depends(require_token)])


class RunRequest(BaseModel):
    video: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_SPEC,
        description="one video: a video id, a URL, or a file under a media root",
    )
    videos: list[Spec] | None = Field(
        None,
        min_length=1,
        max_length=MAX_NAMED,
        description="several videos asked at once: video ids, files or folders under a media root",
    )
    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    options: list[Option] | None = Field(None, max_length=MAX_OPTIONS, description="answer choices, if any")
    policy: Literal["mcr", "plain", "baseline"] | None = None
    max_steps: int | None = Field(None, ge=1, le=100, description="the run's step budget (default 12)")


class RunAccepted(BaseModel):
    run_id: str
    video_id: str | None  # None for a run over several videos
    video_ids: list[str]


class RunInfo(BaseModel):
    run_id: str
    status: str
    question: str
    video: str
    video_ids: list[str]
    events: int
    result: dict[str, Any] | None
    error: str | None


class RunCancelled(BaseModel):
    run_id: str
    status: str


class RunView(BaseModel):
    """The run drawn so far: ``top`` (header, timeline, thumbnails) goes above the player,
    ``details`` (excerpts and steps) below it."""

    run_id: str
    status: str
    events: int
    top: str
    details: str


@router.post("", status_code=202)
def start_run(body: RunRequest, service: ServiceDep, pool: PoolDep) -> RunAccepted:
    if not body.question.strip():
        raise HTTPException(400, "the question is empty")
    if (body.video is None) == (body.videos is None):
        raise HTTPException(
            400, "give video (one video) or videos (several: ids, or files and folders under a media root)"
        )
    if body.video is not None and is_folder(body.video, service.roots):
        raise HTTPException(
            403, f"{body.video[:120]!r} is a folder, not a video: name a file in it, or ask its videos with videos"
        )
    video = service.open_many(body.videos, MAX_LIBRARY) if body.videos else service.open_spec(body.video or "")
    try:
        state = pool.submit(body.model_dump(), video)
    except QueueFull as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": "5"}) from None
    return RunAccepted(run_id=state.run_id, video_id=state.video_id or None, video_ids=state.video_ids)


def played_video(state: Any, report: dict) -> str:
    """The video the report's player plays: the run's one video; in a library run, the one its
    answer cites first (else the first of the library)."""
    if state.video_id:
        return state.video_id
    library = (report.get("video") or {}).get("library") or []
    cited = ((state.result or {}).get("evidence_videos") or [None])[0]
    ids = [v["id"] for v in library if v.get("name") == cited] + [v["id"] for v in library] + state.video_ids
    return ids[0]


def is_folder(spec: str, roots: list) -> bool:
    """Whether ``spec`` names a folder under the media roots (whose videos ``videos`` asks at once)."""
    try:
        return media_path(spec, roots, folders=True).is_dir()
    except ValueError:
        return False


@router.get("/{run_id}")
def get_run(run_id: str, service: ServiceDep) -> RunInfo:
    return RunInfo(**service.run(run_id).to_dict())


@router.delete("/{run_id}", status_code=202)
def cancel_run(run_id: str, service: ServiceDep, pool: PoolDep) -> RunCancelled:
    state = service.run(run_id)
    pool.cancel(run_id)
    return RunCancelled(run_id=run_id, status=state.status if state.done else "cancelling")


@router.get("/{run_id}/events", responses={200: {"content": {"text/event-stream": {}}}})
async def run_events(
    run_id: str, service: ServiceDep, pool: PoolDep, last_event_id: LastEventId = None, after: After = None
) -> Any:
    """The run's events as Server-Sent Events, numbered from 1; resume with ``Last-Event-ID``."""
    service.run(run_id)
    return event_stream(pool, run_id, last_event_id if last_event_id is not None else after)


@router.get("/{run_id}/report", response_class=HTMLResponse)
def run_report(run_id: str, service: ServiceDep) -> Any:
    """The finished run's report, its player playing the video from this service."""
    from mcr.outputs.report import run_report as read_report
    from mcr.outputs.report_page import render

    state = service.run(run_id)
    trace = (state.result or {}).get("trace_path")
    if not trace or service.trace_of(state) is None:
        raise HTTPException(404, "this run has no trace yet: ask again when it has finished")
    report = read_report(trace)
    return HTMLResponse(render(report, video_url=f"/v1/videos/{played_video(state, report)}/file"))


@router.get("/{run_id}/view")
def run_view(run_id: str, service: ServiceDep) -> RunView:
    """The run as far as it has gone, drawn with the report's pieces; thumbnails come from
    ``GET /v1/videos/ID/frame``."""
    from mcr.outputs.report import MAX_THUMBS
    from mcr.outputs.report import run_report as read_report
    from mcr.outputs.run_view import excerpts, header, steps, thumb_times, timeline

    state = service.run(run_id)
    trace = service.trace_of(state)
    if trace is None:
        raise HTTPException(404, f"run {run_id} has nothing to draw yet")
    try:
        report = read_report(trace, thumbnails=False)
    except MCRError:  # the trace file exists but its first event is not written yet
        raise HTTPException(404, f"run {run_id} has nothing to draw yet") from None
    if not state.done:
        report["status"] = state.status
    frame = f"/v1/videos/{state.video_id}/frame?t="
    # a library run's frames come from several videos, and the report does not say which: no thumbnails
    times = thumb_times(report, MAX_THUMBS) if state.video_id else []
    thumbs = {f"{t:g}": f"{frame}{t:g}" for t in times}
    return RunView(
        run_id=run_id,
        status=state.status,
        events=state.event_count,
        top=header(report) + timeline(report, thumbs),
        details=excerpts(report) + steps(report),
    )


__all__ = ["router"]
