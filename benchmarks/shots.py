"""Part g of the perception benchmark: shot boundaries on real footage.

    python benchmarks/shots.py [--work DIR]

On the labelled set of ``shot_set.py`` (real clips joined with hard cuts, dissolves and
fades at known times, the hand-labelled cuts inside the clips, and videos with no
boundary), three detectors run in the same process, taking turns on each video (twice;
each one's lower time counts): MCR's ``shots`` stage (``ShotStage.run_chunk`` over the
video's chunks, decoding included), PySceneDetect's ``ContentDetector`` with its default settings through its own
``detect()``, and ffmpeg's scene filter (``select='gt(scene,0.3)'``).

Scoring. A hard cut is found by a boundary whose end (the first frame of the new shot) is
within 0.5 s of it; a gradual transition by a boundary that overlaps its span (an instant
inside it counts). Each label takes at most one boundary, hard cuts first, nearest first.
A boundary left over is a false one: in the hard-cut row when it is a cut (every boundary
of PySceneDetect and ffmpeg is), in the gradual row when it is a gradual transition; so a
run of cuts through one fade finds it once and counts the rest as false cuts. "false in
no-cut videos" counts every boundary in the videos that have none. Cost is given per
minute of video as wall seconds and as CPU seconds (all threads, and ffmpeg's process):
on a shared machine wall time swings with the other work on it, CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shot_set import build_set  # noqa: E402

TOLERANCE = 0.5
REPEATS = 2


def mcr_boundaries(path: str) -> list[tuple[float, float, str]]:
    from mcr.media.video import Video
    from mcr.tools.shots import ShotStage
    from mcr.types import TimeSpan

    stage = ShotStage()
    video = Video(path)
    out, start = [], 0.0
    while start < video.duration:
        end = min(video.duration, start + stage.chunk_s)
        for e in stage.run_chunk(video, TimeSpan(start, end)).entries:
            out.append((e.span.start, e.span.end, e.data["transition"]))
        start = end
    return out


def scenedetect_boundaries(path: str) -> list[tuple[float, float, str]]:
    from scenedetect import ContentDetector, detect

    scenes = detect(path, ContentDetector())
    return [(s.seconds, s.seconds, "cut") for s, _ in scenes[1:]]


def ffmpeg_boundaries(path: str) -> list[tuple[float, float, str]]:
    cmd = ["ffmpeg", "-nostdin", "-i", path, "-vf", "select='gt(scene,0.3)',showinfo", "-an", "-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    times = [float(t) for t in re.findall(r"pts_time:\s*([0-9.]+)", proc.stderr)]
    return [(t, t, "cut") for t in times]


METHODS = {
    "MCR shots stage": mcr_boundaries,
    "PySceneDetect ContentDetector": scenedetect_boundaries,
    "ffmpeg scene > 0.3": ffmpeg_boundaries,
}


def score(found: list[tuple[float, float, str]], cuts: list[float], gradual: list[list[float]]) -> dict:
    """Counts for one video: true and false boundaries and misses, for each kind."""
    left = list(range(len(found)))
    hard_hits = 0
    for c in cuts:
        near = [i for i in left if abs(found[i][1] - c) <= TOLERANCE]
        if near:
            left.remove(min(near, key=lambda i: abs(found[i][1] - c)))
            hard_hits += 1
    grad_hits = 0
    for g0, g1 in gradual:
        over = [i for i in left if found[i][0] <= g1 and found[i][1] >= g0]
        if over:
            left.remove(min(over, key=lambda i: abs(found[i][1] - g1)))
            grad_hits += 1
    return {
        "hard_tp": hard_hits,
        "hard_fp": sum(1 for i in left if found[i][2] == "cut"),
        "hard_fn": len(cuts) - hard_hits,
        "grad_tp": grad_hits,
        "grad_fp": sum(1 for i in left if found[i][2] == "gradual"),
        "grad_fn": len(gradual) - grad_hits,
        "false_no_cut": len(found) if not cuts and not gradual else 0,
    }


def prf(tp: int, fp: int, fn: int) -> str:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return f"{p:.2f} {r:.2f} {f:.2f}"


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished children: on a shared
    machine it holds still where wall time does not."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def probe_minutes(path: str) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip()) / 60.0


def shots_table(work: Path) -> str:
    """Run the three detectors on the labelled set (made in ``work``); the table as text."""
    videos = build_set(work)
    minutes = sum(probe_minutes(v["path"]) for v in videos.values())
    n_cuts = sum(len(v["cuts"]) for v in videos.values())
    n_grad = sum(len(v["gradual"]) for v in videos.values())
    head = f"{'(g) shots, ' + str(len(videos)) + ' videos':36} {'hard cuts P R F1':18} {'gradual P R F1':18}"
    lines = [
        f"labelled set: {len(videos)} videos, {minutes:.1f} min, {n_cuts} hard cuts, {n_grad} gradual transitions",
        head + f" {'false in':10} {'wall s':9} {'CPU s'}",
        f"{'':36} {'':18} {'':18} {'no-cut':10} {'per video min':15}",
        "-" * 106,
    ]
    details = []
    first = min(videos.values(), key=lambda v: probe_minutes(v["path"]))["path"]
    for method in METHODS.values():
        method(first)  # once untimed: each method's imports and first-call set-up
    found: dict[tuple[str, str], list] = {}
    seconds: dict[tuple[str, str], tuple[float, float]] = {}
    for rep in range(REPEATS):  # the methods take turns on each video; each one's best time counts
        for k, vname in enumerate(videos):
            names = list(METHODS)
            for name in names[(k + rep) % len(names) :] + names[: (k + rep) % len(names)]:
                c0, t0 = cpu_seconds(), time.perf_counter()
                found[name, vname] = METHODS[name](videos[vname]["path"])
                took = (time.perf_counter() - t0, cpu_seconds() - c0)
                seconds[name, vname] = min(took, seconds.get((name, vname), took))
    for name in METHODS:
        total = {k: 0 for k in ("hard_tp", "hard_fp", "hard_fn", "grad_tp", "grad_fp", "grad_fn", "false_no_cut")}
        for vname, v in videos.items():
            counts = score(found[name, vname], v["cuts"], v["gradual"])
            for k in total:
                total[k] += counts[k]
            listed = ", ".join(f"{b[2]} {b[0]:.2f}-{b[1]:.2f}" for b in found[name, vname])
            details.append(f"  {name} on {vname}: {listed}")
        hard = prf(total["hard_tp"], total["hard_fp"], total["hard_fn"])
        grad = prf(total["grad_tp"], total["grad_fp"], total["grad_fn"])
        wall = sum(seconds[name, v][0] for v in videos) / minutes
        cpu = sum(seconds[name, v][1] for v in videos) / minutes
        lines.append(f"{name:36} {hard:18} {grad:18} {total['false_no_cut']:<10} {wall:<9.2f} {cpu:.2f}")
    lines.append(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    return "\n".join(lines) + "\n\nboundaries found:\n" + "\n".join(details)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "mcr-shot-set"))
    args = ap.parse_args()
    print(shots_table(Path(args.work)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
