"""Which files the service may read: those under its media roots, and nothing a request names
outside them (no ``..``, no symlink out of a root)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

LISTED = 500  # files offered by GET /v1/media at most


class MediaCount(ValueError):
    """Names allowed under the roots that come to no video, or to too many."""


def media_path(spec: str, roots: Sequence[Path], folders: bool = False) -> Path:
    """The file ``spec`` names under one of ``roots`` (relative to a root, or absolute inside one),
    or with ``folders`` a folder too; ``ValueError`` with the reason otherwise. Symlinks are
    followed before the check."""
    if not roots:
        raise ValueError("this service has no media roots: start it with --media-root DIR to serve files")
    shown = repr(spec if len(spec) <= 120 else spec[:117] + "...")
    if "\0" in spec:
        raise ValueError(f"{shown} is not a file name (it holds a NUL byte)")
    if ".." in Path(spec).parts:
        raise ValueError(f"{shown} holds '..': name a file inside a media root")
    candidates = [Path(spec)] if Path(spec).is_absolute() else [root / spec for root in roots]
    for candidate in candidates:
        try:
            real = candidate.resolve()
            inside = any(real.is_relative_to(root.resolve()) for root in roots)
            if inside and (real.is_file() or (folders and real.is_dir())):
                return real
            if inside and real.is_dir():
                raise ValueError(f"{shown} is a folder, not a video: name a file in it")
            if candidate.exists() or candidate.is_symlink():
                raise ValueError(f"{shown} is outside the media roots")
        except OSError as exc:  # a name too long, a loop of symlinks: no file of that name can be served
            raise ValueError(f"{shown} is not a file under the media roots ({exc.strerror or exc})") from None
    raise ValueError(f"{shown} is not a file under the media roots")


def under_roots(path: str | Path, roots: Sequence[Path]) -> bool:
    """True when ``path`` (symlinks followed) lies inside one of ``roots``."""
    real = Path(path).resolve()
    return any(real.is_relative_to(root) for root in roots)


def media_videos(specs: Sequence[str], roots: Sequence[Path], limit: int) -> list[Path]:
    """The video files ``specs`` name under ``roots``: files, and the videos in folders (symlinks
    out of a root left out), each once. ``ValueError`` for a name outside the roots;
    ``MediaCount`` for a folder with no video, or more than ``limit`` videos in all."""
    from mcr.media.collection import VIDEO_EXTENSIONS  # a folder gives what `mcr-agent index` indexes in it

    found: dict[Path, None] = {}
    for spec in specs:
        path = media_path(spec, roots, folders=True)
        if path.is_file():
            found[path] = None
            continue
        inside = [p.resolve() for p in sorted(path.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS]
        inside = [p for p in inside if p.is_file() and under_roots(p, roots)]
        if not inside:
            raise MediaCount(f"{shown_name(path, roots)!r} holds no video files")
        found.update(dict.fromkeys(inside))
        if len(found) > limit:
            break
    if len(found) > limit:
        raise MediaCount(f"these name more than {limit} videos: name fewer files or folders")
    return list(found)


def shown_name(path: str | Path, roots: Sequence[Path]) -> str:
    """``path`` relative to the media root that holds it, so no answer shows where the roots are
    on disk (the root's own folder is ``.``)."""
    real = Path(path).resolve()
    for root in roots:
        if real.is_relative_to(root):
            return str(real.relative_to(root))
    return real.name


def media_files(roots: Sequence[Path], limit: int = LISTED) -> list[str]:
    """The video files under ``roots`` (relative to their root), symlinks out of a root left out."""
    from mcr.media.sources import MEDIA_SUFFIXES

    found: list[str] = []
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES and p.resolve().is_relative_to(root):
                found.append(str(p.relative_to(root)))
            if len(found) >= limit:
                break
    return found


__all__ = ["MediaCount", "media_files", "media_path", "media_videos", "shown_name", "under_roots"]
