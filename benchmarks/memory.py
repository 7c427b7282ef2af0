"""Memory benchmark: insert throughput with embeddings, and top-10 search latency at scale.

    python benchmarks/memory.py [--sizes 10000,100000,1000000] [--queries 200]

1. Insert throughput: short sentences written to a fresh store and embedded with the
   real all-MiniLM-L6-v2 in batches (entries/s, embedding included).
2. Search: stores of each size are filled with vectors made from real MiniLM
   embeddings (a sentence embedding plus a share of another and a little noise, so the
   collection has the clustered structure of real text), loaded back through
   ``Memory``'s vector index, and queried top-10. The baseline is brute-force numpy
   (matrix product + argpartition) over the very same vectors, in the same run; recall@10
   of the index against brute force is printed with each size.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mcr.memory import Memory, MemoryEntry
from mcr.memory.vectors import exact_top_k

SUBJECTS = [
    "a man",
    "a woman",
    "the child",
    "two dogs",
    "the chef",
    "a cyclist",
    "the goalkeeper",
    "an old car",
    "the teacher",
    "a red bus",
    "the crowd",
    "a cat",
    "the pilot",
    "a nurse",
    "the band",
    "a robot",
]
ACTIONS = [
    "opens the door",
    "crosses the street",
    "cooks pasta",
    "reads a letter",
    "scores a goal",
    "waves at",
    "drinks coffee",
    "repairs a bicycle",
    "sings on stage",
    "jumps into the pool",
    "paints a wall",
    "writes on the board",
    "runs through the rain",
    "climbs a ladder",
    "feeds the birds",
    "falls asleep",
]
PLACES = [
    "in the kitchen",
    "at the station",
    "in the park",
    "on the bridge",
    "at night",
    "near the river",
    "inside the stadium",
    "on the rooftop",
]


def sentences(n: int) -> list[str]:
    combos = itertools.cycle(itertools.product(SUBJECTS, ACTIONS, PLACES))
    return [f"{s} {a} {p} (note {i})" for i, (s, a, p) in zip(range(n), combos)]


def synthetic(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        a = base[rng.integers(0, len(base), m)]
        b = base[rng.integers(0, len(base), m)]
        v = a + 0.35 * b + 0.04 * rng.standard_normal(a.shape).astype(np.float32)
        out[start : start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def fill_store(memory: Memory, vecs: np.ndarray, name: str) -> None:
    for start in range(0, len(vecs), 20_000):
        chunk = vecs[start : start + 20_000]
        entries = [
            MemoryEntry(f"entry {start + i}", "observation", video_id=f"v{(start + i) % 50}") for i in range(len(chunk))
        ]
        memory.store.add_many(entries, embeddings=chunk, encoder=name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--insert", type=int, default=2000, help="entries for the insert-throughput test")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="mcr-bench-memory-"))

    memory = Memory(tmp / "insert.db")
    encoder = memory.encoder
    encoder.encode(["warm up"])
    texts = sentences(args.insert)
    t0 = time.perf_counter()
    memory.write_many([MemoryEntry(t, "observation", video_id="v") for t in texts])
    t_write = time.perf_counter() - t0
    memory.embed_pending(batch=256)
    t_all = time.perf_counter() - t0
    print(
        f"insert: {args.insert} entries, {args.insert / t_write:,.0f} entries/s written, "
        f"{args.insert / t_all:,.0f} entries/s with embeddings (all-MiniLM-L6-v2, batches of 256)"
    )
    base = encoder.encode(sentences(3000))
    queries = encoder.encode(
        [f"{s} {a} somewhere" for s, a in zip(SUBJECTS * 20, ACTIONS[3:] + ACTIONS)][: args.queries]
    )
    memory.close()

    print(f"\n{'entries':>10} {'index':>14} {'ms/query':>9} {'numpy ms/query':>15} {'speed-up':>9} {'recall@10':>10}")
    for n in sizes:
        vecs = synthetic(base, n, rng)
        mem = Memory(tmp / f"search-{n}.db", encoder=encoder)
        fill_store(mem, vecs, encoder.name)
        t0 = time.perf_counter()
        index = mem._index()
        index.search(queries[0], 10)  # builds the approximate index where the size calls for one
        build_s = time.perf_counter() - t0
        ids_all, vecs_all = index._ids, index._vecs
        lat, found = [], []
        for q in queries:
            t = time.perf_counter()
            ids, _ = index.search(q, 10)
            lat.append(time.perf_counter() - t)
            found.append(ids)
        base_lat, truth = [], []
        for q in queries:
            t = time.perf_counter()
            ids, _ = exact_top_k(ids_all, vecs_all, q, 10)
            base_lat.append(time.perf_counter() - t)
            truth.append(ids)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
        ms, base_ms = statistics.median(lat) * 1e3, statistics.median(base_lat) * 1e3
        kind = "IVF (faiss)" if n >= index.ann_threshold else "exact"
        print(
            f"{n:>10,} {kind:>14} {ms:9.2f} {base_ms:15.2f} {base_ms / ms:8.1f}x {recall:10.3f}"
            f"   (load + index build {build_s:.1f} s)"
        )
        mem.close()
        (tmp / f"search-{n}.db").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
