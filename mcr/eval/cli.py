"""``mcr-agent eval``: run a benchmark, print or compare reports, export trajectories.

    mcr-agent eval BENCH --annotations PATH --videos DIR [--agent mcr|plain|baseline] [--model SPEC]
                         [--limit N] [--workers N] [--out DIR] [--ray ADDRESS] ...
    mcr-agent eval report OUT_DIR [OUT_DIR2]
    mcr-agent eval export OUT_DIR --format sft|rl

Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mcr.cli.options import add_device_option, add_memory_option, add_model_options

BENCH_HELP = {
    "videomme": "Video-MME (videomme/test-00000-of-00001.parquet)",
    "lvbench": "LVBench (video_info.meta.jsonl)",
    "longvideobench": "LongVideoBench (lvb_val.json)",
    "mlvu": "MLVU dev (json/*.json)",
    "egoschema": "EgoSchema (questions.json + subset_answers.json)",
    "nextqa": "NExT-QA multiple choice (val.csv + map_vid_vidorID.json)",
    "charades-sta": "Charades-STA temporal grounding (charades_sta_test.txt)",
    "jsonl": "generic JSONL: video, question, options?, answer | span",
}


def cmd_eval_run(args: argparse.Namespace) -> int:
    from .adapters import benchmark_name, load_benchmark
    from .runner import AgentSpec, run_eval, shared_model
    from .samples import resolve_videos
    from .summary import report

    bench = benchmark_name(args.bench)
    index = tuple(s.strip() for s in args.index.split(",") if s.strip()) if args.index else ()
    if index:  # a wrong stage name fails here, once, not on every question
        from mcr.memory.index import check_stages

        check_stages(index, " in --index")
    options: dict[str, Any] = {}
    if args.answers:
        options["answers"] = args.answers
    if args.include_unscored:
        options["include_unscored"] = True
    samples = load_benchmark(bench, args.annotations, **options)
    if args.limit:
        samples = samples[: args.limit]
    samples = resolve_videos(samples, Path(args.videos).expanduser().resolve(), skip_missing=args.skip_missing)
    if not samples:
        from .samples import EvalError

        raise EvalError(f"none of the selected questions has its video in {args.videos}")
    model = args.model
    if model and model.startswith("replay:"):  # workers elsewhere (Ray) need a path that does not depend on cwd
        model = "replay:" + str(Path(model[len("replay:") :]).expanduser().resolve())
    model_options = {"constrain": False} if args.no_constrain else {}
    spec = AgentSpec(
        agent=args.agent,
        model=model,
        endpoint=args.endpoint,
        max_steps=args.max_steps,
        max_wall_s=args.max_time,
        frames=args.frames,
        memory=args.memory,
        index=index,
        device=args.device,
        model_options=model_options,
    )
    if not args.ray:  # a model that is not on this machine fails here, once, not on every question
        shared_model(spec.model, spec.endpoint, spec.device, spec.model_options)
    out = Path(args.out or Path("mcr-eval") / f"{bench}-{args.agent}")
    config = {
        "benchmark": bench,
        "annotations": str(Path(args.annotations).resolve()),
        "videos": str(Path(args.videos).resolve()),
        "agent": spec.to_dict(),
        "questions": len(samples),
    }
    summary = run_eval(
        samples,
        spec,
        out,
        workers=args.workers,
        retry_errors=args.retry_errors,
        progress=not args.no_progress,
        config=config,
        ray_address=args.ray,
    )
    print(f"{summary['ran']} questions answered now, {summary['questions']} of {len(samples)} done; results in {out}")
    text, png = report([out], png=False if args.no_png else None)
    print(text)
    if png is not None:
        print(f"figure: {png}")
    return 0


def cmd_eval_report(args: argparse.Namespace) -> int:
    from .summary import report

    text, png = report(args.dirs, png=False if args.no_png else args.png)
    if args.json:
        summaries = [json.loads((Path(d) / "summary.json").read_text(encoding="utf-8")) for d in args.dirs]
        print(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2))
        return 0
    print(text)
    if png is not None:
        print(f"figure: {png}")
    return 0


def cmd_eval_export(args: argparse.Namespace) -> int:
    from .export import export

    path, n = export(args.dir, args.format, args.output, args.select)
    print(f"{n} {args.format} rows written to {path}")
    return 0 if n else 1


def _run_arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--annotations", required=True, metavar="PATH", help="the benchmark's annotation file (or folder)")
    p.add_argument("--videos", required=True, metavar="DIR", help="folder holding the videos (searched recursively)")
    p.add_argument(
        "--agent",
        default="mcr",
        choices=["mcr", "plain", "baseline"],
        help="mcr: the full policy (default); plain: a bare tool loop; baseline: uniform frames, one call",
    )
    add_model_options(p, endpoint="an OpenAI-compatible server (vLLM, SGLang)", memory=None)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N questions")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="questions answered at once (default 1)")
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="result folder (default mcr-eval/BENCH-AGENT); an existing one is resumed",
    )
    p.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="spread questions over a Ray cluster: auto, ray://HOST:10001, or local",
    )
    p.add_argument("--max-steps", type=int, default=12, metavar="N", help="model turns per question")
    p.add_argument("--max-time", type=float, default=None, metavar="SECONDS", help="wall-time budget per question")
    p.add_argument("--frames", type=int, default=32, metavar="N", help="frames for --agent baseline")
    add_memory_option(
        p,
        "a fresh memory per question (default), one per video, or none",
        default="question",
        choices=["question", "video", "none"],
    )
    p.add_argument(
        "--index",
        default="shots",
        metavar="STAGES",
        help="video index stages built before each question, comma separated (e.g. shots,transcript,ocr)",
    )
    add_device_option(p)
    p.add_argument("--no-constrain", action="store_true", help="no constrained decoding for local models")
    p.add_argument("--skip-missing", action="store_true", help="evaluate the questions whose videos are there")
    p.add_argument("--retry-errors", action="store_true", help="run again the questions that ended in an error")
    p.add_argument("--answers", default=None, metavar="FILE", help="EgoSchema: the answer file (subset_answers.json)")
    p.add_argument("--include-unscored", action="store_true", help="also run questions without a gold answer")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-png", action="store_true", help="do not write report.png")
    return p


def register(subparsers: Any) -> None:
    """Add ``eval`` and its actions to the ``mcr-agent`` command line."""
    from .adapters import ALIASES

    ev = subparsers.add_parser(
        "eval",
        help="evaluate on a benchmark; report, compare, export trajectories",
        description="Run an agent over a benchmark (resumable), print reports, export trajectories for training.",
    )
    actions = ev.add_subparsers(dest="eval_action", metavar="BENCH|report|export")
    common = _run_arguments()
    for name, text in BENCH_HELP.items():
        aliases = [a for a, target in ALIASES.items() if target == name]
        p = actions.add_parser(name, parents=[common], help=text, aliases=aliases)
        p.set_defaults(func=cmd_eval_run, bench=name)
    rep = actions.add_parser("report", help="print the summary of a result folder, or compare two; save the PNG")
    rep.add_argument("dirs", nargs="+", metavar="OUT_DIR", help="one result folder, or two to compare")
    rep.add_argument("--png", default=None, metavar="FILE", help="where the figure goes (default OUT_DIR/report.png)")
    rep.add_argument("--no-png", action="store_true", help="do not write the figure")
    rep.add_argument("--json", action="store_true", help="print the summary as JSON")
    rep.set_defaults(func=cmd_eval_report)
    exp = actions.add_parser("export", help="write trajectories as conversational JSONL for TRL")
    exp.add_argument("dir", metavar="OUT_DIR", help="a result folder")
    exp.add_argument(
        "--format",
        required=True,
        choices=["sft", "rl"],
        help="sft: prompt/completion per model call; rl: prompt per question with gold answers",
    )
    exp.add_argument("--output", default=None, metavar="FILE", help="default OUT_DIR/export-FORMAT.jsonl")
    exp.add_argument(
        "--select",
        default=None,
        choices=["all", "correct", "verified"],
        help="which questions (default: correct for sft, all for rl)",
    )
    exp.set_defaults(func=cmd_eval_export)
    ev.set_defaults(func=lambda args: (ev.print_help(sys.stdout), 0)[1])


__all__ = ["register"]
