"""Many videos named at once: files, folders, glob patterns and URLs, found in a stable order.

Indexing a library, searching it and asking it a question all name their videos this way.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Iterable

from mcr.errors import MCRError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")


class LibraryError(MCRError):
    """Paths that name no video, or a pool that cannot start."""


def names_many(spec: Any) -> bool:
    """Whether ``spec`` names several videos: a list or tuple, a folder, or a glob pattern that is
    not itself a file. One path, URL or opened video names one."""
    if isinstance(spec, (list, tuple)):
        return True
    if not isinstance(spec, (str, os.PathLike)):
        return False
    from mcr.media.sources import is_url

    text = os.fspath(spec)
    if is_url(text):
        return False
    path = Path(text).expanduser()
    return path.is_dir() or (not path.exists() and glob.has_magic(text))


def find_videos(paths: Iterable[str]) -> list[Path | str]:
    """The video files named by ``paths``: files, folders (searched recursively for video
    extensions), glob patterns and URLs (kept as they are), each once, in a stable order."""
    from mcr.media.sources import is_url

    paths = [os.fspath(p) for p in paths]
    found: list[Path | str] = []
    for spec in paths:
        if is_url(spec):
            found.append(spec)  # fetched by whoever opens it
            continue
        p = Path(spec).expanduser()
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        elif p.exists():
            found.append(p)
        elif glob.has_magic(spec):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(spec), recursive=True))
            found += [m for m in matches if m.is_file()]
            if not matches:
                raise LibraryError(f"no file matches {spec}")
        else:
            found.append(p)  # a missing file: its opener says so, the others go on
    unique = list(dict.fromkeys(f if isinstance(f, str) else f.absolute() for f in found))
    if not unique:
        raise LibraryError(f"no video files in {', '.join(paths)} (looked for {', '.join(VIDEO_EXTENSIONS)})")
    return unique
