"""The HTTP service under load, on 127.0.0.1: searches per second on an indexed video, and runs
per second with an instant model (the service's own cost), at 1, 4 and 16 clients.

    python benchmarks/serve.py [--searches 200] [--runs 48] [--workers 4]

Each client is a thread with its own httpx connection; latencies are per request (a run: from
POST to its result). Counts and time are bounded; the 1-client figure is the baseline the others
are compared with.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "media" / "boats.mp4"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--runs", type=int, default=48)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    import httpx
    from test_service import Served

    from mcr.run.testing import RecordingModel, answer
    from mcr.service.app import make_app

    instant = RecordingModel(lambda messages, tools, **o: answer("boats", evidence=["0-2"]), name="instant")
    with tempfile.TemporaryDirectory(prefix="mcr-serve-") as work:
        media = Path(work) / "media"
        media.mkdir()
        shutil.copy(CLIP, media / "boats.mp4")
        app = make_app(instant, [media], Path(work) / "m.db", workers=args.workers, queue_limit=64, trace_dir=False)
        with Served(app) as client:
            video = client.post("/v1/videos", json={"path": "boats.mp4"}).json()["video_id"]
            t0 = time.perf_counter()
            client.get(f"/v1/videos/{video}/search", params={"q": "boats"})  # the index is built here, once
            print(f"first search (index built): {time.perf_counter() - t0:.1f} s")
            base = client.base_url

            def search(c: httpx.Client) -> None:
                r = c.get(f"/v1/videos/{video}/search", params={"q": "a white sail", "k": 3})
                assert r.status_code == 200, r.text

            def run(c: httpx.Client) -> None:
                body = {"video": video, "question": "What is on the water?", "policy": "plain"}
                run_id = c.post("/v1/runs", json=body).json()["run_id"]
                while c.get(f"/v1/runs/{run_id}").json()["status"] not in ("finished", "error", "cancelled"):
                    time.sleep(0.01)

            print(
                f"\n{'load':8} {'clients':>7} {'requests':>8} {'per s':>8} {'x 1 client':>10} {'p50 ms':>8} {'p99 ms':>8}"
            )
            for name, job, total in (("search", search, args.searches), ("run", run, args.runs)):
                first = None
                for clients in (1, 4, 16):
                    rate, lat = load(base, job, clients, total)
                    first = first or rate
                    p50, p99 = statistics.median(lat), sorted(lat)[int(0.99 * (len(lat) - 1))]
                    print(
                        f"{name:8} {clients:7d} {len(lat):8d} {rate:8.1f} {rate / first:10.2f} "
                        f"{p50 * 1000:8.1f} {p99 * 1000:8.1f}"
                    )


def load(base, job, clients: int, total: int) -> tuple[float, list[float]]:
    import httpx

    latencies: list[float] = []
    lock = threading.Lock()
    each = max(1, total // clients)

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=120) as c:
            for _ in range(each):
                t = time.perf_counter()
                job(c)
                with lock:
                    latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return len(latencies) / (time.perf_counter() - t0), latencies


if __name__ == "__main__":
    main()
