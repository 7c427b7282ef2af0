"""Start-up cost: ``import mcr`` and ``mcr-agent --help`` against a bare interpreter.

    python benchmarks/startup.py [--repeat 7]

Prints the median wall time of each command and its ratio to ``python -c pass``
measured in the same run. The goal is under one second for both.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "import mcr": [sys.executable, "-c", "import mcr; from mcr import Agent, tool, TimeSpan, Video"],
    "mcr-agent --help": [shutil.which("mcr-agent") or "mcr-agent", "--help"],
}


def median_time(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    results = {name: median_time(cmd, args.repeat) for name, cmd in COMMANDS.items()}
    base = results["python -c pass (baseline)"]
    print(f"{'command':32} {'median s':>9} {'x baseline':>11} {'goal':>8}")
    for name, value in results.items():
        goal = "" if "baseline" in name else ("ok" if value < 1.0 else "SLOW")
        print(f"{name:32} {value:9.3f} {value / base:11.1f} {goal:>8}")


if __name__ == "__main__":
    main()
