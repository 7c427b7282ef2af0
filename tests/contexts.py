"""A long synthetic context (a three-hour run of frame inspections and reflections) and the tokens
of its rendering: for the rendering tests and benchmarks/context.py."""

from __future__ import annotations

import numpy as np

from mcr.run.context import Context, RenderProfile, estimate_tokens
from mcr.types import Frames, TextPart, ToolCall


def synthetic_context(entries: int, profile: RenderProfile) -> Context:
    """A 3-hour run: inspect_frames every few seconds, reflections every 10 steps."""
    ctx = Context(profile=profile)
    ctx.add_task(
        "What does the woman in red do after the train leaves?",
        video={"name": "long.mp4", "duration": 3 * 3600, "fps": 25, "width": 640, "height": 360},
    )
    ctx.add("memory", "Memory of this video: 3 answer.")
    ctx.add("plan", "Plan: find the train leaving (transcript, then frames), then follow the woman in red.")
    step, mem = 0, 0
    while len(ctx.entries) < entries:
        step += 1
        t = (step * 11) % (3 * 3600 - 20)
        call = ToolCall("inspect_frames", {"span": f"{t}-{t + 8}", "max_frames": 8}, f"c{step}")
        ctx.add_model_turn(step, f"Looking at {t}-{t + 8} for the train and the woman.", [call])
        frames = Frames(np.zeros((8, 2, 2, 3), np.uint8), [t + k for k in range(8)], list(range(8)))
        mem += 1
        ctx.add_tool_result(
            step,
            call,
            f"8 frames from {t}s to {t + 8}s: platform, people waiting. " * 6,
            frames=frames,
            memory_ref=f"m{mem}",
            spans=[[t, t + 8]],
        )
        if step % 10 == 0:
            ctx.add("reflection", f"After step {step}: the train has not left yet; keep scanning forward.", step)
    return ctx


def rendered_tokens(messages, profile: RenderProfile) -> int:
    total = 0
    for m in messages:
        for p in m.parts:
            total += estimate_tokens(p.text) if isinstance(p, TextPart) else len(p.frames) * profile.tokens_per_frame
        total += sum(estimate_tokens(str(c.to_dict())) for c in m.tool_calls)
    return total
