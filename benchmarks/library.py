"""Library benchmark: the memory of H hours of video, built through the real store, searched from disk.

    python benchmarks/library.py --hours 10 [--json] [--queries 100] [--dir DIR]

Each hour is one video at the real rates: a frame embedding a second (dim 512, as CLIP's),
stored as the index's ``embeddings`` stage stores them (a table per minute, through
``VideoIndex.append``), and 1,000 transcript sentences plus 1,000 on-screen texts (dim 384,
as all-MiniLM-L6-v2's), stored as entries with their embeddings. The vectors are synthetic
with the clustered structure of real ones: an hour holds a few dozen scenes (frames near a
scene's centre, drifting) and topics (sentences near a topic's centre), drawn from a few
thousand shared ones. After each hour the on-disk index takes the hour's vectors, as
``mcr-agent index`` does after each video.

Measured: build time, disk (database and vectors), cold start (a new process, from its start
to its first result), latency library-wide (a query of each collection) and filtered to one
video, recall@10 of the index against exact search over the same stored vectors, adding one
more hour, and the peak resident memory of the processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

FRAME_DIM, TEXT_DIM = 512, 384
SECONDS = 3600
TEXTS = 1000  # transcript sentences an hour, and as many on-screen texts
ENCODER = "bench-text-384"
DRIFT = 0.5 / np.sqrt(90 * FRAME_DIM)  # a step of the walk: about 0.5 from the centre after a 90 s scene
NOISE = 0.35 / np.sqrt(FRAME_DIM)  # frame to frame: a vector of length about 0.35


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def centres(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _unit(rng.standard_normal((3000, FRAME_DIM))), _unit(rng.standard_normal((3000, TEXT_DIM)))


def hour_vectors(hour: int, scenes: np.ndarray, topics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One hour's frame embeddings (a second each) and text embeddings (2 x TEXTS)."""
    rng = np.random.default_rng(1000 + hour)
    cuts = np.sort(rng.choice(np.arange(1, SECONDS), size=40, replace=False))
    scene = np.searchsorted(cuts, np.arange(SECONDS), side="right")
    picked = scenes[rng.integers(0, len(scenes), 41)]
    # within a scene the frames drift from its centre (a random walk that starts again at each cut)
    # and vary frame to frame: about 0.85 cosine to the centre, as a shot's CLIP embeddings are
    walk = np.cumsum(rng.standard_normal((SECONDS, FRAME_DIM)).astype(np.float32) * DRIFT, axis=0)
    drift = walk - walk[np.r_[0, cuts][scene]]
    noise = NOISE * rng.standard_normal((SECONDS, FRAME_DIM)).astype(np.float32)
    frames = _unit(picked[scene] + drift + noise)
    own = topics[rng.integers(0, len(topics), 30)]
    texts = _unit(own[rng.integers(0, 30, 2 * TEXTS)] + 0.6 * rng.standard_normal((2 * TEXTS, TEXT_DIM)) / 20)
    return frames, texts


def add_hour(memory, hour: int, scenes: np.ndarray, topics: np.ndarray) -> None:
    from mcr.memory import MemoryEntry, VideoIndex
    from mcr.memory.build import ChunkResult
    from mcr.memory.vectors import sync_store
    from mcr.types import TimeSpan

    frames, texts = hour_vectors(hour, scenes, topics)
    vid = f"video-{hour:05d}"
    video = SimpleNamespace(id=vid, path=Path(f"{vid}.mp4"), duration=float(SECONDS), info=lambda: {})
    index = VideoIndex(video, memory)
    stage = SimpleNamespace(name="embeddings", version="bench", embed=False)
    times = np.arange(SECONDS, dtype=np.float32)
    for start in range(0, SECONDS, 60):  # the stage's chunks: a minute each
        table = np.concatenate([times[start : start + 60, None], frames[start : start + 60]], axis=1)
        index.append(stage, TimeSpan(start, start + 60), ChunkResult(arrays={float(start): table}))
    step = SECONDS / TEXTS
    entries = [
        MemoryEntry(f"{kind} {i} of {vid}", kind, video_id=vid, span=TimeSpan(i * step, i * step + step))
        for kind in ("transcript", "ocr")
        for i in range(TEXTS)
    ]
    memory.store.add_many(entries, embeddings=texts, encoder=ENCODER)
    sync_store(memory.store)


QUERY_PROCESS = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
from mcr.memory.store import MemoryStore
from mcr.memory.vectors import FRAMES, StoreVectors
db, encoder, queries, video, recall = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
store = MemoryStore(db, readonly=True)
frames, texts = StoreVectors(store, FRAMES), StoreVectors(store, "entry:" + encoder)
with np.load(queries) as z:
    qf, qt = z["frames"], z["texts"]
frames.search(qf[0], 10)
texts.search(qt[0], 10)
out = {"first_result_s": time.perf_counter() - t0}
if sys.argv[6] == "cold":
    print(json.dumps(out))
    sys.exit(0)
wide, narrow, found = [], [], []
for f, t in zip(qf, qt):
    a = time.perf_counter()
    r1, _, _ = frames.search(f, 10)
    r2, _, _ = texts.search(t, 10)
    wide.append(time.perf_counter() - a)
    found.append((r1, r2))
    a = time.perf_counter()
    frames.search(f, 10, video_ids=[video])
    texts.search(t, 10, video_ids=[video])
    narrow.append(time.perf_counter() - a)
