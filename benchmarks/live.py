"""A live session's memory and lag over a long stream pushed faster than real time.

    python benchmarks/live.py [--minutes 60] [--speed 6] [--segment 10] [--stages shots,transcript,ocr]

ffmpeg loops a test-made clip with speech and drawn text (``tests/media.make_cue_video``, 63 s)
into an MPEG-TS stream over UDP on 127.0.0.1 at ``--speed`` times real time; a ``LiveSession``
in this process indexes it segment by segment. Printed: the resident memory when the stream
reaches 10 minutes and at its end (target: within 20% of each other), and the lag between a
segment's arrival (its file closed) and its entries being searchable (target: under one segment
length), with the count of entries and the real-time factor the session kept up with.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--speed", type=float, default=6.0, help="times real time the stream is pushed")
    parser.add_argument("--segment", type=float, default=10.0)
    parser.add_argument("--stages", default="shots,transcript,ocr")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from media import make_cue_video

    from mcr.agents.live import LiveSession

    with tempfile.TemporaryDirectory(prefix="mcr-live-") as work:
        clip = make_cue_video(Path(work) / "cues.mp4")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        marks: dict[str, float] = {}
        first = min(600.0, args.minutes * 30)  # 10 minutes, or half a shorter stream

        def on_event(event: dict) -> None:
            if event["event"] == "segment":
                if event["end"] >= first and "rss_10" not in marks:
                    marks["rss_10"] = rss_mib()
                marks["rss_end"] = rss_mib()
                marks["peak"] = max(marks.get("peak", 0.0), marks["rss_end"])

        session = LiveSession(
            f"udp://127.0.0.1:{port}",
            memory=Path(work) / "m.db",
            stages=[s for s in args.stages.split(",") if s],
            segment_s=args.segment,
            on_event=on_event,
        ).start()
        time.sleep(1.5)
        cmd = ["ffmpeg", "-v", "error", "-readrate", str(args.speed), "-stream_loop", "-1", "-i", str(clip)]
        cmd += ["-t", str(args.minutes * 60), "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-c:a", "aac"]
        cmd += ["-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
        t0 = time.perf_counter()
        rss_start = rss_mib()
        pusher = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        ticker = threading.Event()

        def report() -> None:
            while not ticker.wait(60):
                segs = session.record["segments"]
                end = segs[-1]["end"] if segs else 0.0
                print(
                    f"  {time.perf_counter() - t0:6.0f} s: stream at {end / 60:5.1f} min, RSS {rss_mib():.0f} MiB",
                    flush=True,
                )

        threading.Thread(target=report, daemon=True).start()
        pusher.wait()
        push_s = time.perf_counter() - t0
        time.sleep(2)
        session.stop()
        ticker.set()
        wall = time.perf_counter() - t0
        segs = session.record["segments"]
        lags = [s["lag_s"] for s in segs]
        entries = sum(sum(s["entries"].values()) for s in segs)
        stream_s = segs[-1]["end"] if segs else 0.0
        print(
            f"\nlive session: {stream_s / 60:.1f} min of stream in {len(segs)} segments of {args.segment:g} s, pushed "
        )
        print(f"at {args.speed:g}x ({push_s:.0f} s), indexed by {wall:.0f} s ({stream_s / wall:.1f}x real time); ")
        print(f"stages {args.stages}; {entries} entries; gaps {len(session.record['gaps'])}")
        r10, rend = marks.get("rss_10", 0.0), marks.get("rss_end", 0.0)
        print(f"{'resident memory':28} {'MiB':>8}")
        print(f"{'before the stream':28} {rss_start:8.0f}")
        mark = f"at {first / 60:g} min of stream"
        print(f"{mark:28} {r10:8.0f}")
        print(f"{'at the end':28} {rend:8.0f}   {rend / max(r10, 1):.2f}x of {first / 60:g} min (target <= 1.20)")
        print(f"{'peak after a segment':28} {marks.get('peak', 0.0):8.0f}")
        if lags:
            p95 = sorted(lags)[int(0.95 * (len(lags) - 1))]
            print(
                f"lag arrival -> searchable: median {statistics.median(lags):.2f} s, p95 {p95:.2f} s, "
                f"max {max(lags):.2f} s (target < {args.segment:g} s: {'ok' if max(lags) < args.segment else 'SLOW'})"
            )


if __name__ == "__main__":
    main()
