"""Tools that share state, written as ``async def`` methods of a class, returning a pydantic model.

``ChangeMeter`` is a toolset: its ``@tool`` methods are bound to the instance, so they share what
was measured (``self.measured``), and ``self`` never appears in their schemas. ``picture_change``
is async: the registry awaits it on an event loop of its own, and cancels it when its time is up.
It returns a pydantic model: the model reads it as JSON, the trace keeps it typed, and its span
becomes the result's span.

Run it as a script (the model's turns come from a recorded script, so it runs anywhere; pass
--model to use a real model instead):

    python examples/async_toolset.py ../shared/media/boats.mp4
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from mcr import Agent, TimeSpan, ToolContext, tool
from mcr.tools import Toolset


class Change(BaseModel):
    span: TimeSpan
    change: float = Field(description="mean absolute difference between frames a second apart, 0-255")
    frames: int


class ChangeMeter(Toolset):
    def __init__(self) -> None:
        self.measured: list[Change] = []

    @tool(timeout=60)
    async def picture_change(self, ctx: ToolContext, span: TimeSpan) -> Change:
        """How much the picture changes from second to second within a span.

        Args:
            span: The span to measure.
        """
        video = ctx.require_video()
        span = span.clamp(video.duration)
        # decoding blocks; on a thread of its own it leaves the event loop free (and cancellable)
        frames = await asyncio.to_thread(video.frames, span, fps=1.0, max_frames=16, max_pixels=160 * 120)
        images = frames.images.astype(np.float32)
        change = float(np.abs(np.diff(images, axis=0)).mean()) if len(frames) > 1 else 0.0
        result = Change(span=span, change=round(change, 1), frames=len(frames))
        self.measured.append(result)
        return result

    @tool
    def calmest(self) -> Change | str:
        """The calmest span measured so far with picture_change."""
        if not self.measured:
            return "nothing measured yet: call picture_change first"
        return min(self.measured, key=lambda c: c.change)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("--question", default="Is the first or the second half of the video calmer?")
    parser.add_argument("--model", default="replay:" + str(Path(__file__).parent / "scripts" / "async_toolset.json"))
    args = parser.parse_args()

    meter = ChangeMeter()
    agent = Agent(model=args.model, tools=meter.tools(), max_steps=5)
    result = agent.run(args.video, args.question)
    print(f"answer: {result.answer}")
    print(f"status: {result.status}, evidence: {[str(s) for s in result.evidence]}, trace: {result.trace_path}")
    in_order = sorted(meter.measured, key=lambda c: c.span.start)  # the calls may finish in either order
    print("measured: " + "; ".join(f"{c.span} {c.change}" for c in in_order))


if __name__ == "__main__":
    main()
