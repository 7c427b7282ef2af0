"""A tool whose returned spans count as evidence: the brightest moment of a video.

``@tool(reads="frames")`` says the spans the tool returns are the frames it looked at, so an
answer that cites them is grounded even when the model was shown no frame there. The tool
returns a dataclass; its span becomes the result's span, and the model reads it as JSON.

Run it as a script (the model's turns come from a recorded script, so it runs anywhere; pass
--model to use a real model instead):

    python examples/evidence_tool.py ../shared/media/boats.mp4
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mcr import Agent, Policy, TimeSpan, ToolContext, tool


@dataclass
class Peak:
    span: TimeSpan
    brightness: float  # mean pixel value, 0-255


@tool(reads="frames", timeout=60)
def brightest_moment(ctx: ToolContext, window: float = 1.0) -> Peak:
    """The span of the video where the picture is brightest.

    Args:
        window: The length of the span to report, in seconds.
    """
    video = ctx.require_video()
    frames = video.frames(TimeSpan(0, video.duration), fps=2.0, max_frames=64, max_pixels=160 * 120)
    levels = frames.images.reshape(len(frames), -1).mean(axis=1)
    best = int(levels.argmax())
    t = float(frames.timestamps[best])
    span = TimeSpan(max(0.0, t - window / 2), min(video.duration, t + window / 2))
    return Peak(span=span, brightness=round(float(levels[best]), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("--question", default="When is the picture brightest?")
    parser.add_argument("--model", default="replay:" + str(Path(__file__).parent / "scripts" / "evidence_tool.json"))
    args = parser.parse_args()

    # No overview frames: the only look at the video is the tool's, so the check of the cited
    # span rests on what reads="frames" declares.
    agent = Agent(model=args.model, tools=[brightest_moment], policy=Policy(perceive=False), max_steps=4)
    result = agent.run(args.video, args.question)
    print(f"answer: {result.answer}")
    print(f"status: {result.status}, evidence: {[str(s) for s in result.evidence]}, trace: {result.trace_path}")


if __name__ == "__main__":
    main()
