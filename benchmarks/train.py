"""Does training on MCR episodes teach anything? Gemma 3 270M, GSPO, a small grounding task.

    python benchmarks/train.py [--steps 30] [--generations 4] [--lr 1e-4] [--work DIR]

Each video (made here: a dark picture, espeak-ng speech) says three sentences at known times;
one of them names a cue word ("The cue word is lantern."). The question asks when the cue word
is said, so the answer is findable with the transcript tool. Eight videos train, six others are
held out. The untrained model and the trained one answer the held-out questions the same way
(the plain policy with the transcript tool, greedy); their mean reward is the one training
maximised (correct + IoU + 0.2 x format, the functions ``mcr-agent eval`` scores with). The
reward curve of the training run is written as ``curves.png`` in the output folder.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

WORDS = ["lantern", "harbour", "violet", "meadow", "copper", "saddle", "pepper", "glacier", "marble", "thunder", "orchid", "falcon", "walnut", "canyon"]  # fmt: skip
FILLER = [
    "The weather today is mild and quiet.",
    "Someone is walking along the road outside.",
    "The kettle in the kitchen has started to boil.",
    "A train passes slowly through the valley.",
    "The children are reading in the library.",
    "Leaves are falling from the old oak tree.",
]


def make_task(folder: Path, n: int, seed: int) -> list[dict]:
    """``n`` videos of 24 s, each with a cue sentence at a random one of three slots."""
    from media import make_cue_video

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        slots = [1.0, 9.0, 17.0]
        cue = rng.randrange(3)
        fillers = rng.sample(FILLER, 2)
        spoken = []
        for k, t in enumerate(slots):
            spoken.append((t, f"The cue word is {word}." if k == cue else fillers.pop()))
        path = folder / f"task{seed}_{i}.mp4"
        if not path.exists():
            make_cue_video(path, spoken=spoken, drawn=[], seconds=24.0)
        start = slots[cue]
        rows.append(
            {
                "id": f"s{seed}q{i}",
                "video": path.name,
                "question": f"When is the cue word {word} said?",
                "span": [start, start + 2.5],
            }
        )
    ann = folder / f"task{seed}.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def evaluate(model: str, samples: list, work: Path, env) -> dict:
    """Greedy answers to ``samples``: mean reward and its terms. ``work`` is this evaluation's own
    folder: its memories start empty (no answer of another evaluation is in them)."""
    from mcr.agents import Agent
    from mcr.eval.question import make_record
    from mcr.models import load_model
    from mcr.train.rewards import DEFAULT_WEIGHTS, REWARDS

    m = load_model(model, device_map="cpu", dtype="float32")
    totals, records = [], []
    for s in samples:
        agent = Agent(
            m,
            tools=list(env.tools),
            max_steps=env.max_steps,
            policy=env.agent,
            memory=work / f"{Path(s.video_path).stem}.db",
            index=env.index,
            trace_dir=False,
            work_dir=work / "work",
            generate_options={"max_new_tokens": env.max_new_tokens},
        )
        result = agent.run(s.video_path, s.question, answer_form=s.form)
        record = make_record(s, result)
        record["evidence"] = [x.to_list() for x in result.evidence]
        total = 0.0
        for name, weight in DEFAULT_WEIGHTS.items():
            value = REWARDS[name]([None], [record])[0]
            total += weight * (value or 0.0)
        totals.append(total)
        records.append(record)
    return {
        "reward": statistics.fmean(totals),
        "correct": statistics.fmean(1.0 if r["correct"] else 0.0 for r in records),
        "iou": statistics.fmean(float(r["iou"] or 0.0) for r in records),
        "answered": sum(1 for r in records if r["status"] in ("verified", "unverified", "answered")),
        "answers": [f"{r['id']}: gold {r['gold']}, answered {str(r['answer'])[:60]!r}" for r in records],
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--model", default="gemma3-270m")
    p.add_argument("--work", default=None)
    p.add_argument("--held-out", type=int, default=6, help="held-out questions")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="mcr-train-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    for name in ("eval-untrained", "eval-trained"):
        (work / name).mkdir(exist_ok=True)

    from mcr.eval import load_benchmark, resolve_videos
    from mcr.train import EnvConfig, train_rl

    t0 = time.perf_counter()
    make_task(work, 8, seed=1)
    make_task(work, args.held_out, seed=2)
    train = resolve_videos(load_benchmark("jsonl", work / "task1.jsonl"), work)
    held = resolve_videos(load_benchmark("jsonl", work / "task2.jsonl"), work)
    env = EnvConfig(agent="plain", max_steps=2, index=("transcript",), tools=("asr",), max_new_tokens=64)
    print(f"task: {len(train)} training and {len(held)} held-out videos made in {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    before = evaluate(args.model, held, work / "eval-untrained", env)
    print(f"untrained, held out ({time.perf_counter() - t0:.0f} s):", *before.pop("answers"), sep="\n  ")
    t0 = time.perf_counter()
    out = train_rl("gspo", args.model, train, work / "out", env=env, steps=args.steps, generations=args.generations, learning_rate=args.lr, device="cpu", save_every=max(args.steps, 1))  # fmt: skip
    print(f"GSPO: {args.steps} steps x {args.generations} episodes in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    after = evaluate(str(out), held, work / "eval-trained", env)
    print(f"trained, held out ({time.perf_counter() - t0:.0f} s):", *after.pop("answers"), sep="\n  ")

    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rewards = [r["reward"] for r in log if "reward" in r]
    third = max(1, len(rewards) // 3)
    print(f"\n{'':28}{'untrained':>10}{'trained':>10}")
    for key in ("reward", "correct", "iou"):
        print(f"{'held-out mean ' + key:28}{before[key]:>10.3f}{after[key]:>10.3f}")
    print(f"{'held-out answered':28}{before['answered']:>10}{after['answered']:>10}")
    if rewards:
        print(
            f"training reward: first {third} steps {statistics.fmean(rewards[:third]):.3f}, "
            f"last {third} steps {statistics.fmean(rewards[-third:]):.3f}"
        )
    print(f"reward curve: {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
