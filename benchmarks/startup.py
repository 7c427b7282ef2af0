"""Start-up cost against a bare interpreter: ``import mcr``, ``Agent(...)`` construction,
``mcr-agent --help`` and the README's first command (the recorded script on ``megamind.mp4``,
its index already built: one run is made first, outside the timing).

    python benchmarks/startup.py [--repeat 5]

Prints the median wall time of each and its ratio to ``python -c pass`` measured in the same
run, with its goal: ``import mcr`` and ``Agent()`` under 0.5 s, ``--help`` under 1 s, the
first command under 3 s.

Then a first run with a local model (a tiny random Qwen3-VL made here, transformers on CPU)
on ``megamind.mp4`` with a cold index (shots and transcript built in a fresh database each
time): the model loaded before the run starts (``Agent(model=load_model(path))``) against
the agent's default, the weights loading in a background thread while the index is built
(``Agent(model=path)``). The saving is about the shorter of the two.
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


LOCAL_RUN = """
import sys, time
t0 = time.perf_counter()
from mcr import Agent
from mcr.models import load_model
path, eager, clip, question, db = sys.argv[1:6]
model = load_model(path) if eager == "1" else path
agent = Agent(model=model, policy="plain", max_steps=1, trace_dir=False, memory=db,
              index=("shots", "transcript"), generate_options={"max_new_tokens": 8})
result = agent.run(clip, question)
print(time.perf_counter() - t0, getattr(agent.model, "seconds", None) or 0.0)
"""


def local_model_runs(repeat: int) -> None:
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from tiny_models import make_qwen3_vl

    with tempfile.TemporaryDirectory() as work:
        folder = str(make_qwen3_vl(os.path.join(work, "tiny-qwen3-vl")))
        rows = {"model loaded first": "1", "model loaded in the background": "0"}
        times: dict[str, list[float]] = {name: [] for name in rows}
        for i in range(repeat + 1):  # the first round warms the caches and the speech model's files
            for name, eager in rows.items():
                db = os.path.join(work, f"{i}-{eager}.db")
                out = subprocess.run(
                    [sys.executable, "-c", LOCAL_RUN, folder, eager, CLIP, QUESTION, db],
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=work,
                )
                if i:
                    times[name].append(float(out.stdout.split()[-2]))
    print(f"\nfirst run, local tiny model, cold index (median of {repeat})")
    first = statistics.median(times["model loaded first"])
    for name, values in times.items():
        print(f"{name:32} {statistics.median(values):9.3f} s {first / statistics.median(values):6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-local", action="store_true", help="leave out the local-model runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:  # the run's workspace (.mcr) lives here
        results = {name: median_time(cmd, args.repeat, work) for name, (cmd, _) in COMMANDS.items()}
    base = results["python -c pass (baseline)"]
    print(f"{'command':32} {'median s':>9} {'x baseline':>11} {'goal':>12}")
    for name, value in results.items():
        goal = COMMANDS[name][1]
        mark = "" if goal is None else f"< {goal:g} s " + ("ok" if value < goal else "SLOW")
        print(f"{name:32} {value:9.3f} {value / base:11.1f} {mark:>12}")
    if not args.skip_local:
        local_model_runs(max(1, args.repeat // 2 + 1))


if __name__ == "__main__":
    main()
