"""Runtime overhead per step, outside the model, and what the backends add around a model.

    python benchmarks/backends.py [--steps 40]

1. The loop with a model that answers instantly (its reply is text holding a
   ``<tool_call>``, so parsing runs) and a trivial tool, over a context of 10, 100
   and 1000 entries: wall time per step, split into render, parse and tool dispatch,
   and as a share of a step whose model call takes 1 s. Goal: under 2 ms per step at
   100 entries.
2. Backends: arranging 100 messages for a chat template or API; JPEG-encoding a frame
   for an OpenAI-compatible server; compiling the tool-call grammar and masking one
   token with it (xgrammar, on the Gemma 3 vocabulary of 262,144 tokens when its
   converted weights are cached, else skipped).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from mcr.models import ModelOutput
from mcr.run.context import Context, RenderProfile
from mcr.run.events import ModelCalled
from mcr.run.loop import Budget, answer_schema
from mcr.run.loop import run as run_loop
from mcr.run.policy import Policy
from mcr.tools import ToolContext, ToolRegistry, tool
from mcr.types import Frames, FramesPart, Message, TextPart, ToolCall, Usage

CALL_TEXT = '<tool_call>\n{"name": "note", "arguments": {"text": "the boat moves left at 00:00:03.0"}}\n</tool_call>'


@tool
def note(ctx: ToolContext, text: str) -> str:
    """Keep a note.

    Args:
        text: The note.
    """
    return f"noted: {text}"


class InstantModel:
    """Answers at once with a tool call written as text; times what it is asked to do."""

    name = "instant"

    def generate(self, messages, tools=None, **options):
        return ModelOutput(CALL_TEXT, usage=Usage(100, 20, 1))


class Timed:
    """Wraps a callable and adds up the time spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def filled_context(entries: int) -> Context:
    ctx = Context(profile=RenderProfile())
    ctx.add_task(
        "What happens to the boat?",
        [],
        {"name": "boats.mp4", "duration": 600, "fps": 25, "width": 640, "height": 360, "has_audio": True},
    )
    step = 0
    while len(ctx.entries) < entries:
        step += 1
        call = ToolCall("note", {"text": f"look at {step}"}, f"c{step}")
        ctx.add_model_turn(step, f"Step {step}: checking the next span.", [call])
        ctx.add_tool_result(step, call, f"noted: observation {step} " + "x" * 300)
    return ctx


def loop_overhead(entries: int, steps: int) -> dict:
    import mcr.models
    import mcr.run.loop
    import mcr.run.steps

    registry = ToolRegistry([note])
    context = filled_context(entries)
    render = Timed(context.render)
    context.render = render
    parse = Timed(mcr.models.ModelOutput.from_text)
    execute = Timed(registry.execute)
    registry.execute = execute
    original_parse = ModelOutput.from_text
    ModelOutput.from_text = parse  # the loop parses text replies through this
    try:
        gen = run_loop(InstantModel(), context, registry, ToolContext(), Budget(max_steps=steps), policy=Policy.plain())
        stamps, model_s = [], 0.0
        t0 = time.perf_counter()
        for event in gen:
            if isinstance(event, ModelCalled):
                stamps.append(time.perf_counter())
                model_s += event.latency_s
        total = time.perf_counter() - t0
    finally:
        ModelOutput.from_text = original_parse
    n = len(stamps)
    return {
        "entries": entries,
        "steps": n,
        "step_ms": 1e3 * (total - model_s) / n,
        "render_ms": 1e3 * render.seconds / max(1, render.calls),
        "parse_ms": 1e3 * parse.seconds / max(1, parse.calls),
        "dispatch_ms": 1e3 * execute.seconds / max(1, execute.calls),
        "final_entries": len(context.entries),
    }


