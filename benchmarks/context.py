"""Context render cost: render time and rendered tokens as a run's context grows.

    python benchmarks/context.py

A synthetic run (inspect_frames every step, 8 frames each, a reflection every 10
steps) grows from 10 to 10,000 entries; each size is rendered against a 32K-token,
64-frame budget. Printed per size: the first render (a context past its budget is
compacted then, one pass over the entries), the median of later renders (the view kept,
nothing new to add), time per entry of the first, rendered tokens (within the budget).
Goal: under 10 ms at 10,000 entries.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from contexts import rendered_tokens, synthetic_context  # noqa: E402

from mcr.run.context import RenderProfile  # noqa: E402


def main() -> None:
    profile = RenderProfile(max_context_tokens=32768, max_frames=64)
    print(
        f"{'entries':>8} {'context tokens':>15} {'first ms':>9} {'render ms':>10} {'us/entry':>9} "
        f"{'rendered tokens':>16} {'messages':>9}"
    )
    for n in (10, 100, 1000, 3000, 10000):
        ctx = synthetic_context(n, profile)
        t0 = time.perf_counter()
        ctx.render()
        first = (time.perf_counter() - t0) * 1e3
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            messages = ctx.render()
            times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1e3
        print(
            f"{len(ctx.entries):>8} {ctx.tokens:>15,} {first:>9.2f} {ms:>10.2f} {1e3 * first / len(ctx.entries):>9.2f} "
            f"{rendered_tokens(messages, profile):>16,} {len(messages):>9}"
        )


if __name__ == "__main__":
    main()
