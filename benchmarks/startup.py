"""Start-up cost against a bare interpreter: ``import mcr``, ``Agent(...)`` construction,
``mcr-agent --help`` and the README's first command (the recorded script on ``megamind.mp4``,
its index already built: one run is made first, outside the timing).

    python benchmarks/startup.py [--repeat 5]

Prints the median wall time of each and its ratio to ``python -c pass`` measured in the same
run, with its goal: ``import mcr`` and ``Agent()`` under 0.5 s, ``--help`` under 1 s, the
first command under 3 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = os.path.join(os.path.dirname(ROOT), "shared", "media", "megamind.mp4")
SCRIPT = os.path.join(ROOT, "examples", "scripts", "megamind.json")
QUESTION = "What does the speaker say you should judge people by?"
AGENT = "from mcr import Agent; Agent(model='replay:" + SCRIPT + "', trace_dir=False, memory=False)"
COMMANDS = {  # (command, goal in seconds)
    "python -c pass (baseline)": ([sys.executable, "-c", "pass"], None),
    "import mcr": ([sys.executable, "-c", "import mcr; from mcr import Agent, tool, TimeSpan, Video"], 0.5),
    "import mcr + Agent()": ([sys.executable, "-c", AGENT], 0.5),
    "mcr-agent --help": ([shutil.which("mcr-agent") or "mcr-agent", "--help"], 1.0),
    "README first command (warm)": (
        [
            shutil.which("mcr-agent") or "mcr-agent",
            "run",
            CLIP,
            QUESTION,
            "--model",
            f"replay:{SCRIPT}",
            "--quiet",
        ],
        3.0,
    ),  # fmt: skip
}


def median_time(cmd: list[str], repeat: int, cwd: str) -> float:
    subprocess.run(cmd, check=True, capture_output=True, cwd=cwd)  # caches, index and exports made here
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:  # the run's workspace (.mcr) lives here
        results = {name: median_time(cmd, args.repeat, work) for name, (cmd, _) in COMMANDS.items()}
    base = results["python -c pass (baseline)"]
    print(f"{'command':32} {'median s':>9} {'x baseline':>11} {'goal':>12}")
    for name, value in results.items():
        goal = COMMANDS[name][1]
        mark = "" if goal is None else f"< {goal:g} s " + ("ok" if value < goal else "SLOW")
        print(f"{name:32} {value:9.3f} {value / base:11.1f} {mark:>12}")


if __name__ == "__main__":
    main()