def median_ms(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def backend_costs() -> None:
    from mcr.models.chat import arrange, jpeg_data_url

    frames = Frames(
        np.random.default_rng(0).integers(0, 255, (8, 480, 640, 3), dtype=np.uint8),
        [float(i) for i in range(8)],
        list(range(8)),
    )
    messages = [Message("system", "sys"), Message("user", "question")]
    for i in range(49):
        messages.append(Message("assistant", "", [ToolCall("inspect_frames", {"span": f"{i}-{i + 1}"}, f"c{i}")]))
        messages.append(
            Message(
                "tool",
                [TextPart("8 frames"), FramesPart(frames)] if i % 10 == 0 else "result",
                tool_call_id=f"c{i}",
                name="inspect_frames",
            )
        )
    arranged = median_ms(lambda: arrange(messages, False))
    print(f"arrange 100 messages for a template (no native tools): {arranged:.2f} ms")
    print(
        f"JPEG data URL for one 640x480 frame (scaled to 448x448 pixels): "
        f"{median_ms(lambda: jpeg_data_url(frames.images[0], 448 * 448)):.2f} ms"
    )

    from mcr.models.gguf import cache_root

    folders = sorted((cache_root() / "gguf").glob("gemma-3-270m*/tokenizer.json"))
    try:
        import xgrammar  # noqa: F401
    except ImportError:
        print("grammar: skipped (xgrammar is not installed)")
        return
    if not folders:
        print("grammar: skipped (no converted Gemma 3 270M in the cache; run the backend tests once)")
        return
    from transformers import AutoTokenizer

    from mcr.models.constrain import ToolCallGrammar
    from mcr.tools.frames import inspect_frames

    tok = AutoTokenizer.from_pretrained(folders[-1].parent)
    t0 = time.perf_counter()
    grammar = ToolCallGrammar(tok, 262144, [tok.eos_token_id])
    info_s = time.perf_counter() - t0
    tools = [inspect_frames.schema(), answer_schema()]
    t0 = time.perf_counter()
    grammar.compiled(tools)
    compile_s = time.perf_counter() - t0
    import torch
    import xgrammar as xgr

    matcher = grammar.matcher(tools)
    matcher.accept_string('<tool_call>\n{"name": "answer", "arguments": {"answer": "a boat ')
    mask = xgr.allocate_token_bitmask(1, 262144)
    logits = torch.zeros(1, 262144)
    fill = median_ms(lambda: matcher.fill_next_token_bitmask(mask), 21)
    apply = median_ms(lambda: xgr.apply_token_bitmask_inplace(logits, mask), 21)
    print(
        f"grammar on the Gemma 3 vocabulary: tokenizer info {info_s * 1e3:.0f} ms, compile {compile_s * 1e3:.0f} ms "
        f"(once per tool set), mask per token {fill:.3f} ms + apply {apply:.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    print("Loop overhead per step (instant model, text tool call parsed, one trivial tool):")
    print(
        f"{'entries':>8} {'steps':>6} {'step ms':>8} {'render':>8} {'parse':>8} {'dispatch':>9} "
        f"{'share of a 1 s step':>20}"
    )
    rows = []
    for entries in (10, 100, 1000):
        loop_overhead(entries, 3)  # warm up
        r = loop_overhead(entries, args.steps)
        rows.append(r)
        print(
            f"{r['entries']:>8} {r['steps']:>6} {r['step_ms']:>8.3f} {r['render_ms']:>8.3f} {r['parse_ms']:>8.3f} "
            f"{r['dispatch_ms']:>9.3f} {r['step_ms'] / 1000:>19.3%}"
        )
    at100 = next(r for r in rows if r["entries"] == 100)
    verdict = "meets" if at100["step_ms"] < 2.0 else "misses"
    print(
        f"at 100 entries: {at100['step_ms']:.3f} ms per step ({verdict} the 2 ms goal); "
        f"render {at100['render_ms'] / at100['step_ms']:.0%}, parse {at100['parse_ms'] / at100['step_ms']:.0%}, "
        f"dispatch {at100['dispatch_ms'] / at100['step_ms']:.0%} of it"
    )
    print()
    backend_costs()
    print(json.dumps({"step_ms_at_100": round(at100["step_ms"], 3)}))


if __name__ == "__main__":
    main()
