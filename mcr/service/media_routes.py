"""Media: the video files under the media roots (for the page's picker), a video's bytes for the
player, and one frame of a video as a small JPEG (the thumbnails of a run drawn live)."""

# no "from __future__ import annotations": FastAPI reads the parameter types from the handlers at run time

import io
import math
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from mcr.service.deps import ServiceDep, require_token
from mcr.service.paths import media_files

router = APIRouter(prefix="/v1", tags=["media"], dependencies=[Depends(require_token)])


class MediaFiles(BaseModel):
    files: list[str]  # paths relative to their media root


@router.get("/media")
def media(service: ServiceDep) -> MediaFiles:
    """The video files under the media roots (for the page's picker)."""
    return MediaFiles(files=media_files(service.roots))


@router.get("/videos/{video_id}/file", response_class=FileResponse)
def video_file(video_id: str, service: ServiceDep) -> Any:
    return FileResponse(service.known(video_id).path, media_type="video/mp4")


@router.get("/videos/{video_id}/frame", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def video_frame(
    video_id: str,
    service: ServiceDep,
    t: float = Query(description="seconds from the start"),
    width: int = Query(160, ge=16, le=640, description="the longer side in pixels"),
) -> Any:
    """The frame on screen at ``t`` seconds as a JPEG no larger than ``width`` a side."""
    from PIL import Image

    video = service.known(video_id)
    if not math.isfinite(t) or t < 0 or t > video.duration:
        raise HTTPException(400, f"t={t} is outside the video: give seconds from 0 to {video.duration:.3f}")
    frames = video.frame_at(t, max_pixels=width * width)
    image = Image.fromarray(frames.images[0])
    image.thumbnail((width, width))
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=75)
    # a video's id is its content's hash: the frame at t never changes
    return Response(buf.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


__all__ = ["router"]
