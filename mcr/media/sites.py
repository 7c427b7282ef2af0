"""Videos from pages that yt-dlp understands (YouTube and a thousand other sites), through
yt-dlp as a library, into the same cache as plain downloads (``~/.cache/mcr/media``).

A page is fetched once: its media file (at most 720p by default: ``max_height`` or
``$MCR_MAX_HEIGHT``), the site's subtitles or automatic captions when there are any (English
and the original language by default: ``$MCR_SUBTITLE_LANGS``, comma-separated yt-dlp
patterns), and what the page says of it (title, uploader, duration, chapters). A later open
of the same address uses the kept files without asking the site. ``$MCR_COOKIES`` names a
cookies file for sites that ask to sign in.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from mcr.media.download import (
    SourceError,
    key_of,
    locked,
    max_bytes_default,
    media_cache,
    read_record,
    too_big,
    write_record,
)

DEFAULT_MAX_HEIGHT = 720
DEFAULT_LANGS = ("en.*", ".*-orig")
KEPT_INFO = ("title", "uploader", "channel", "duration", "upload_date", "webpage_url", "extractor", "id")


def fetch_page(url: str, max_bytes: int | None = None, max_height: int | None = None, progress: bool = True) -> dict:
    """The record of a fetched page: ``{"url", "file", "info", "subtitles": [{"file", "lang",
    "auto"}]}``, file names relative to :func:`media_cache`. Raises ``SourceError``."""
    folder = media_cache()
    key = key_of(url)
    with locked(folder / f"{key}.lock"):
        record = read_record(folder / f"{key}.json")
        if record and record.get("via") == "yt-dlp" and (folder / record.get("file", "")).is_file():
            return record
        record = _download(url, folder, key, max_bytes or max_bytes_default(), max_height, progress)
        write_record(folder / f"{key}.json", record)
        return record


def _options(folder: Path, key: str, max_bytes: int, height: int, progress: bool) -> dict:
    langs = [s.strip() for s in os.environ.get("MCR_SUBTITLE_LANGS", "").split(",") if s.strip()]
    options = {
        "format": f"bv*[height<=?{height}]+ba/b[height<=?{height}]/wv*+ba/w",
        "outtmpl": {"default": str(folder / f"{key}.%(ext)s")},
        "merge_output_format": "mp4",
        "writesubtitles": True,
        "writeautomaticsub": True,
        "subtitleslangs": langs or list(DEFAULT_LANGS),
        "subtitlesformat": "vtt/srt/best",
        "noplaylist": True,
        "max_filesize": max_bytes,
        "socket_timeout": 10,
        "retries": 3,
        "fragment_retries": 3,
        "continuedl": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _Quiet(),
        "progress_hooks": [_Progress(progress)],
    }
    if os.environ.get("MCR_COOKIES"):
        options["cookiefile"] = os.environ["MCR_COOKIES"]
    return options


def _download(url: str, folder: Path, key: str, max_bytes: int, height: int | None, progress: bool) -> dict:
    try:
        import yt_dlp
    except ImportError:
        raise SourceError(
            f"{url} is a web page, not a media file: pages are read with yt-dlp (`pip install yt-dlp`)"
        ) from None
    height = height or int(os.environ.get("MCR_MAX_HEIGHT") or DEFAULT_MAX_HEIGHT)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with yt_dlp.YoutubeDL(_options(folder, key, max_bytes, height, progress)) as ydl:
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.YoutubeDLError as exc:
        raise SourceError(f"cannot open {url}: {page_reason(str(exc), url)}") from None
    if info is None:
        raise SourceError(f"cannot open {url}: yt-dlp found no video on the page")
    if info.get("_type") == "playlist":
        raise SourceError(f"{url} is a playlist: open its videos one at a time")
    files = [d.get("filepath") for d in info.get("requested_downloads") or [] if d.get("filepath")]
    files = [Path(f) for f in files if Path(f).is_file()]
    if not files:
        size = info.get("filesize") or info.get("filesize_approx")
        if size and size > max_bytes:
            raise SourceError(too_big(url, size, max_bytes))
        raise SourceError(f"cannot open {url}: yt-dlp wrote no file (too big for the limit, or a live stream)")
    manual = set(info.get("subtitles") or {})
    subtitles = [
        {"file": Path(d["filepath"]).name, "lang": lang, "auto": lang not in manual}
        for lang, d in sorted((info.get("requested_subtitles") or {}).items())
        if d.get("filepath") and Path(d["filepath"]).is_file()
    ]
    kept = {k: info[k] for k in KEPT_INFO if info.get(k) is not None}
    kept["chapters"] = [
        {"start": c.get("start_time"), "end": c.get("end_time"), "title": c.get("title", "")}
        for c in info.get("chapters") or []
    ]
    return {"url": url, "via": "yt-dlp", "file": files[0].name, "info": kept, "subtitles": subtitles}


def page_reason(message: str, url: str) -> str:
    """One line for what went wrong, from yt-dlp's message."""
    text = message.removeprefix("ERROR: ").strip()
    low = text.lower()
    host = urllib.parse.urlsplit(url).netloc
    if any(
        s in low
        for s in (
            "name or service not known",
            "temporary failure in name resolution",
            "failed to resolve",
            "nodename nor servname",
            "network is unreachable",
            "connection refused",
            "timed out",
            "no route to host",
            "getaddrinfo failed",
            "unable to connect",
        )
    ):
        errno = re.search(r"\[Errno [-\d]+\] ([^)'\"]+)", text)
        cause = errno.group(1).strip() if errno else _short(text, 120)
        return f"{host} cannot be reached ({cause}); check the network or the address"
    if "http error 404" in low:
        return "HTTP 404, nothing is there"
    if "http error 403" in low:
        return "HTTP 403, access is forbidden"
    if "sign in" in low or "login" in low or "cookies" in low or "private video" in low:
        return f"the site asks to sign in: give a cookies file with MCR_COOKIES ({_short(text)})"
    if "requested format is not available" in low:
        return "no format of the video matches (MCR_MAX_HEIGHT sets the largest height)"
    if "unsupported url" in low:
        return "yt-dlp finds no video on this page"
    return _short(text)


def _short(text: str, limit: int = 240) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Quiet:
    """yt-dlp's messages stay off the terminal; failures come back as its exceptions."""

    def debug(self, msg: str) -> None:
        pass

    info = warning = error = debug


class _Progress:
    """A progress bar on stderr for each file yt-dlp downloads."""

    def __init__(self, show: bool) -> None:
        self.show, self.bar, self.name = show, None, None

    def __call__(self, d: dict[str, Any]) -> None:
        if not self.show:
            return
        from tqdm import tqdm

        name = Path(d.get("filename") or "").name
        if self.bar is None or name != self.name:
            if self.bar is not None:
                self.bar.close()
            total = d.get("total_bytes") or d.get("total_bytes_estimate")
            self.bar = tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="downloading", file=sys.stderr
            )
            self.name = name
        self.bar.n = d.get("downloaded_bytes") or self.bar.n
        self.bar.refresh()
        if d.get("status") in ("finished", "error"):
            self.bar.close()
            self.bar, self.name = None, None


__all__ = ["fetch_page", "page_reason"]
