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
H264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")  # quick H.264 any player reads
MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def shared_clip(name: str) -> Path:
    """The real clip ``name`` from ``../shared/media`` (beside the checkout). When it is not
    there, the calling test is skipped, saying which clip is missing and where it was looked for."""
    path = MEDIA / name
    if not path.is_file():
        import pytest

        pytest.skip(f"real clip {name} not found in {MEDIA} (the shared media folder beside the checkout)")
    return path


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
    args = [
        "-f",
        "lavfi",
        "-i",
        f"color=c=gray:size={size}:rate={rate}:duration={seconds},format=gray,geq=lum='{bits}'",
    ]
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
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=320x240:rate={fps}:duration={seconds}",
        *H264,
        str(path),
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
    ffmpeg(
        *inputs,
        "-filter_complex",
        chains + concat,
        "-map",
        "[out]",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "50",
        str(path),
    )
    return path


# ------------------------------------------------------- speech and drawn text

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

SPOKEN_CUES = (
    (2.0, "The orange cat is sleeping on the piano."),
    (14.0, "Please remember to water the tomato plants tomorrow."),
    (26.0, "The train to Edinburgh leaves from platform seven."),
    (38.0, "My grandmother baked a chocolate cake for the party."),
    (50.0, "The football match was cancelled because of heavy snow."),
)
DRAWN_CUES = (  # (start, end, text)
    (9.0, 13.0, "MUSEUM CLOSED ON MONDAYS"),
    (21.0, 25.0, "Fresh strawberries 3 euros"),
    (33.0, 37.0, "EXIT 14 AIRPORT"),
    (45.0, 49.0, "Chapter two the lighthouse"),
    (57.0, 61.0, "Wifi password seagull"),
)


def speak(text: str, path: Path, speed: int = 160) -> Path:
    """``text`` spoken by espeak-ng into a WAV file."""
    proc = subprocess.run(
        ["espeak-ng", "-s", str(speed), "-w", str(path), text], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise RuntimeError(f"espeak-ng failed: {proc.stderr}")
    return path


def _drawtext(text: str, start: float, end: float, y: int, size: int = 30) -> str:
    font = f"fontfile={FONT}:" if FONT.exists() else ""
    return (
        f"drawtext={font}text='{text}':fontsize={size}:fontcolor=white:x=(w-text_w)/2:y={y}:"
        f"enable='between(t,{start},{end})'"
    )


def make_cue_video(
    path: Path, spoken=SPOKEN_CUES, drawn=DRAWN_CUES, seconds: float = 63.0, size: str = "640x360", rate: int = 10
) -> Path:
    """A dark video with ``spoken`` sentences (espeak-ng) starting at known times and
    ``drawn`` texts shown from start to end (ffmpeg drawtext); mono 16 kHz AAC (no audio
    track when nothing is spoken)."""
    folder = path.parent / f"{path.stem}_speech"
    folder.mkdir(parents=True, exist_ok=True)
    inputs: list[str] = ["-f", "lavfi", "-i", f"color=c=0x1d2b44:size={size}:rate={rate}:duration={seconds}"]
    chains = []
    for i, (t, text) in enumerate(spoken):
        inputs += ["-i", str(speak(text, folder / f"s{i}.wav"))]
        ms = int(round(t * 1000))
        chains.append(f"[{i + 1}:a]aresample=16000,adelay={ms}|{ms}[a{i}]")
    mix = "".join(f"[a{i}]" for i in range(len(spoken)))
    audio = [f"{mix}amix=inputs={len(spoken)}:normalize=0,apad,atrim=0:{seconds}[aout]"] if spoken else []
    video = (
        "[0:v]"
        + (",".join(_drawtext(text, a, b, 60 + 70 * (k % 3)) for k, (a, b, text) in enumerate(drawn)) or "null")
        + "[vout]"
    )
    maps = ["-map", "[vout]"] + (["-map", "[aout]", "-c:a", "aac", "-ar", "16000", "-ac", "1"] if spoken else [])
    ffmpeg(
        *inputs,
        "-filter_complex",
        ";".join(chains + audio + [video]),
        *maps,
        *H264,
        "-g",
        "50",
        "-t",
        str(seconds),
        str(path),
        timeout=120,
    )
    return path


def make_object_video(path: Path, seconds: float = 6.0, size: str = "320x240", rate: int = 10) -> Path:
    """A white 60x40 box moving right at 20 px/s over a black background (no audio)."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"color=c=black:size={size}:rate={rate}:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"color=c=white:size=60x40:rate={rate}:duration={seconds}",
        "-filter_complex",
        "[0:v][1:v]overlay=x='40+20*t':y=100",
        *H264,
        str(path),
    )
    return path


def make_shape_video(path: Path, seconds: float = 6.0, size: str = "320x240", rate: int = 10) -> Path:
    """A red 100x100 square in the middle of a black frame, still, no audio."""
    w, h = (int(v) for v in size.split("x"))
    box = f"drawbox=x={(w - 100) // 2}:y={(h - 100) // 2}:w=100:h=100:color=red:t=fill"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"color=c=black:size={size}:rate={rate}:duration={seconds},{box}",
        *H264,
        str(path),
    )
    return path


def make_silent_audio_video(path: Path, seconds: float = 4.0) -> Path:
    """A short test pattern with an audio track of pure silence."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=160x120:rate=10:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"anullsrc=r=16000:cl=mono:d={seconds}",
        *H264,
        "-c:a",
        "aac",
        "-t",
        str(seconds),
        str(path),
    )
    return path


def corrupt_audio(src: Path, dst: Path, seed: int = 5) -> Path:
    """A copy of ``src`` whose audio packets are overwritten with random bytes (video intact)."""
    import av

    with av.open(str(src)) as container:
        places = [
            (p.pos, p.size)
            for p in container.demux(container.streams.audio[0])
            if p.pos is not None and p.pos >= 0 and p.size
        ]
    rng = random.Random(seed)
    data = bytearray(src.read_bytes())
    for pos, size in places:
        data[pos : pos + size] = bytes(rng.randrange(256) for _ in range(size))
    dst.write_bytes(bytes(data))
    return dst
