"""Test videos made with ffmpeg, and readers for what is drawn in them.

The "code" videos show their own frame number as a row of 10 black/white bars
(bar k is white when bit k of the frame number is set), which survives lossy
compression and resizing, so a test can read back which frame it was given.
"""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np

CODE_BITS = 10
MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def ffmpeg(*args: str, timeout: float = 60) -> None:
    """Run ffmpeg quietly; raise with its message when it fails."""
    cmd = ["ffmpeg", "-nostdin", "-y", "-v", "error", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{proc.stderr}")


def make_code_video(
    path: Path,
    seconds: float = 10,
    rate: str = "25",
    size: str = "320x240",
    tone_hz: float | None = 440.0,
    tone_from: float = 5.0,
) -> Path:
    """A grey video drawing its frame number as bars; with ``tone_hz``, a stereo
    44.1 kHz AAC track that is silent until ``tone_from`` seconds, then a sine."""
    bits = f"255*mod(floor(N/pow(2,floor(X*{CODE_BITS}/W))),2)"
    args = ["-f", "lavfi", "-i", f"color=c=gray:size={size}:rate={rate}:duration={seconds},format=gray,geq=lum='{bits}'"]
    if tone_hz:
        expr = f"0.5*sin(2*PI*{tone_hz}*t)*gte(t,{tone_from})"
        args += ["-f", "lavfi", "-i", f"aevalsrc='{expr}':s=44100:d={seconds}:c=stereo", "-c:a", "aac"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "50", str(path)]
    ffmpeg(*args)
    return path


def read_code(image: np.ndarray) -> int:
    """The frame number drawn by :func:`make_code_video` in an ``(H, W, 3)`` image."""
    h, w = image.shape[:2]
    value = 0
    for k in range(CODE_BITS):
        lo, hi = int((k + 0.2) * w / CODE_BITS), int((k + 0.8) * w / CODE_BITS)
        if image[h // 4 : 3 * h // 4, lo : max(hi, lo + 1)].mean() > 128:
            value |= 1 << k
    return value


def make_long_video(path: Path, seconds: int = 600, fps: int = 5) -> Path:
    """A long, cheap video (320x240 test pattern, no audio)."""
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={fps}:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path),
        timeout=120,
    )
    return path


def make_bad_file(kind: str, folder: Path, good: Path) -> Path:
    """A file (or folder) of the given kind of badness, made from the video ``good``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}.mp4"
    data = good.read_bytes()
    if kind == "missing":
        return folder / "no_such_video.mp4"
    if kind == "directory":
        path = folder / "a_folder.mp4"
        path.mkdir()
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "png":
        path = folder / "still.png"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", str(path))
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "truncated":  # moov index at the end, so it is lost
        path.write_bytes(data[: int(len(data) * 0.3)])
    elif kind == "truncated_faststart":  # index kept, most of the data cut
        full = folder / "faststart_full.mp4"
        ffmpeg("-i", str(good), "-c", "copy", "-movflags", "+faststart", str(full))
        whole = full.read_bytes()
        path.write_bytes(whole[: int(len(whole) * 0.3)])
    elif kind == "corrupt":  # random bytes over the middle fifth of the file
        rng = random.Random(1234)
        buf = bytearray(data)
        lo, hi = int(len(buf) * 0.4), int(len(buf) * 0.6)
        buf[lo:hi] = bytes(rng.randrange(256) for _ in range(hi - lo))
        path.write_bytes(bytes(buf))
    else:
        raise ValueError(kind)
    return path


def copy_to(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


SHOT_SOURCES = ("testsrc2", "smptebars", "mandelbrot", "color=c=darkred", "colorspectrum", "color=c=navy")


def make_cut_video(path: Path, cuts: int = 5, shot_seconds: float = 4.0, size: str = "320x240", rate: int = 25) -> Path:
    """``cuts + 1`` shots of different lavfi sources, each ``shot_seconds`` long: cuts at k * shot_seconds."""
    inputs: list[str] = []
    for i in range(cuts + 1):
        source = SHOT_SOURCES[i % len(SHOT_SOURCES)]
        sep = ":" if "=" in source else "="
        inputs += ["-f", "lavfi", "-t", str(shot_seconds), "-i", f"{source}{sep}size={size}:rate={rate}"]
    chains = "".join(f"[{i}:v]format=yuv420p,setsar=1[v{i}];" for i in range(cuts + 1))
    concat = "".join(f"[v{i}]" for i in range(cuts + 1)) + f"concat=n={cuts + 1}:v=1:a=0[out]"
    ffmpeg(*inputs, "-filter_complex", chains + concat, "-map", "[out]", "-c:v", "libx264", "-preset", "ultrafast",
           "-g", "50", str(path))
    return path
