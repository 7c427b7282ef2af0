"""The whole video index built stage by stage and in one pass, in one run, with the results compared.

    python benchmarks/index_build.py [--minutes 5] [--work DIR] [--real]

Stage by stage: every stage after the other, each decoding the video by itself, every sampled
frame embedded by PyTorch, one OCR engine (``MCR_INDEX_BESIDE=0 MCR_CLIP_SHARE=0
MCR_ONNX_IMAGES=0 MCR_INDEX_ONEPASS=0 MCR_OCR_WORKERS=1``). In one pass (the default): one
decode of each chunk feeds the frame stages (shots, on-screen text, embeddings), which work on
it at the same time while the next chunk is decoded; the speech stage in a thread beside them;
the CLIP image tower on ONNX Runtime (from its recorded graph alone, without loading PyTorch,
once a first run has exported it: the run begins by embedding two seconds of frames so that it
has); frames that look the same as the last one read or embedded sharing its result. Each
build runs in its own process on a fresh database and reports seconds per stage, frames sampled
and processed, wall time, real-time factor, CPU time (all threads; divided by the cores it is
the best wall time this work allows) and peak memory; then the two indexes are compared:
transcript sentences and shot cuts equal, on-screen text at the same times within one sampling
step, embeddings within 1e-4 cosine.

The video is the first ``--minutes`` of the perception benchmark's long video (speech
throughout, a title each minute, a frame counter drawn on every frame), or with ``--real``
the clips of ``../shared/media`` joined and repeated to that length (motion in every frame).
Frame embeddings use a ViT-B-32 with random weights when no CLIP weights are here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clip_weights import random_clip_folder
from long_video import make_long_video

HERE = Path(__file__).resolve().parent
STAGES = "shots,transcript,ocr,embeddings"
MEDIA = HERE.parent.parent / "shared" / "media"


def child_build(video_path: str, db: str) -> dict:
    import resource

    from mcr.media.video import Video
    from mcr.memory import Memory, VideoIndex

    video = Video(video_path)
    t0, cpu0 = time.perf_counter(), time.process_time()
    reports = VideoIndex(video, Memory(db)).build(STAGES.split(","))
    wall = time.perf_counter() - t0
    return {
        "wall": wall,
        "cpu": time.process_time() - cpu0,  # every thread of the build
        "duration": video.duration,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "stages": {r.stage: {"seconds": r.seconds, "status": r.status, "info": r.info} for r in reports},
    }


def warm(video_path: str) -> dict:
    """Embed two seconds of frames once, so the CLIP image graph is exported and recorded before
    the timed builds (a one-time cost per weights, as the first index on a machine pays it)."""
    from mcr.media.video import Video
    from mcr.tools.clip import EmbeddingStage
    from mcr.types import TimeSpan

    stage = EmbeddingStage()
    stage.run_chunk(Video(video_path), TimeSpan(0, 2))
    return {"images": type(stage.images()).__name__}


def compare(video_path: str, staged_db: str, one_pass_db: str) -> dict:
    import numpy as np

    from mcr.media.video import Video
    from mcr.memory import Memory, VideoIndex

    video = Video(video_path)
    staged, one_pass = (
        VideoIndex(video, Memory(staged_db, readonly=True)),
        VideoIndex(video, Memory(one_pass_db, readonly=True)),
    )
    out = {}
    for stage in ("transcript", "shots"):
        a = [(e.span.to_list(), e.text) for e in staged.entries(stage)]
        b = [(e.span.to_list(), e.text) for e in one_pass.entries(stage)]
        out[stage] = "equal" if a == b else f"DIFFER ({len(a)} vs {len(b)})"
    step = 2.0  # the OCR sampling step (0.5 fps)
    a = sorted((e.text, e.span.start) for e in staged.entries("ocr"))
    b = sorted((e.text, e.span.start) for e in one_pass.entries("ocr"))
    same = len(a) == len(b) and all(x[0] == y[0] and abs(x[1] - y[1]) <= step for x, y in zip(a, b))
    out["ocr"] = "equal within one step" if same else f"DIFFER ({len(a)} vs {len(b)} lines)"
    ea = np.concatenate([arr for _, arr in staged.arrays("embeddings")])
    eb = np.concatenate([arr for _, arr in one_pass.arrays("embeddings")])
    if ea.shape != eb.shape:
        out["embeddings"] = f"DIFFER (shapes {ea.shape} vs {eb.shape})"
    else:
        worst = float(1 - (ea[:, 1:] * eb[:, 1:]).sum(1).min())
        out["embeddings"] = f"{'within' if worst <= 1e-4 else 'BEYOND'} 1e-4 cosine (worst {worst:.1e})"
    return out


def run_child(args: list[str], env: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=7200,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"child {args[0]} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def make_video(work: Path, minutes: float, real: bool) -> Path:
    if not real:
        whole = make_long_video(work / f"long_{max(10, int(minutes))}min.mp4", minutes=max(10, int(minutes)))
        out = work / f"first_{minutes:g}min.mp4"
        if not out.exists():
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(whole), "-t", str(minutes * 60), "-c", "copy",
                            str(out)], check=True)  # fmt: skip
        return out
    out = work / f"real_{minutes:g}min.mp4"
    if out.exists():
        return out
    clips = sorted(MEDIA.glob("*.mp4"))
    parts = work / "real_parts"
    parts.mkdir(exist_ok=True)
    same = []
    for clip in clips:  # one size, rate and audio layout, so they join with a plain concat
        target = parts / clip.name
        if not target.exists():
            subprocess.run(
                ["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
                 "-map", "0:v", "-map", "0:a?", "-map", "1:a", "-shortest", "-vf",
                 "scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2,fps=25",
                 "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-ar", "16000", "-ac", "1", str(target)],
                check=True,
            )  # fmt: skip
        same.append(target)
    listing = parts / "list.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in same) * 200)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-t",
                    str(minutes * 60), "-c", "copy", str(out)], check=True)  # fmt: skip
    return out


def build_both(video: Path, work: Path, env: dict) -> tuple[dict, dict]:
    """The index of ``video`` built stage by stage and in one pass (each in its own process, on a
    fresh database in ``work``), and the comparison of the two: ``(results, checks)``."""
    results = {}
    run_child(["warm", str(video)], env)
    staged = {
        "MCR_INDEX_BESIDE": "0",
        "MCR_CLIP_SHARE": "0",
        "MCR_ONNX_IMAGES": "0",
        "MCR_INDEX_ONEPASS": "0",
        "MCR_OCR_WORKERS": "1",
    }
    for way, extra in (("staged", staged), ("one-pass", {})):
        db = work / f"index_build_{way}.db"
        for f in work.glob(f"{db.name}*"):
            f.unlink()
        results[way] = run_child(["build", str(video), str(db)], {**env, **extra})
    checks = run_child(
        ["compare", str(video), str(work / "index_build_staged.db"), str(work / "index_build_one-pass.db")], env
    )
    return results, checks


def table(video: Path, results: dict, checks: dict) -> list[str]:
    """The figures of :func:`build_both` as lines of text. ``work s``: the time a stage spent on
    its own frames in the one pass (the pass's stages share the wall time of their walk)."""
    duration = results["staged"]["duration"]
    lines = [f"index of {video.name} ({duration / 60:.1f} min), stages {STAGES}"]
    lines.append(f"{'':12} {'staged s':>10} {'1-pass s':>10} {'work s':>8}  frames (staged -> one pass)")
    for stage in STAGES.split(","):
        o, n = results["staged"]["stages"][stage], results["one-pass"]["stages"][stage]

        def frames(info: dict) -> str:
            done = ", ".join(f"{v} {k.removeprefix('frames_')}" for k, v in info.items() if k.startswith("frames_"))
            return f"{info['frames']} sampled" + (f", {done}" if done else "") if "frames" in info else "-"

        work = n["info"].get("seconds_work")
        work_s = f"{work:8.1f}" if isinstance(work, (int, float)) else f"{'-':>8}"
        lines.append(
            f"{stage:12} {o['seconds']:10.1f} {n['seconds']:10.1f} {work_s}  {frames(o['info'])} -> {frames(n['info'])}"
        )
    for way in ("staged", "one-pass"):
        r = results[way]
        cores = os.cpu_count() or 1
        lines.append(
            f"{way}: wall {r['wall']:.1f} s, {duration / r['wall']:.1f}x real time, peak {r['peak_mib']:.0f} MiB; "
            f"CPU {r['cpu']:.0f} s (with all {cores} cores busy the whole time: {r['cpu'] / cores:.0f} s, "
            f"{duration * cores / r['cpu']:.1f}x real time)"
        )
    lines.append(
        f"speed-up {results['staged']['wall'] / results['one-pass']['wall']:.2f}x; the same index? {json.dumps(checks)}"
    )
    return lines


def bench_env(work: Path) -> dict:
    """Two speech threads, and a ViT-B-32 with random weights when no CLIP model is named."""
    env = {"MCR_ASR_THREADS": os.environ.get("MCR_ASR_THREADS", "2")}
    if not os.environ.get("MCR_CLIP_MODEL") and not os.environ.get("MCR_CLIP_PRETRAINED"):
        env["MCR_CLIP_MODEL"] = str(random_clip_folder(work / "clip-vit-b-32-random"))
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "mcr-perception-bench"))
    ap.add_argument("--real", action="store_true", help="real footage from ../shared/media instead")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    video = make_video(work, args.minutes, args.real)
    results, checks = build_both(video, work, bench_env(work))
    print("\n".join(table(video, results, checks)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, rest = sys.argv[2], sys.argv[3:]
        out = child_build(*rest) if kind == "build" else warm(*rest) if kind == "warm" else compare(*rest)
        print(json.dumps(out))
        sys.exit(0)
    sys.exit(main())
