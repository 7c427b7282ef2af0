"""Perception benchmark on a long video: frame sampling, overview, ASR, index build, grounding.

    python benchmarks/perception.py [--minutes 60] [--work DIR] [--parts abcdefg]

The video is made here once (and reused from --work): 640x360, 30 fps H.264 with a
keyframe every 250 frames, espeak-ng speech over the whole length, a title drawn each
minute, a colour change every 90 s, and the frame number drawn as 17 black/white bars
in a strip along the top, so every sampled frame can be checked against the frame it
should be.

(a) exact 1 fps sampling (the frame on screen at t = 0, 1, 2 ... s) with
    ``mcr.tools.sampling.stream_frames`` against decord ``get_batch`` in chunks of 64,
    PyAV sequential decoding and ffmpeg's ``select`` filter, all in this run; each
    method runs in its own process, which reports its peak memory; the bars of every
    frame are read back and compared with the frame numbers asked for.
(b) a coarse overview of the whole video from its keyframes alone.
(c) ASR real-time factor with faster-whisper tiny.en int8 on 2 threads (two one-thread
    workers, each on part of every chunk), and its peak memory, for the first 10 minutes
    and for the whole video; and the Whisper encoder alone on full 30 s windows, the
    ceiling for speech as dense as this (voice-activity filtering drops nothing).
(d) building the index (shots, transcript, on-screen text, frame embeddings) of the
    whole video stage by stage and in one pass (one decode for the frame
    stages, speech beside them), with the two indexes compared (``index_build.py``); frame
    embeddings use a ViT-B-32 with random weights when no CLIP weights are on the machine
    (the cost is that of the real model; the scores are not).
(e) ``temporal_grounding`` latency on the built index.
(f) OCR engines on drawn text: rapidocr-onnxruntime against tesseract (when installed).
(g) shot boundaries on a labelled set of real footage (``shots.py``): MCR's ``shots`` stage
    against PySceneDetect and ffmpeg's scene filter; its own table (``--parts g`` alone
    makes no long video).
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

from index_build import bench_env, build_both, table
from long_video import FPS, SIZE, make_long_video, read_frame_number
from ocr_engines import child_ocr_engines


def peak_mib() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def wanted_times(video, fps: float = 1.0):
    import numpy as np

    return np.arange(int(video.duration * fps)) / fps


def check_codes(codes: list[int], n: int) -> str:
    want = [k * FPS for k in range(n)]
    wrong = sum(1 for a, b in zip(codes, want) if a != b) + abs(len(codes) - n)
    return "exact" if wrong == 0 else f"{wrong} of {n} wrong"


def child_ours(video_path: str) -> dict:
    from mcr.media.video import Video
    from mcr.tools.sampling import stream_frames

    video = Video(video_path)
    times = wanted_times(video)
    t0 = time.perf_counter()
    codes = [read_frame_number(img) for _, img in stream_frames(video, times)]
    return {"seconds": time.perf_counter() - t0, "frames": len(codes), "check": check_codes(codes, len(times))}


def child_decord(video_path: str) -> dict:
    import decord
    import numpy as np

    t0 = time.perf_counter()
    reader = decord.VideoReader(video_path, ctx=decord.cpu(0))
    starts = np.asarray(reader.get_frame_timestamp(np.arange(len(reader))))[:, 0]
    times = np.arange(int(len(reader) / reader.get_avg_fps()))
    idx = np.searchsorted(starts, times + 5e-4, side="right") - 1
    codes = []
    for i in range(0, len(idx), 64):
        batch = reader.get_batch([int(j) for j in idx[i : i + 64]]).asnumpy()
        codes += [read_frame_number(img) for img in batch]
    return {"seconds": time.perf_counter() - t0, "frames": len(codes), "check": check_codes(codes, len(times))}


def child_pyav(video_path: str) -> dict:
    import av

    t0 = time.perf_counter()
    codes = []
    with av.open(video_path) as container:
        stream = container.streams.video[0]
        tb = float(stream.time_base)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        n = int(float(stream.duration * stream.time_base)) if stream.duration else int(container.duration / 1e6)
        k, prev = 0, None
        for frame in container.decode(stream):
            t = frame.pts * tb - start
            while k < n and t > k + 5e-4:
                codes.append(read_frame_number(prev.to_ndarray(format="rgb24")))
                k += 1
            prev = frame
        while k < n and prev is not None:
            codes.append(read_frame_number(prev.to_ndarray(format="rgb24")))
            k += 1
    return {"seconds": time.perf_counter() - t0, "frames": len(codes), "check": check_codes(codes, n)}


def child_ffmpeg(video_path: str) -> dict:
    import numpy as np

    w, h = SIZE
    t0 = time.perf_counter()
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-threads",
        "2",
        "-i",
        video_path,
        "-vf",
        f"select=not(mod(n\\,{FPS}))",
        "-vsync",
        "0",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "pipe:",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    codes = []
    size = w * h * 3
    while True:
        buf = proc.stdout.read(size)
        if len(buf) < size:
            break
        codes.append(read_frame_number(np.frombuffer(buf, np.uint8).reshape(h, w, 3)))
    proc.wait()
    n = int(len(codes))
    return {"seconds": time.perf_counter() - t0, "frames": n, "check": check_codes(codes, n)}


def child_overview(video_path: str) -> dict:
    from mcr.media.video import Video
    from mcr.tools.sampling import keyframes

    video = Video(video_path)
    t0 = time.perf_counter()
    stamps = [t for t, _ in keyframes(video, max_pixels=160 * 90)]
    return {
        "seconds": time.perf_counter() - t0,
        "frames": len(stamps),
        "check": f"every {video.duration / max(1, len(stamps)):.1f} s",
    }


def child_asr(video_path: str, minutes: float) -> dict:
    from mcr.media.video import Video
    from mcr.tools.asr import TranscriptStage
    from mcr.types import TimeSpan

    video = Video(video_path)
    stage = TranscriptStage(device="cpu")
    end = min(video.duration, minutes * 60)
    stage.run_chunk(video, TimeSpan(0, 1))  # load the model outside the timing
    t0 = time.perf_counter()
    sentences, cursor = 0, 0.0
    while cursor < end - 1e-6:
        span = TimeSpan(cursor, min(end, cursor + stage.chunk_s))
        sentences += len(stage.run_chunk(video, span).entries)
        cursor = span.end
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "audio_s": end, "rtf": end / seconds, "sentences": sentences}


def child_encoder(video_path: str) -> dict:
    """The Whisper encoder alone on eight full 30 s windows: the ceiling for dense speech,
    where voice-activity filtering drops nothing and every window is encoded."""
    import ctranslate2
    import numpy as np
    from faster_whisper import WhisperModel

    from mcr.media.video import Video
    from mcr.tools.asr import SAMPLE_RATE, _threads, resolve_model
    from mcr.types import TimeSpan

    audio = Video(video_path).audio(TimeSpan(0, 240), sr=SAMPLE_RATE)
    model = WhisperModel(resolve_model(), device="cpu", compute_type="int8", cpu_threads=_threads())
    window = 30 * SAMPLE_RATE
    feats = np.stack([model.feature_extractor(audio[i * window : (i + 1) * window])[..., :3000] for i in range(8)])
    batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats.astype(np.float32)))
    model.model.encode(batch)
    t0 = time.perf_counter()
    model.model.encode(batch)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rtf": 240 / seconds}


QUERIES = [
    "the harbour master repairs a broken bridge",
    "a tired pilot waits for the last train",
    "the museum guide explains how the engine works",
    "part twelve",
    "the old baker paints the fence green",
    "two engineers on the frozen lake",
    "reads the morning news in the quiet library",
    "part 40",
    "cooks soup for the neighbours after the storm",
    "the mountain guide checks the weather report",
    "a street musician near the lighthouse",
    "the night nurse plans a trip to the coast",
    "counting boxes in the warehouse",
    "a story about the war",
    "the ferry on the river",
    "part 7",
    "engineers explain the engine",
    "a trip to the coast before sunrise",
    "the fence is painted green",
    "the last train at the central station",
    "news read in the morning",
    "soup for the neighbours",
    "behind the town hall",
    "the weather report after the storm",
]


def child_grounding(video_path: str, db: str) -> dict:
    import statistics

    from mcr.media.video import Video
    from mcr.memory import Memory
    from mcr.tools import ToolContext, ToolRegistry
    from mcr.tools.grounding import temporal_grounding
    from mcr.types import ToolCall

    ctx = ToolContext(video=Video(video_path), memory=Memory(db))
    registry = ToolRegistry([temporal_grounding])
    t0 = time.perf_counter()
    first = registry.execute(ToolCall("temporal_grounding", {"query": "warm up", "k": 5}, "c0"), ctx)
    warm = time.perf_counter() - t0
    times = []
    for i, q in enumerate(QUERIES):  # all different: nothing is reused from an earlier query but the index
        t0 = time.perf_counter()
        result = registry.execute(ToolCall("temporal_grounding", {"query": q, "k": 5}, f"c{i}"), ctx)
        times.append(time.perf_counter() - t0)
        assert not result.is_error, result.text
    times.sort()
    return {
        "first_s": warm,
        "median_ms": 1000 * statistics.median(times),
        "p90_ms": 1000 * times[int(0.9 * (len(times) - 1))],
        "signals": first.metadata.get("signals"),
        "queries": len(times),
    }


CHILDREN = {
    "ours": child_ours,
    "decord": child_decord,
    "pyav": child_pyav,
    "ffmpeg": child_ffmpeg,
    "overview": child_overview,
}


def run_child(*args: str, env: dict | None = None, timeout: float = 7200) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(lines[-1])


def child_main(args: list[str]) -> int:
    name, rest = args[0], args[1:]
    if name in CHILDREN:
        out = CHILDREN[name](rest[0])
    elif name == "asr":
        out = child_asr(rest[0], float(rest[1]))
    elif name == "encoder":
        out = child_encoder(rest[0])
    elif name == "grounding":
        out = child_grounding(rest[0], rest[1])
    elif name == "ocr_engines":
        out = child_ocr_engines()
    else:
        raise SystemExit(f"unknown part {name}")
    out["peak_mib"] = peak_mib()
    print(json.dumps(out))
    return 0


def row(cols: list[str], widths: list[int]) -> str:
    return " | ".join(str(c).ljust(w) for c, w in zip(cols, widths))


def part_a(video: Path, add) -> None:
    """(a) Decoding one frame a second: ours against decord, PyAV and ffmpeg."""
    results = {m: run_child(m, str(video)) for m in ("ours", "decord", "pyav", "ffmpeg")}
    best = min((r["seconds"] for m, r in results.items() if m != "ours" and "seconds" in r), default=None)
    labels = {
        "ours": "(a) 1 fps exact: mcr stream_frames",
        "decord": "(a) 1 fps: decord get_batch, chunks of 64",
        "pyav": "(a) 1 fps: PyAV sequential decode",
        "ffmpeg": "(a) 1 fps: ffmpeg select, -threads 2",
    }
    for m, r in results.items():
        if "error" in r:
            add([labels[m], "-", "-", "-", r["error"]])
            continue
        ratio = f"{best / r['seconds']:.2f}x fastest" if m == "ours" and best else f"{r['frames']} frames"
        add([labels[m], f"{r['seconds']:.1f}", ratio, f"{r['peak_mib']:.0f}", r["check"]])


def part_c(video: Path, minutes_long: int, threads: str, add) -> None:
    """(c) Speech: the transcript stage at 10 minutes and the whole video, and the encoder's ceiling."""
    for minutes in (10, minutes_long):
        r = run_child("asr", str(video), str(minutes), env={"MCR_ASR_THREADS": threads})
        if "error" in r:
            add([f"(c) ASR tiny.en int8, {minutes} min", "-", "-", "-", r["error"]])
            continue
        add(
            [
                f"(c) ASR tiny.en int8 {threads} thr, {minutes} min",
                f"{r['seconds']:.1f}",
                f"{r['rtf']:.1f}x real time",
                f"{r['peak_mib']:.0f}",
                f"{r['sentences']} sentences",
            ]
        )
    r = run_child("encoder", str(video), env={"MCR_ASR_THREADS": threads})
    if "error" not in r:
        add(
            [
                "(c) ceiling: whisper encoder alone, 240 s",
                f"{r['seconds']:.1f}",
                f"{r['rtf']:.1f}x real time",
                f"{r['peak_mib']:.0f}",
                "dense speech: every 30 s window encoded",
            ]
        )


