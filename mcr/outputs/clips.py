"""Evidence clips: the spans a run cited (or any spans) cut from its video as MP4 files, and a
contact sheet of their frames.

A span whose start falls on a keyframe is cut by stream copy (fast, no loss); any other start is
re-encoded (H.264 and AAC) so the clip begins exactly there. ``margin`` widens each span on both
sides, within the video. Cutting is ffmpeg's; keyframes are read with PyAV from the packets,
without decoding.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mcr.errors import MCRError
from mcr.types import TimeSpan, format_time


class ClipError(MCRError):
    """Clips that cannot be cut: the message says why."""


@dataclass
class Clip:
    path: Path
    span: TimeSpan  # what was cut, margin included
    cited: TimeSpan  # the span asked for
    copied: bool  # stream copy (start on a keyframe) or re-encoded

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "span": self.span.to_list(),
            "cited": self.cited.to_list(),
            "copied": self.copied,
        }


def keyframes(path: str | os.PathLike) -> list[float]:
    """The times of the video stream's keyframes, from the packets (nothing decoded)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        return sorted(
            float(p.pts * p.time_base) - start for p in container.demux(stream) if p.is_keyframe and p.pts is not None
        )


def cut_clips(
    video_path: str | os.PathLike, spans: list[TimeSpan], out_dir: str | os.PathLike, margin: float = 0.0
) -> list[Clip]:
    """Cut ``spans`` (widened by ``margin``) from the video into ``out_dir``; see the module."""
    from mcr.media.video import Video

    video = Video(video_path)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ClipError(f"{out} is a file, not a folder: name a folder for the clips")
    out.mkdir(parents=True, exist_ok=True)
    keys = keyframes(video.path)
    half_frame = 0.5 / max(video.fps, 1.0)
    clips = []
    for i, cited in enumerate(spans, 1):
        if cited.start >= video.duration:
            raise ClipError(
                f"span {cited} lies past the end of {video.path.name} ({format_time(video.duration)} long): "
                f"name a span inside 00:00:00.0-{format_time(video.duration)}"
            )
        span = TimeSpan(max(0.0, cited.start - margin), min(video.duration, cited.end + margin))
        if span.duration <= 0:
            raise ClipError(f"span {cited} lies outside the video ({format_time(video.duration)} long)")
        copied = any(abs(k - span.start) <= half_frame for k in keys)
        target = out / f"clip-{i:02d}-{span.start:09.3f}-{span.end:09.3f}.mp4".replace(":", "")
        codec = ["-c", "copy"] if copied else ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-c:a", "aac"]
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.mp4")
        cmd = ["ffmpeg", "-v", "error", "-y", "-ss", f"{span.start:.3f}", "-i", str(video.path)]
        cmd += ["-t", f"{span.duration:.3f}", *codec, "-avoid_negative_ts", "make_zero", str(tmp)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise ClipError(f"ffmpeg could not cut {span} from {video.path.name}: {done.stderr.strip()[:200]}")
        os.replace(tmp, target)
        clips.append(Clip(target, span, cited, copied))
    return clips


def contact_sheet(clips: list[Clip], out: str | os.PathLike, per_clip: int = 4, width: int = 240) -> Path:
    """One image of ``per_clip`` frames of each clip, a row per clip, each frame labelled with its time."""
    from PIL import Image, ImageDraw

    from mcr.media.video import Video

    rows = []
    for clip in clips:
        video = Video(clip.path)
        fps = per_clip / max(video.duration, 0.1)
        frames = video.frames(video.span, fps=fps, max_frames=per_clip, max_pixels=width * width)
        row = []
        for t, image in zip(frames.timestamps, frames.images):
            tile = Image.fromarray(image)
            tile.thumbnail((width, width))
            ImageDraw.Draw(tile).text((4, 4), format_time(clip.span.start + t), fill=(255, 255, 0))
            row.append(tile)
        rows.append(row)
    tile_w = max((t.width for row in rows for t in row), default=width)
    tile_h = max((t.height for row in rows for t in row), default=width)
    sheet = Image.new("RGB", (tile_w * per_clip, tile_h * max(1, len(rows))), (20, 20, 20))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(tile, (c * tile_w, r * tile_h))
    out = Path(out)
    sheet.save(out, quality=85) if out.suffix.lower() in (".jpg", ".jpeg") else sheet.save(out)
    return out


def spans_of_trace(trace: str | os.PathLike) -> tuple[str, list[TimeSpan]]:
    """The video path and the evidence spans of the run in ``trace``."""
    from mcr.outputs.report import read_events
    from mcr.run.events import RunFinished, RunStarted

    events = read_events(trace)
    start = next((e for e in events if isinstance(e, RunStarted)), None)
    if start is None:
        raise ClipError(f"{trace} holds no run: pass a .jsonl trace")
    end = next((e for e in events if isinstance(e, RunFinished) and e.run_id == start.run_id), None)
    spans = list(end.result.evidence) if end is not None else []
    return (start.video or {}).get("path", ""), spans


__all__ = ["Clip", "ClipError", "contact_sheet", "cut_clips", "keyframes", "spans_of_trace"]