out["wide"], out["narrow"] = wide, narrow
if recall:  # exact top-10 over every stored vector, list by list (read, not mapped)
    hits = []
    for which, coll, qs in ((0, frames, qf), (1, texts, qt)):
        best = [(np.full(10, -np.inf), np.zeros(10, np.int64), np.zeros(10, np.int64)) for _ in qs]
        for vecs, rec in coll.ivf.scan_all():
            s = vecs @ qs.T
            for i in range(len(qs)):
                top = np.argpartition(-s[:, i], min(9, len(s) - 1))[:10]
                sc = np.concatenate([best[i][0], s[top, i]])
                refs = np.concatenate([best[i][1], rec["ref"][top]])
                rows = np.concatenate([best[i][2], rec["row"][top]])
                keep = np.argsort(-sc)[:10]
                best[i] = (sc[keep], refs[keep], rows[keep])
        for i, (r1, r2) in enumerate(found):
            got = (r1, r2)[which]
            truth = set(zip(best[i][1].tolist(), best[i][2].tolist()))
            hits.append(len(truth & set(zip(got["ref"].tolist(), got["row"].tolist()))) / 10)
    out["recall_at_10"] = float(np.mean(hits))
out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def _query_process(db: Path, queries: Path, video: str, recall: bool, mode: str = "all") -> dict:
    started = time.perf_counter()
    spawn = subprocess.Popen(
        [sys.executable, "-c", QUERY_PROCESS, str(db), ENCODER, str(queries), video, "1" if recall else "0", mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = spawn.communicate()
    if spawn.returncode != 0:
        raise SystemExit(f"the query process failed ({spawn.returncode})")
    result = json.loads(out)
    result["process_s"] = time.perf_counter() - started
    return result


def _disk_mib(db: Path) -> float:
    files = [p for p in db.parent.rglob("*") if p.is_file() and p.name.startswith(db.name)]
    return sum(p.stat().st_size for p in files) / 2**20


def run(hours: int, n_queries: int, folder: Path, measure_only: bool = False) -> dict:
    from mcr.memory import Memory

    scenes, topics = centres()
    db = folder / "memory.db"
    memory = Memory(db, encoder=SimpleNamespace(name=ENCODER, dim=TEXT_DIM))
    t0 = time.perf_counter()
    for hour in range(0 if measure_only else hours):
        add_hour(memory, hour, scenes, topics)
        if hours >= 20 and (hour + 1) % max(1, hours // 10) == 0:
            print(f"  {hour + 1} hours in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(7)
    qf, qt = [], []
    for _ in range(n_queries):  # near what some hour holds, as a real query is
        frames, texts = hour_vectors(int(rng.integers(0, hours)), scenes, topics)
        qf.append(_unit(frames[rng.integers(0, SECONDS)] + 0.05 * rng.standard_normal(FRAME_DIM)))
        qt.append(_unit(texts[rng.integers(0, len(texts))] + 0.05 * rng.standard_normal(TEXT_DIM)))
    queries = folder / "queries.npz"
    np.savez(queries, frames=np.array(qf), texts=np.array(qt))
    cold = _query_process(db, queries, f"video-{hours // 2:05d}", recall=False, mode="cold")
    result = _query_process(db, queries, f"video-{hours // 2:05d}", recall=True)
    t1 = time.perf_counter()
    if not measure_only:  # the library measured again holds this hour already
        add_hour(memory, hours, scenes, topics)
    add_hour_s = time.perf_counter() - t1
    memory.close()
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ms = lambda xs, p: float(np.percentile(np.array(xs) * 1e3, p))  # noqa: E731
    return {
        "hours": hours,
        "vectors": hours * (SECONDS + 2 * TEXTS),
        "build_s": None if measure_only else round(build_s, 1),
        "disk_mib": round(_disk_mib(db), 1),
        "cold_start_s": round(cold["process_s"], 3),
        "p50_ms": round(ms(result["wide"], 50), 2),
        "p99_ms": round(ms(result["wide"], 99), 2),
        "filtered_p50_ms": round(ms(result["narrow"], 50), 2),
        "filtered_p99_ms": round(ms(result["narrow"], 99), 2),
        "recall_at_10": round(result["recall_at_10"], 4),
        "add_hour_s": None if measure_only else round(add_hour_s, 2),
        "peak_rss_mib": round(max(own_rss, result["peak_rss_mib"]), 1),
        "query_process_rss_mib": round(result["peak_rss_mib"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=int, default=10)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--dir", help="build here (default: a new temporary folder)")
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="measure the library already built in --dir (no build, no added hour)",
    )
    args = parser.parse_args()
    if args.measure_only and not (args.dir and (Path(args.dir) / "memory.db").exists()):
        parser.error("--measure-only needs --dir naming a folder this benchmark built")
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mcr-bench-library-"))
    folder.mkdir(parents=True, exist_ok=True)
    result = run(args.hours, args.queries, folder, args.measure_only)
    if args.json:
        print(json.dumps(result))
        return
    print(f"library of {args.hours} hours in {folder} (2 cores: {os.cpu_count()} seen)")
    for key, value in result.items():
        print(f"  {key:<24} {value}")
    print("cold start: a new process, from its start to its first result (both collections)")


if __name__ == "__main__":
    main()