def part_f(add) -> None:
    """(f) On-screen text: the OCR engines on drawn-text frames."""
    r = run_child("ocr_engines")
    for engine in ("rapidocr", "tesseract"):
        if engine in r:
            add(
                [
                    f"(f) OCR {engine}, 8 drawn-text frames",
                    f"{r[engine]['s_per_frame']:.2f}",
                    "s/frame",
                    "",
                    f"{r[engine]['words']:.0%} of words found",
                ]
            )
        else:
            add([f"(f) OCR {engine}", "-", "-", "-", r.get("error", "not installed")])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return child_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "mcr-perception-bench"))
    ap.add_argument("--parts", default="abcdefg", help="which parts to run (letters a-g)")
    ap.add_argument("--make-only", action="store_true")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if "g" in args.parts:
        from shots import shots_table

        print(shots_table(work / "shot-set") + "\n", flush=True)
        if not set(args.parts) - {"g"}:
            return 0
    t0 = time.perf_counter()
    video = make_long_video(work / f"long_{args.minutes}min.mp4", args.minutes)
    print(
        f"video {video} ({args.minutes} min, {SIZE[0]}x{SIZE[1]}, {FPS} fps) ready in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    if args.make_only:
        return 0
    threads = os.environ.get("MCR_ASR_THREADS") or "2"
    widths = [44, 10, 14, 10, 30]
    lines = [row(["measure", "seconds", "ratio/rate", "peak MiB", "check"], widths), "-" * 118]

    def add(cols):
        lines.append(row(cols, widths))
        print(lines[-1], flush=True)

    print(f"{os.cpu_count()} CPUs; load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
    print(lines[0], flush=True)
    if "a" in args.parts:
        part_a(video, add)
    if "b" in args.parts:
        r = run_child("overview", str(video))
        add(
            [
                "(b) overview from keyframes",
                f"{r.get('seconds', 0):.2f}",
                f"{r.get('frames', '-')} keyframes",
                f"{r.get('peak_mib', 0):.0f}",
                r.get("check", r.get("error", "")),
            ]
        )
    if "c" in args.parts:
        part_c(video, args.minutes, threads, add)
    db = work / "index_build_one-pass.db"  # the index built in one pass in (d), which (e) queries
    clip_env = {**bench_env(work), "MCR_ASR_THREADS": threads} if "d" in args.parts or "e" in args.parts else {}
    if "d" in args.parts:
        results, checks = build_both(video, work, clip_env)
        index_lines = table(video, results, checks)
        print("\n".join(index_lines), flush=True)
        lines.extend(["(d) " + line for line in index_lines])
    if "e" in args.parts:
        r = run_child("grounding", str(video), str(db), env=clip_env)
        if "error" in r:
            add(["(e) grounding query latency", "-", "-", "-", r["error"]])
        else:
            add(
                [
                    "(e) grounding query, median (p90)",
                    f"{r['median_ms'] / 1000:.3f}",
                    f"{r['median_ms']:.1f} ms ({r['p90_ms']:.1f})",
                    f"{r['peak_mib']:.0f}",
                    f"{r['queries']} queries; {'+'.join(r['signals'] or [])}",
                ]
            )
            add(["(e) grounding first query (loads caches)", f"{r['first_s']:.1f}", "", "", ""])
    if "f" in args.parts:
        part_f(add)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines.append(f"{os.cpu_count()} CPUs; load average at the end (1, 5, 15 min): {load}")
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
