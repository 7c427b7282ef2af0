"""The ``subtitles`` index stage: the subtitles or automatic captions a video page gave with
the video (fetched by yt-dlp, see :mod:`mcr.media.sites`), stored as transcript entries of their own.

They sit beside the speech stage's transcript, which still runs: both are searchable, told
apart by source (``index:subtitles`` and ``index:transcript``) and by ``data["auto"]`` (the
site's automatic captions) and ``data["language"]``. A local copy of the same file finds the
subtitles its download recorded. Cues are read with webvtt-py (WebVTT and SRT); the rolling
lines of automatic captions (each cue repeating the line before it) are kept once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcr.media.sources import source_of
from mcr.memory import ChunkResult, MemoryEntry, register_stage
from mcr.types import TimeSpan, parse_time


def read_cues(path: str | Path) -> list[tuple[float, float, str]]:
    """``(start, end, text)`` of each cue of a WebVTT or SRT file, markup removed, the lines a
    cue repeats from the one before left out, empty cues dropped."""
    import webvtt

    path = Path(path)
    try:
        doc = webvtt.from_srt(str(path)) if path.suffix.lower() == ".srt" else webvtt.read(str(path))
    except Exception as exc:  # noqa: BLE001 - the library's parse errors vary by format
        raise ValueError(f"{path.name}: not a subtitle file webvtt-py can read ({exc})") from None
    cues: list[tuple[float, float, str]] = []
    last_lines: list[str] = []
    for c in doc.captions:
        start, end = parse_time(c.start.replace(",", ".")), parse_time(c.end.replace(",", "."))
        lines = [" ".join(line.split()) for line in c.text.splitlines()]
        lines = [line for line in lines if line]
        fresh = [line for line in lines if line not in last_lines]
        if lines:
            last_lines = lines
        if not fresh or end - start < 0.05:  # a rolling repeat, or a 10 ms hand-over cue
            continue
        cues.append((start, end, " ".join(fresh)))
    return cues


class SubtitleStage:
    """The page's subtitles, one entry per cue, all files in one chunk."""

    name = "subtitles"
    version = "1"
    chunk_s = 1e9  # the files are read whole
    embed = True  # searchable by meaning, like the spoken transcript

    def __init__(self, **_: Any) -> None:
        pass

    def skip_reason(self, video: Any) -> str | None:
        return None if source_of(video).get("subtitles") else "no subtitles came with this video"

    def run_chunk(self, video: Any, span: TimeSpan) -> ChunkResult:
        entries = []
        files = source_of(video).get("subtitles", [])
        for sub in files:
            for start, end, text in read_cues(sub["path"]):
                a, b = min(start, video.duration), min(max(end, start), video.duration)
                if b < span.start or a > span.end:
                    continue
                entries.append(
                    MemoryEntry(
                        text,
                        "transcript",
                        span=TimeSpan(a, b),
                        data={"language": sub.get("lang", ""), "auto": bool(sub.get("auto")), "file": sub["file"]},
                    )
                )
        return ChunkResult(entries, info={"files": len(files), "cues": len(entries)})


register_stage("subtitles", SubtitleStage)
