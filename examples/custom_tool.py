"""A tool of your own: the dominant colours of a span, measured on the real frames.

Run it as a script (the model's turns come from a recorded script, so it runs
anywhere; pass --model to use a real model instead):

    python examples/custom_tool.py ../shared/media/boats.mp4

or load it into the command line:

    mcr-agent run ../shared/media/boats.mp4 "What colour is the water?" \
        --tools examples/custom_tool.py --model replay:examples/scripts/custom_tool.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mcr import Agent, TimeSpan, ToolContext, ToolResult, tool

NAMED_COLOURS = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "red": (200, 30, 30),
    "green": (40, 160, 60),
    "blue": (40, 80, 200),
    "sky blue": (135, 190, 235),
    "yellow": (230, 210, 40),
    "orange": (240, 140, 30),
    "brown": (120, 80, 40),
    "dark blue": (20, 40, 90),
    "teal": (30, 120, 120),
}


def colour_name(rgb: np.ndarray) -> str:
    names = list(NAMED_COLOURS)
    table = np.array([NAMED_COLOURS[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(((table - rgb) ** 2).sum(axis=1)))]


@tool(timeout=60)
def dominant_colours(ctx: ToolContext, span: TimeSpan, top: int = 3) -> ToolResult:
    """The colours that cover most of the picture in a span of the video.

    Args:
        span: The span to measure, e.g. "00:00:02-00:00:06".
        top: How many colours to report.
    """
    frames = ctx.require_video().frames(span.clamp(ctx.video.duration), fps=1.0, max_frames=8, max_pixels=160 * 120)
    pixels = frames.images.reshape(-1, 3).astype(np.float32)
    names = [colour_name(p) for p in pixels[:: max(1, len(pixels) // 4000)]]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    share = ", ".join(f"{n} {100 * c / len(names):.0f}%" for n, c in ranked)
    return ToolResult(f"dominant colours in {span}: {share}", spans=[span], metadata={"colours": dict(ranked)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("--question", default="What colour is the water?")
    parser.add_argument("--model", default="replay:" + str(Path(__file__).parent / "scripts" / "custom_tool.json"))
    args = parser.parse_args()

    agent = Agent(model=args.model, tools=[dominant_colours], max_steps=4)
    result = agent.run(args.video, args.question)
    print(f"answer: {result.answer}")
    print(f"status: {result.status}, evidence: {[str(s) for s in result.evidence]}, trace: {result.trace_path}")


if __name__ == "__main__":
    main()
