"""Media files from ``http(s)://`` URLs, downloaded once into ``~/.cache/mcr/media``.

A URL's file is kept under a name made from the URL, beside a small record of the server's
validators (ETag, Last-Modified). Opening the URL again asks the server whether the file
changed (``If-None-Match``/``If-Modified-Since``): unchanged, or the server out of reach, the
kept copy is used. A download goes to a ``.part`` file that is renamed when it is whole; a
connection that drops half way is taken up again with a range request (``If-Range`` so a
changed file starts over), here and in a later run. Two processes fetching the same URL wait
for each other through a lock file, so the file is downloaded once. ``$MCR_CACHE`` moves the
cache; ``$MCR_MAX_DOWNLOAD`` (``500M``, ``8G``...) caps a file's size (default 8 GiB).

Inside ``public_only()`` (what a service does for URLs its callers give) every connection, the
redirects' included, is checked where it lands: an address that is not public (loopback,
private, link-local and cloud metadata, CGNAT, multicast, unspecified) is refused.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import fcntl
import hashlib
import http.client
import ipaddress
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from mcr.errors import MCRError
from mcr.files import write_text

DEFAULT_MAX_BYTES = 8 << 30
TIMEOUT_S = 15.0  # a connection or a read that waits longer counts as dropped
ATTEMPTS = 5  # a dropped connection is taken up again this many times in one call
USER_AGENT = "mcr-agent (+https://pypi.org/project/mcr-agent)"
MEDIA_TYPES = {
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi",
    "video/mp2t": ".ts",
    "video/mpeg": ".mpg",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/wav": ".wav",
    "audio/ogg": ".ogg",
}
NOT_MEDIA = ("text/", "application/json", "application/xml", "application/xhtml")


class SourceError(MCRError):
    """A video source that cannot be opened: the message names the source and the cause."""


def media_cache() -> Path:
    return Path(os.environ.get("MCR_CACHE") or Path.home() / ".cache" / "mcr") / "media"


def parse_size(text: str | int | None) -> int:
    """Bytes from ``1048576``, ``500M``, ``8G``, ``1.5GB``; ``None`` or empty: the default."""
    if text is None or str(text).strip() == "":
        return DEFAULT_MAX_BYTES
    value = str(text).strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(value[-1:], 1)
    try:
        return int(float(value[:-1] if scale > 1 else value) * scale)
    except ValueError:
        raise SourceError(f"cannot read the size {text!r}: write bytes or a number with K, M, G or T") from None


def max_bytes_default() -> int:
    return parse_size(os.environ.get("MCR_MAX_DOWNLOAD"))


def key_of(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:24]


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (made if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def read_record(path: Path) -> dict | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def write_record(path: Path, record: dict) -> None:
    """Written to a temporary file and renamed: never half-written."""
    write_text(path, json.dumps(record, indent=1, ensure_ascii=False, default=str))


def fetch(url: str, max_bytes: int | None = None, progress: bool = True) -> Path:
    """The file at ``url`` on this machine: kept from an earlier download when the server says
    it did not change (or cannot be asked), else downloaded. Raises ``SourceError``."""
    folder = media_cache()
    key = key_of(url)
    with locked(folder / f"{key}.lock"):
        record = read_record(folder / f"{key}.json")
        kept = folder / record["file"] if record and record.get("file") else None
        first = None
        if kept is not None and kept.is_file():
            first = _newer(url, record)
            if first is None:
                return kept
        return _download(url, folder, key, max_bytes or max_bytes_default(), progress, kept, first)


PUBLIC_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("mcr_public_only", default=False)
NOT_PUBLIC = "the address is not a public one"


_hooked = threading.Lock()
_HOOK: list[bool] = []


def _refuse_private_connects(event: str, args: tuple) -> None:
    """An audit hook: inside ``public_only()``, a socket of this thread's context that connects to
    an address that is not public is stopped before it connects. It holds for every library
    (urllib, yt-dlp's own networking, requests), redirects included, since each connection is
    checked at the address it goes to."""
    if event != "socket.connect" or not PUBLIC_ONLY.get():
        return
    sock, address = args
    if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6) and blocked_address(str(address[0])):
        raise SourceError(f"cannot download from {address[0]}: {NOT_PUBLIC}")


@contextlib.contextmanager
def public_only() -> Iterator[None]:
    """Downloads in this block connect only to public addresses (each connection checked)."""
    with _hooked:
        if not _HOOK:  # an audit hook cannot be removed: it is added once and does nothing outside the block
            sys.addaudithook(_refuse_private_connects)
            _HOOK.append(True)
    token = PUBLIC_ONLY.set(True)
    try:
        yield
    finally:
        PUBLIC_ONLY.reset(token)


def blocked_address(address: str) -> bool:
    """True for an address a service must not fetch from on a caller's behalf."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_unspecified or ip.is_reserved


def check_public(url: str) -> None:
    """``SourceError`` unless every address ``url``'s host resolves to is public."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(parts.hostname or "", port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError, UnicodeError):
        raise SourceError(f"cannot download {url}: its host cannot be resolved") from None
    if not found or any(blocked_address(str(info[4][0])) for info in found):
        raise SourceError(f"cannot download {url}: {NOT_PUBLIC}")


def _public_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    """``socket.create_connection`` that lets go of a socket whose peer is not public (checked
    where it connected, so a name that resolves differently the second time gains nothing)."""
    sock = socket.create_connection(address, *args, **kwargs)
    if blocked_address(str(sock.getpeername()[0])):
        sock.close()
        raise SourceError(f"cannot download from {address[0]}: {NOT_PUBLIC}")
    return sock


def _checked(kind: type) -> Any:
    def make(host: str, **kwargs: Any) -> Any:
        conn = kind(host, **kwargs)
        conn._create_connection = _public_connection
        return conn

    return make


class _PublicHTTP(urllib.request.HTTPHandler):
    def http_open(self, req: Any) -> Any:
        return self.do_open(_checked(http.client.HTTPConnection), req)


class _PublicHTTPS(urllib.request.HTTPSHandler):
    def https_open(self, req: Any) -> Any:
        return self.do_open(_checked(http.client.HTTPSConnection), req, context=self._context)


def _request(url: str, headers: dict) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    if PUBLIC_ONLY.get():  # no proxy: the peer checked must be the server itself; redirects use the same opener
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _PublicHTTP, _PublicHTTPS)
        return opener.open(req, timeout=TIMEOUT_S)
    return urllib.request.urlopen(req, timeout=TIMEOUT_S)


def _newer(url: str, record: dict) -> Any:
    """The server's response carrying a new version of the file, or None when the kept copy
    serves: unchanged (304), no validators to ask with, an error, or the server out of reach."""
    headers = {}
    if record.get("etag"):
        headers["If-None-Match"] = record["etag"]
    if record.get("last_modified"):
        headers["If-Modified-Since"] = record["last_modified"]
    if not headers:
        return None
    try:
        response = _request(url, headers)
    except (OSError, http.client.HTTPException):  # 304 and other answers, or offline
        return None
    if response.status == 200:
        return response  # its body is the new version: downloaded from this very response
    response.close()
    return None


def http_reason(url: str, exc: urllib.error.HTTPError) -> str:
    what = {
        401: "the server asks to sign in",
        403: "access is forbidden",
        404: "nothing is there",
        410: "it was removed",
        429: "too many requests: try again later",
    }.get(exc.code, exc.reason or "the server refused")
    return f"cannot download {url}: HTTP {exc.code}, {what}"


def unreachable(url: str, exc: BaseException) -> str:
    host = urllib.parse.urlsplit(url).netloc
    reason = getattr(exc, "reason", None) or exc
    return f"cannot download {url}: {host} cannot be reached ({reason}); check the network or the address"


def _download(
    url: str, folder: Path, key: str, max_bytes: int, progress: bool, kept: Path | None, first: Any = None
) -> Path:
    part, part_record = folder / f"{key}.part", folder / f"{key}.part.json"
    validators = read_record(part_record) if part.exists() else None
    if validators is None and part.exists():
        part.unlink()  # a partial file whose validators were lost cannot be resumed safely
    ctype = (validators or {}).get("content_type", "")
    for attempt in range(ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        headers = {}
        if have and validators:
            headers["Range"] = f"bytes={have}-"
            if validators.get("etag") or validators.get("last_modified"):
                headers["If-Range"] = validators.get("etag") or validators["last_modified"]
        try:
            response, first = (first, None) if first is not None else (_request(url, headers), None)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have and validators and have == validators.get("total"):
                break  # the part was already whole
            raise SourceError(http_reason(url, exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            if attempt == 0 and not have:
                raise SourceError(unreachable(url, exc)) from None
            time.sleep(min(8.0, 0.5 * 2**attempt))
            continue
        with response:
            ctype = response.headers.get_content_type()
            if ctype.startswith(NOT_MEDIA):
                raise SourceError(
                    f"{url} is not a video file: the server sent {ctype} (a web page?); "
                    "give the address of the media file itself, or a page yt-dlp understands"
                )
            resumed = response.status == 206 and _range_start(response) == have
            if response.status == 206 and not resumed:  # not the range asked for: start over
                part.unlink(missing_ok=True)
                validators = None
                continue
            start = have if resumed else 0
            length = response.headers.get("Content-Length")
            total = start + int(length) if length and length.isdigit() else None
            if total is not None and total > max_bytes:
                raise SourceError(too_big(url, total, max_bytes))
            if not resumed:
                validators = {
                    "etag": response.headers.get("ETag"),
                    "last_modified": response.headers.get("Last-Modified"),
                    "total": total,
                    "content_type": ctype,
                }
                write_record(part_record, validators)
            try:
                _copy(response, part, start, total, max_bytes, url, progress)
            except (OSError, http.client.HTTPException):
                time.sleep(min(8.0, 0.5 * 2**attempt))
                continue  # dropped half way: taken up again from what arrived
        size = part.stat().st_size
        if total is None or size >= total:
            break
    else:
        got = part.stat().st_size if part.exists() else 0
        raise SourceError(
            f"the download of {url} broke off {ATTEMPTS} times ({human(got)} arrived); "
            "run the same command again to go on from there"
        )
    final = folder / f"{key}{_extension(url, ctype)}"
    os.replace(part, final)
    if kept is not None and kept != final and kept.exists():
        kept.unlink()
    validators = validators or {}
    write_record(
        folder / f"{key}.json",
        {
            "url": url,
            "file": final.name,
            "etag": validators.get("etag"),
            "last_modified": validators.get("last_modified"),
            "size": final.stat().st_size,
            "content_type": ctype,
            "fetched": email.utils.formatdate(usegmt=True),
        },
    )
    part_record.unlink(missing_ok=True)
    return final


def _range_start(response: Any) -> int | None:
    value = response.headers.get("Content-Range", "")  # bytes START-END/TOTAL
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def too_big(url: str, size: int, limit: int) -> str:
    return (
        f"{url} is {human(size)}, over the download limit of {human(limit)}; "
        "raise it with MCR_MAX_DOWNLOAD (e.g. 20G) or max_bytes="
    )


def _copy(response: Any, part: Path, start: int, total: int | None, max_bytes: int, url: str, progress: bool) -> None:
    from tqdm import tqdm

    name = Path(urllib.parse.urlsplit(url).path).name or urllib.parse.urlsplit(url).netloc
    with (
        open(part, "ab" if start else "wb") as out,
        tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"downloading {name}",
            file=sys.stderr,
            disable=not progress,
            leave=False,
        ) as bar,
    ):
        written = start
        while chunk := response.read(1 << 20):
            written += len(chunk)
            if written > max_bytes:
                out.truncate(0)
                raise SourceError(too_big(url, written, max_bytes))
            out.write(chunk)
            bar.update(len(chunk))
        if total is not None and written < total:
            out.flush()
            raise http.client.IncompleteRead(b"", total - written)


def _extension(url: str, ctype: str) -> str:
    suffix = Path(urllib.parse.urlsplit(url).path).suffix.lower()
    if suffix and len(suffix) <= 6 and suffix[1:].isalnum():
        return suffix
    return MEDIA_TYPES.get(ctype, ".video")


__all__ = ["SourceError", "blocked_address", "check_public", "fetch", "media_cache", "parse_size", "public_only"]
