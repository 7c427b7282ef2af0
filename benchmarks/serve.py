"""The HTTP service under load, on 127.0.0.1: searches per second on an indexed video, and runs
per second with an instant model (the service's own cost), at 1, 4 and 16 clients.

    python benchmarks/serve.py [--searches 200] [--runs 48] [--workers 4]
    python benchmarks/serve.py --memory [--finished 200] [--keep-runs 50]

Each client is a thread with its own httpx connection; latencies are per request (a run: from
POST to its result). Counts and time are bounded; the 1-client figure is the baseline the others
are compared with.

``--memory``: a real ``mcr-agent serve`` process (a replay model, ``--keep-runs 50``) on
127.0.0.1 takes ``--finished`` runs one after another; its resident memory is printed after the
first 50 and after all of them. Kept runs are bounded, so the second figure must stay within 10%
of the first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
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
    parser.add_argument("--memory", action="store_true", help="RSS of serve after many finished runs")
    parser.add_argument("--finished", type=int, default=200)
    parser.add_argument("--keep-runs", type=int, default=50)
    args = parser.parse_args()
    if args.memory:
        sys.exit(memory_after_runs(args.finished, args.keep_runs))
    sys.path.insert(0, str(ROOT / "tests"))
    import httpx
    from served import Served

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


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def memory_after_runs(total: int, keep: int, limit_s: float = 600.0) -> int:
    """0 when serve's RSS after ``total`` finished runs is within 10% of its RSS after ``keep``."""
    import httpx

    with tempfile.TemporaryDirectory(prefix="mcr-serve-mem-") as work:
        media = Path(work) / "media"
        media.mkdir()
        shutil.copy(CLIP, media / "boats.mp4")
        verdict = json.dumps({"verdict": "supported", "confidence": 0.9, "reason": "seen"})
        script = Path(work) / "script.json"
        script.write_text(json.dumps({"steps": [{"answer": "boats", "evidence": ["0-2"]}, {"text": verdict}]}))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "mcr.cli.main", "serve", "--port", str(port), "--model", f"replay:{script}"]
        command += ["--media-root", str(media), "--memory", str(Path(work) / "m.db"), "--keep-runs", str(keep)]
        server = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        try:
            assert server.stdout is not None and "serving on" in server.stdout.readline()
            question = "What is on the water? " + "Describe it as seen. " * 150  # ~3 KB held in each run's events
            body = {"video": "boats.mp4", "question": question, "policy": "plain"}
            figures = {}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
                for n in range(1, total + 1):
                    run_id = c.post("/v1/runs", json=body).json()["run_id"]
                    while c.get(f"/v1/runs/{run_id}").json()["status"] not in ("finished", "error", "cancelled"):
                        time.sleep(0.01)
                    if time.monotonic() - t0 > limit_s:
                        print(f"stopped after {n} runs: over {limit_s:.0f} s")
                        return 2
                    if n in (keep, total):
                        figures[n] = rss_mib(server.pid)
                        print(
                            f"after {n:4d} finished runs: serve RSS {figures[n]:7.1f} MiB ({time.monotonic() - t0:.0f} s)"
                        )
                first = c.get(f"/v1/runs/{run_id}/events")  # the last run's events, still in memory
                assert first.status_code == 200
        finally:
            server.terminate()
            server.wait(30)
    growth = figures[total] / figures[keep] - 1
    print(f"growth from {keep} to {total} runs: {growth * 100:+.1f}% (limit +10%)")
    return 0 if growth <= 0.10 else 1


if __name__ == "__main__":
    main()
