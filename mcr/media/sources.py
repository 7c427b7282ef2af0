"""One way to open a video from a spec: a local path, an ``http(s)://`` media file, or a page
yt-dlp understands.

``open_video(spec)`` returns a :class:`~mcr.media.video.Video` of a file on this machine; a URL's
file is fetched once into ``~/.cache/mcr/media`` (:mod:`mcr.media.download`, :mod:`mcr.media.sites`). The
video's identity stays its content hash, so a downloaded file and a local copy of the same
bytes share one index. ``video.source`` holds where it came from (URL, title, uploader,
duration, chapters, subtitle files) and ``video.info()`` carries it.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mcr.media.download import SourceError, fetch, key_of, media_cache, read_record, write_record
from mcr.media.video import Video, VideoError

MEDIA_SUFFIXES = (
    ".mp4",
    ".m4v",
    ".mkv",
    ".webm",
    ".mov",
    ".avi",
    ".ts",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".ogv",
    ".mp3",
    ".m4a",
    ".wav",
    ".ogg",
)
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "srt", "rtp", "tcp")
_LIVE = (
    "{text} is a live stream: watch it into memory with `mcr-agent watch {text}` (or Agent.watch) "
    "and ask it with `mcr-agent ask SESSION QUESTION`"
)


def is_url(spec: Any) -> bool:
    return isinstance(spec, str) and urllib.parse.urlsplit(spec.strip()).scheme.lower() in ("http", "https")


def open_video(spec: Any, max_bytes: int | None = None, max_height: int | None = None, progress: bool = True) -> Video:
    """The video ``spec`` names: a ``Video`` (returned as it is), a path, a ``file://`` URL, an
    ``http(s)://`` URL of a media file (downloaded once), or any page yt-dlp understands.
    ``max_bytes`` caps a download (default ``$MCR_MAX_DOWNLOAD`` or 8 GiB), ``max_height`` the
    height of a page's format (default ``$MCR_MAX_HEIGHT`` or 720). Every failure is a
    ``VideoError`` (``SourceError`` for URLs) naming the source and the cause."""
    if isinstance(spec, Video):
        return spec
    text = os.fspath(spec).strip() if isinstance(spec, (str, os.PathLike)) else spec
    if not isinstance(text, str):
        raise VideoError(f"not a video: {spec!r} (pass a path, a URL or a Video)")
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in LIVE_SCHEMES or text.startswith("webcam:") or text.startswith("/dev/video"):
        raise SourceError(_LIVE.format(text=text))
    if scheme == "file":
        return Video(urllib.request.url2pathname(parts.path))
    if scheme not in ("http", "https"):
        return Video(text)
    if parts.path.lower().endswith(".m3u8"):
        raise SourceError(_LIVE.format(text=text))
    if Path(parts.path).suffix.lower() in MEDIA_SUFFIXES:
        record = {"url": text, "via": "http", "file": fetch(text, max_bytes, progress).name}
    else:
        from mcr.media.sites import fetch_page

        record = fetch_page(text, max_bytes, max_height, progress)
    folder = media_cache()
    path = folder / record["file"]
    try:
        video = Video(path)
    except VideoError as exc:  # not a video after all: not kept, so a mended source is fetched again
        for name in [record["file"], *(s["file"] for s in record.get("subtitles", []))]:
            (folder / name).unlink(missing_ok=True)
        (folder / f"{key_of(text)}.json").unlink(missing_ok=True)
        reason = exc.one_line().replace(str(path), "the file")
        raise SourceError(f"{text} did not give a playable video: {reason}") from None
    video.source = describe(record, folder)
    by_id = folder / f"{video.id}.source.json"
    earlier = read_record(by_id)
    if not (earlier and earlier.get("subtitles") and not record.get("subtitles")):  # a page's record wins
        write_record(by_id, {**record, "folder": str(folder)})
    return video


def describe(record: dict, folder: Path) -> dict:
    """What ``video.source`` holds: the URL, how it was fetched, the page's info, and the
    subtitle files with their language and whether the site made them automatically."""
    subtitles = [
        {**s, "path": str(folder / s["file"])} for s in record.get("subtitles", []) if (folder / s["file"]).is_file()
    ]
    return {"url": record["url"], "via": record.get("via", "http"), **record.get("info", {}), "subtitles": subtitles}


def source_of(video: Any) -> dict:
    """Where ``video`` came from: its ``source``, else what an earlier download of the same
    bytes recorded (so a local copy of a downloaded video finds its subtitles too), else ``{}``."""
    found = getattr(video, "source", None)
    if found:
        return found
    vid = getattr(video, "id", None)
    record = read_record(media_cache() / f"{vid}.source.json") if vid else None
    if not record:
        return {}
    return describe(record, Path(record.get("folder") or media_cache()))


def with_subtitles(video: Any, stages: list) -> list:
    """``stages`` and the ``subtitles`` stage when subtitles came with ``video`` (the speech
    stage still runs: both transcripts are kept, each marked by its source)."""
    names = [s if isinstance(s, str) else getattr(s, "name", "") for s in stages]
    if "subtitles" in names or not source_of(video).get("subtitles"):
        return list(stages)
    return [*stages, "subtitles"]


__all__ = ["MEDIA_SUFFIXES", "SourceError", "is_url", "open_video", "source_of", "with_subtitles"]
