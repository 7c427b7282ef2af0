"""The hour of test video the perception benchmark runs on, made with ffmpeg and espeak-ng.

640x360, 30 fps H.264 with a keyframe every 250 frames, espeak-ng speech over the whole
length, a title drawn each minute, a colour change every 90 s, and the frame number drawn
as 17 black/white bars in a strip along the top (``read_frame_number`` reads it back), so
every sampled frame can be checked against the frame it should be.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

FPS = 30
SIZE = (640, 360)
STRIP = 24  # pixels of frame-number bars along the top
BITS = 17
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

SUBJECTS = [
    "the harbour master",
    "a young cyclist",
    "the old baker",
    "two engineers",
    "the museum guide",
    "a tired pilot",
    "the river ferry",
    "the night nurse",
    "a street musician",
    "the mountain guide",
]
ACTIONS = [
    "checks the weather report",
    "repairs a broken bridge",
    "tells a story about the war",
    "counts the boxes in the warehouse",
    "explains how the engine works",
    "waits for the last train",
    "paints the fence green",
    "reads the morning news",
    "plans a trip to the coast",
    "cooks soup for the neighbours",
]
PLACES = [
    "before sunrise",
    "in the busy market",
    "near the lighthouse",
    "after the storm",
    "in the quiet library",
    "at the central station",
    "on the frozen lake",
    "behind the town hall",
]


def ffmpeg(*args: str, timeout: float = 3600) -> None:
    cmd = ["ffmpeg", "-nostdin", "-y", "-v", "error", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{proc.stderr}")


def speech_text(words: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    out, n, part = [], 0, 0
    while n < words:
        if len(out) % 12 == 0:
            part += 1
            out.append(f"Part {part}.")
        s = f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(ACTIONS)} {rng.choice(PLACES)}."
        out.append(s)
        n += len(s.split())
    return " ".join(out)


def make_long_video(path: Path, minutes: int) -> Path:
    """The benchmark video (see the module's docstring)."""
    if path.exists():
        return path
    seconds = minutes * 60
    tmp = Path(tempfile.mkdtemp(prefix="mcr-bench-"))
    try:
        text = tmp / "speech.txt"
        text.write_text(speech_text(words=int(seconds * 2.9)))  # espeak-ng at 170 wpm runs a little short
        wav = tmp / "speech.wav"
        subprocess.run(["espeak-ng", "-s", "170", "-w", str(wav), "-f", str(text)], check=True, capture_output=True)
        w, h = SIZE
        bits = "255*mod(floor(N/pow(2,floor(X/2))),2)"
        font = f"fontfile={FONT}:" if os.path.exists(FONT) else ""
        strip = (
            f"color=c=black:size={2 * BITS}x1:rate={FPS},format=gray,geq=lum='{bits}',"
            f"scale={w}:{STRIP}:flags=neighbor,format=yuv420p"
        )
        main = (
            f"testsrc2=size={w}x{h - STRIP}:rate={FPS},hue=h='floor(t/90)*67',"
            f"drawtext={font}text='Part %{{eif\\:floor(t/60)+1\\:d}}':fontsize=30:fontcolor=white:"
            f"box=1:boxcolor=black@0.6:x=20:y={h - STRIP - 50},format=yuv420p"
        )
        ffmpeg(
            "-f",
            "lavfi",
            "-t",
            str(seconds),
            "-i",
            strip,
            "-f",
            "lavfi",
            "-t",
            str(seconds),
            "-i",
            main,
            "-stream_loop",
            "-1",
            "-i",
            str(wav),
            "-filter_complex",
            "[0:v][1:v]vstack[v];[2:a]apad[a]",
            "-map",
            "[v]",
            "-map",
            "[a]",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "250",
            "-keyint_min",
            "250",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-ar",
            "16000",
            "-ac",
            "1",
            str(path),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_frame_number(image) -> int:
    """The frame number drawn in the bars along the top of a benchmark frame."""
    h, w = image.shape[:2]
    row = image[: max(1, int(STRIP * h / SIZE[1])) * 2 // 3].mean(axis=(0, 2))
    value = 0
    for k in range(BITS):
        lo, hi = int((k + 0.25) * w / BITS), int((k + 0.75) * w / BITS)
        if row[lo : max(hi, lo + 1)].mean() > 128:
            value |= 1 << k
    return value


# ------------------------------------------------------------------ the parts
# Each part runs in a child process (``--child NAME``) and prints one JSON line, with
# its peak memory: ru_maxrss of the child and of any process it started.
