"""A labelled set of real footage for shot-boundary detection, built from ``../shared/media``.

    python benchmarks/shot_set.py [--work DIR]

The clips are never copied into the project: each is cut, scaled (letterboxed) to one
size and rate and written into ``DIR`` (default: a folder in the temp directory), then
joined in several orders with hard joins, dissolves (ffmpeg ``xfade=fade``) and fades
through black (``xfade=fadeblack``) at known times. The hard cuts inside the clips come
from the hand labels in ``tests/data/shot_labels.json`` (how they were checked is written
there). Videos with no boundary at all (a fixed camera with people walking past, a
swaying boat, a head-mounted camera, a pan over real footage, a flash frame) are in the
set too. ``build_set`` returns the videos with their labels; ``labels.json`` in ``DIR``
holds the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
LABELS = ROOT / "tests" / "data" / "shot_labels.json"
SIZE, RATE = (480, 270), 24
NORMALISE = (
    f"scale={SIZE[0]}:{SIZE[1]}:force_original_aspect_ratio=decrease,"
    f"pad={SIZE[0]}:{SIZE[1]}:(ow-iw)/2:(oh-ih)/2,fps={RATE},format=yuv420p,setsar=1"
)
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-an"]

# name: (clip, start, end); times in the clip's own seconds
PIECES = {
    "boats": ("boats.mp4", 0.0, 8.0),
    "kitchen": ("kitchen_segment3.mp4", 0.0, 6.0),
    "megamind": ("megamind.mp4", 0.125, 11.3),  # from the first frames of picture (it opens on black)
    "internvid": ("internvid_example1.mp4", 0.0, 7.0),
    "pedestrians": ("pedestrians.mp4", 20.0, 30.0),
}

# each order: piece, (join, seconds), piece, ...; join is cut, dissolve (xfade), fadeblack (xfade
# through black) or fade (ffmpeg's fade filter out to black and in again)
ORDERS = {
    "order1": ["boats", ("cut", 0), "kitchen", ("dissolve", 1.0), "megamind", ("fadeblack", 1.0), "pedestrians"]
    + [("cut", 0), "internvid"],
    "order2": ["megamind", ("dissolve", 2.0), "internvid", ("cut", 0), "boats", ("fadeblack", 1.0), "kitchen"]
    + [("dissolve", 0.5), "pedestrians"],
    "order3": ["pedestrians", ("fadeblack", 1.0), "boats", ("dissolve", 1.0), "internvid", ("cut", 0), "megamind"]
    + [("cut", 0), "kitchen"],
    "order4": ["kitchen", ("fade", 1.6), "megamind", ("dissolve", 1.5), "boats", ("fade", 1.0), "internvid"]
    + [("dissolve", 1.0), "pedestrians"],
}


def ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-nostdin", "-y", "-v", "error", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{proc.stderr}")


def piece_cuts(name: str) -> list[float]:
    """The labelled hard cuts inside a piece, in the piece's own seconds."""
    clip, start, end = PIECES[name]
    cuts = json.loads(LABELS.read_text())["cuts"][clip]
    return [round(c - start, 3) for c in cuts if start + 0.5 < c < end - 0.5]


def make_piece(name: str, folder: Path) -> Path:
    clip, start, end = PIECES[name]
    out = folder / f"piece_{name}.mp4"
    if not out.exists():
        ffmpeg("-ss", str(start), "-t", str(end - start), "-i", str(MEDIA / clip), "-vf", NORMALISE, *H264, str(out))
    return out


