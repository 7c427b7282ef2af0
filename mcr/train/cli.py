"""``mcr-agent train``: GRPO or GSPO on MCR episodes, SFT on verified trajectories.

    mcr-agent train grpo|gspo BENCH --annotations PATH --videos DIR --model SPEC --out DIR [...]
    mcr-agent train sft --data EVAL_DIR|EXPORT.jsonl --model SPEC --out DIR [...]

Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mcr.cli.options import DEVICE_HELP, add_model_options


def _samples(args: argparse.Namespace) -> list:
    from mcr.eval.adapters import benchmark_name, load_benchmark
    from mcr.eval.samples import EvalError, resolve_videos

    samples = load_benchmark(benchmark_name(args.bench), args.annotations)
    samples = [s for s in samples if s.scored]
    if args.limit:
        samples = samples[: args.limit]
    samples = resolve_videos(samples, Path(args.videos).expanduser().resolve(), skip_missing=args.skip_missing)
    if not samples:
        raise EvalError(
            f"none of the questions of {args.annotations} has both a gold answer and its video in {args.videos}"
        )
    return samples


def cmd_train(args: argparse.Namespace) -> int:
    from .run import TrainError

    try:
        return _train(args)
    except ValueError as exc:  # a bad --rewards, or a setting the trainer refused
        raise TrainError(str(exc)) from None


def _train(args: argparse.Namespace) -> int:
    from .run import read_log

    out = Path(args.out).expanduser()
    if args.method == "sft":
        from .sft import train_sft

        train_sft(
            args.model,
            args.data,
            out,
            steps=args.steps,
            epochs=args.epochs,
            learning_rate=args.lr or 2e-5,
            lora=not args.full,
            lora_rank=args.lora_rank,
            save_every=args.save_every,
            device=args.device,
        )
    else:
        from .environment import EnvConfig
        from .rewards import parse_weights
        from .run import train_rl

        index = tuple(s.strip() for s in args.index.split(",") if s.strip())
        if index:
            from mcr.memory.index import check_stages

            check_stages(index, " in --index")
        env = EnvConfig(
            agent=args.agent,
            max_steps=args.max_steps,
            index=index,
            tools=tuple(t.strip() for t in args.tools.split(",") if t.strip()) if args.tools else None,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
        )
        train_rl(
            args.method,
            args.model,
            _samples(args),
            out,
            env=env,
            steps=args.steps or 100,
            generations=args.generations,
            questions_per_step=args.questions_per_step,
            learning_rate=args.lr or 1e-5,
            lora=not args.full,
            lora_rank=args.lora_rank,
            weights=parse_weights(args.rewards),
            use_vllm=args.vllm,
            save_every=args.save_every,
            device=args.device,
            constrain=False if args.no_constrain else None,
        )
    rows = [r for r in read_log(out) if "reward" in r or "loss" in r]
    if rows:
        last = rows[-1]
        shown = ", ".join(f"{k} {last[k]:.4g}" for k in ("reward", "loss") if k in last)
        print(f"step {last['step']}: {shown}")
    print(f"trained model: {out / 'final'} (mcr-agent eval ... --model {out}); curves: {out / 'curves.png'}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``train`` to the ``mcr-agent`` command line."""
    from mcr.eval.cli import BENCH_HELP

    tr = subparsers.add_parser(
        "train",
        help="train the agent's model: GRPO/GSPO on MCR episodes, SFT on verified runs",
        description="Train the model MCR runs: reinforcement learning on MCR episodes (TRL's GRPOTrainer), "
        "or supervised fine-tuning on verified, correct trajectories from mcr-agent eval.",
    )
    methods = tr.add_subparsers(dest="method", metavar="grpo|gspo|sft")
    common = argparse.ArgumentParser(add_help=False)
    add_model_options(
        common,
        "the model to train: a local folder, .gguf or hub id",
        required=True,
        endpoint=None,
        device=DEVICE_HELP,
        memory=None,
    )
    common.add_argument("--out", required=True, metavar="DIR", help="output folder; an existing one is resumed")
    common.add_argument("--steps", type=int, default=None, metavar="N", help="optimizer steps (RL default 100)")
    common.add_argument("--lr", type=float, default=None, help="learning rate (RL 1e-5, SFT 2e-5)")
    common.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    common.add_argument("--lora-rank", type=int, default=16, metavar="R")
    common.add_argument("--save-every", type=int, default=50, metavar="N", help="steps between checkpoints")
    for method in ("grpo", "gspo"):
        what = "group-sequence (sequence-level importance sampling)" if method == "gspo" else "group-relative"
        p = methods.add_parser(method, parents=[common], help=f"{what} policy optimisation on MCR episodes")
        p.add_argument("bench", choices=sorted(BENCH_HELP), help="the annotation format (as mcr-agent eval)")
        p.add_argument("--annotations", required=True, metavar="PATH")
        p.add_argument("--videos", required=True, metavar="DIR")
        p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N questions")
        p.add_argument("--skip-missing", action="store_true", help="train on the questions whose videos are there")
        p.add_argument("--generations", type=int, default=4, metavar="G", help="episodes per question (the group)")
        p.add_argument("--questions-per-step", type=int, default=1, metavar="N")
        p.add_argument("--agent", default="mcr", choices=["mcr", "plain"], help="the policy episodes run")
        p.add_argument("--max-steps", type=int, default=6, metavar="N", help="model turns per episode")
        p.add_argument("--index", default="shots,transcript", metavar="STAGES", help="index stages built per video")
        p.add_argument("--tools", default=None, metavar="NAMES", help="built-in tools kept (default all)")
        p.add_argument("--temperature", type=float, default=1.0)
        p.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="tokens per model turn")
        p.add_argument(
            "--rewards",
            default=None,
            metavar="W",
            help="reward weights, e.g. correct=1,iou=1,format=0.2,frames=0.001,calls=0.01 (default correct=1,"
            "iou=1,format=0.2)",
        )
        p.add_argument("--vllm", action="store_true", help="generate with vLLM as TRL configures it")
        p.add_argument("--no-constrain", action="store_true", help="sample without constrained tool calls")
        p.set_defaults(func=cmd_train)
    s = methods.add_parser("sft", parents=[common], help="supervised fine-tuning on verified, correct runs")
    s.add_argument("--data", required=True, metavar="PATH", help="an mcr-agent eval folder or an exported sft JSONL")
    s.add_argument("--epochs", type=float, default=1.0)
    s.set_defaults(func=cmd_train)
    tr.set_defaults(func=lambda args: (tr.print_help(sys.stdout), 0)[1])


__all__ = ["register"]
