"""Which files the service may read: those under its media roots, and nothing a request names
outside them (no ``..``, no symlink out of a root)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

LISTED = 500  # files offered by GET /v1/media at most


def media_path(spec: str, roots: Sequence[Path]) -> Path:
    """The file ``spec`` names under one of ``roots`` (relative to a root, or absolute inside one);
    ``ValueError`` with the reason otherwise. Symlinks are followed before the check."""
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
            if inside and real.is_file():
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


__all__ = ["media_files", "media_path", "under_roots"]