def make_order(name: str, order: list, folder: Path) -> dict:
    """Join the pieces of ``order``; the labels: hard cuts (seconds) and gradual spans."""
    out = folder / f"{name}.mp4"
    pieces = order[0::2]
    joins = order[1::2]
    inputs: list[str] = []
    for p in pieces:
        inputs += ["-i", str(make_piece(p, folder))]
    length = PIECES[pieces[0]][2] - PIECES[pieces[0]][1]
    cuts = list(piece_cuts(pieces[0]))
    gradual: list[list[float]] = []
    graph = [f"[{k}:v]settb=AVTB,setpts=PTS-STARTPTS[i{k}]" for k in range(len(pieces))]
    last = "[i0]"
    for k, ((kind, seconds), p) in enumerate(zip(joins, pieces[1:]), 1):
        piece_len = PIECES[p][2] - PIECES[p][1]
        label = f"[j{k}]"
        if kind == "cut":
            graph.append(f"{last}[i{k}]concat=n=2:v=1:a=0,settb=AVTB{label}")
            offset = length
            cuts.append(round(length, 3))
        elif kind == "fade":  # ffmpeg fade: out to black over half the time, in from black over the rest
            half = seconds / 2
            out_, in_ = f"fade=t=out:st={length - half:.3f}:d={half}", f"fade=t=in:st=0:d={half}"
            graph.append(f"{last}{out_}[o{k}];[i{k}]{in_}[n{k}];[o{k}][n{k}]concat=n=2:v=1:a=0,settb=AVTB{label}")
            offset = length
            gradual.append([round(length - half, 3), round(length + half, 3)])
        else:
            offset = length - seconds
            transition = "fade" if kind == "dissolve" else "fadeblack"  # xfade's own fade through black
            graph.append(
                f"{last}[i{k}]xfade=transition={transition}:duration={seconds}:offset={offset:.3f},settb=AVTB{label}"
            )
            gradual.append([round(offset, 3), round(length, 3)])
        cuts += [round(offset + c, 3) for c in piece_cuts(p)]
        length = offset + piece_len
        last = label
    if not out.exists():
        ffmpeg(*inputs, "-filter_complex", ";".join(graph), "-map", last, *H264, str(out))
    return {"path": str(out), "cuts": sorted(cuts), "gradual": gradual, "duration": round(length, 3)}


def make_no_cut(folder: Path) -> dict:
    """Videos with no boundary: real clips whole, a pan over real footage, a flash frame."""
    videos = {}
    for clip in ("pedestrians.mp4", "boats.mp4", "kitchen_segment3.mp4"):
        out = folder / f"whole_{Path(clip).stem}.mp4"
        if not out.exists():
            ffmpeg("-i", str(MEDIA / clip), "-vf", NORMALISE, *H264, str(out))
        videos[out.stem] = {"path": str(out), "cuts": [], "gradual": []}
    pan = folder / "pan_boats.mp4"  # a slow pan: a window sliding 40 px/s across an enlarged boats clip
    if not pan.exists():
        crop = f"scale=1280:720,crop={SIZE[0]}:{SIZE[1]}:x='40*t':y=200,fps={RATE},format=yuv420p,setsar=1"
        ffmpeg("-t", "12", "-i", str(MEDIA / "boats.mp4"), "-vf", crop, *H264, str(pan))
    flash = folder / "flash_pedestrians.mp4"  # one white frame at 5 s
    if not flash.exists():
        vf = NORMALISE + f",drawbox=enable='eq(n,{5 * RATE})':color=white:t=fill"
        ffmpeg("-ss", "30", "-t", "10", "-i", str(MEDIA / "pedestrians.mp4"), "-vf", vf, *H264, str(flash))
    videos["pan_boats"] = {"path": str(pan), "cuts": [], "gradual": []}
    videos["flash_pedestrians"] = {"path": str(flash), "cuts": [], "gradual": []}
    return videos


def build_set(folder: Path) -> dict:
    """The labelled set in ``folder`` (made once): ``{name: {path, cuts, gradual}}``."""
    folder.mkdir(parents=True, exist_ok=True)
    videos = {name: make_order(name, order, folder) for name, order in ORDERS.items()}
    videos.update(make_no_cut(folder))
    (folder / "labels.json").write_text(json.dumps(videos, indent=1))
    return videos


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "mcr-shot-set"))
    args = ap.parse_args()
    for name, v in build_set(Path(args.work)).items():
        print(f"{name}: {v['path']}\n  hard cuts {v['cuts']}\n  gradual {v['gradual']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
