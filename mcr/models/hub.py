"""Models fetched on first use: hub snapshots through ``huggingface_hub``, single files by URL.

A hub id that is not in the local Hugging Face cache is downloaded the way transformers and
the rest of the ecosystem do it: ``snapshot_download`` into the standard cache (``HF_HOME``,
``HF_HUB_CACHE``), from ``HF_ENDPOINT`` (default huggingface.co), with ``HF_TOKEN`` for gated
or private repositories, resumable, with huggingface_hub's progress bars on stderr.
``HF_HUB_OFFLINE=1`` never touches the network. Before downloading, one short request
(``CONNECT_S`` seconds) asks the hub about the repository, so a machine without a network
gets a clear line in seconds instead of waiting on the library's longer timeouts.

:func:`fetch_url` is the same for a single file at a URL (the SAM checkpoints): downloaded
into a temporary file beside the target, checked against the hash its publisher gives, and
renamed into place only then, so a half-written or wrong file is never used.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .base import ModelNotAvailable

CONNECT_S = 3.0  # seconds the first request to the hub may take before it counts as unreachable


def offline() -> bool:
    """``HF_HUB_OFFLINE`` is set to a true value."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - no stored token
        return None


def _bounded(call, timeout: float):
    """``call()`` in a thread, waited for at most ``timeout`` seconds (name resolution itself
    may hang): its result, or ``TimeoutError``."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def why_not_reachable(repo_id: str, kind: str = "model") -> str | None:
    """None when the hub answers for ``repo_id``; otherwise why it cannot be fetched, in words."""
    url = f"{endpoint()}/api/{kind}s/{repo_id}/revision/main"
    request = urllib.request.Request(url, headers={"User-Agent": "mcr-agent"})
    token = _token()
    if token:
        request.add_header("Authorization", f"Bearer {token}")

    def ask() -> int:
        with urllib.request.urlopen(request, timeout=CONNECT_S) as response:
            return response.status

    host = urllib.parse.urlsplit(url).netloc
    try:
        _bounded(ask, CONNECT_S + 0.5)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return f"the hub at {host} refuses it ({exc.code}): it is gated or private; log in (`hf auth login`) or set HF_TOKEN"
        if exc.code == 404:
            return f"the hub at {host} has no {kind} {repo_id} (check the name)"
        return f"the hub at {host} answered {exc.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"the hub at {host} cannot be reached ({reason})"
    return None


def fetch(repo_id: str, allow_patterns: list[str] | None = None, what: str = "model") -> Path:
    """The local folder of hub repository ``repo_id``, downloaded now if it is not cached.
    Raises ``ModelNotAvailable`` with the reason when it cannot be fetched."""
    if offline():
        raise ModelNotAvailable(f"{what} {repo_id} is not on this machine and HF_HUB_OFFLINE is set")
    reason = why_not_reachable(repo_id)
    if reason:
        raise ModelNotAvailable(f"{what} {repo_id} is not on this machine and {reason}")
    from huggingface_hub import snapshot_download

    print(f"downloading {repo_id} from {endpoint()} (once; kept in the Hugging Face cache)", file=sys.stderr)
    try:
        folder = snapshot_download(repo_id, allow_patterns=allow_patterns, etag_timeout=CONNECT_S * 3)
    except Exception as exc:  # noqa: BLE001 - said plainly; a rerun resumes the download
        raise ModelNotAvailable(
            f"{what} {repo_id} could not be downloaded ({type(exc).__name__}: {str(exc)[:200]}); "
            "run the command again to resume"
        ) from None
    return Path(folder)


def fetch_url(url: str, target: Path, sha256_prefix: str, what: str = "file") -> Path:
    """``target``, downloaded from ``url`` when it is not there yet, and kept only when its SHA-256
    starts with ``sha256_prefix`` (the hash its publisher gives). Written to a temporary file and
    renamed, so a killed download or two processes fetching at once never leave a partial file."""
    target = Path(target).expanduser()
    if target.is_file():
        return target
    host = urllib.parse.urlsplit(url).netloc
    if offline():
        raise ModelNotAvailable(f"{what} {target.name} is not on this machine and HF_HUB_OFFLINE is set")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = _bounded(lambda: urllib.request.urlopen(url, timeout=CONNECT_S * 3), CONNECT_S * 3 + 0.5)
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise ModelNotAvailable(
                    f"{what} {target.name} is not on this machine and {host} cannot be reached ({reason})"
                ) from None
            with response:
                total = int(response.headers.get("Content-Length") or 0)
                print(f"downloading {what} {target.name} from {host} ({total / 2**20:.0f} MiB, once)", file=sys.stderr)
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        found = digest.hexdigest()
        if not found.startswith(sha256_prefix.lower()):
            raise ModelNotAvailable(
                f"{what} from {url} does not match its published hash (SHA-256 {found[:12]}..., expected "
                f"{sha256_prefix}...); it was not kept: try again later, or download it yourself"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def cached_models() -> list[dict]:
    """What the Hugging Face cache holds: ``[{"repo", "kind", "size_mib", "path"}]``, largest first."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # noqa: BLE001 - no cache yet
        return []
    rows = [
        {"repo": r.repo_id, "kind": r.repo_type, "size_mib": round(r.size_on_disk / 2**20, 1), "path": str(r.repo_path)}
        for r in info.repos
    ]
    return sorted(rows, key=lambda r: -r["size_mib"])


def size_of(path: Path) -> int:
    """Bytes in a file, or in all the files under a folder (0 when there is nothing)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def folder_sizes(root: Path) -> list[dict]:
    """The files and folders directly under ``root`` with their sizes (MiB)."""
    if not root.is_dir():
        return []
    return [{"path": str(e), "size_mib": round(size_of(e) / 2**20, 1)} for e in sorted(root.iterdir())]


__all__ = [
    "CONNECT_S",
    "cached_models",
    "endpoint",
    "fetch",
    "fetch_url",
    "folder_sizes",
    "offline",
    "why_not_reachable",
]
