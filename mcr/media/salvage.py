"""The part of a cut-off video that is there: its packets copied into a file of their own.

An MP4 whose tail was cut off (a download or copy that stopped) keeps its index at the front
when it was written for streaming, so it claims the whole duration while the data stops part
way. The decoder then refuses the file, though every packet up to the cut is intact. FFmpeg's
stream copy reads the packets until the data ends and writes them into a complete file, with
no re-encoding; the video is then used up to the cut, and the rest is recorded as damaged.

The copy is kept once per source file in ``$MCR_CACHE/media/salvaged`` (``~/.cache/mcr``),
keyed by the source's content hash, and written through a temporary beside it, so two
processes that open the same file at once each see a whole copy or none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from mcr.media.download import media_cache

MIN_SECONDS = 1.0  # a salvaged part shorter than this is no use: the file is refused instead


def salvaged_path(content_hash: str) -> Path:
    return media_cache() / "salvaged" / f"{content_hash[:32]}.mp4"


def salvage(path: Path, content_hash: str, timeout_s: float = 600.0) -> Path | None:
    """A complete file holding the packets of ``path`` up to where its data stops, or None when
    nothing usable can be copied (no ffmpeg on the PATH, or no packet survives)."""
    target = salvaged_path(content_hash)
    if target.is_file() and target.stat().st_size > 0:
        return target
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp.mp4")
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-err_detect", "ignore_err", "-i", str(path)]
    cmd += ["-map", "0:v:0", "-map", "0:a:0?", "-c", "copy", "-movflags", "+faststart", str(tmp)]
    try:
        subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            return None
        os.replace(tmp, target)
    except (OSError, subprocess.TimeoutExpired):
        return None
    finally:
        tmp.unlink(missing_ok=True)
    return target


__all__ = ["MIN_SECONDS", "salvage", "salvaged_path"]
