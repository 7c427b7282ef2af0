"""``mcr-agent run``, ``replay`` and ``resume``: answer a question about a video, draw a saved
trace again, continue an interrupted run from its trace."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from mcr.cli.library import add_library_option, library_files
from mcr.cli.options import (
    DEVICE_HELP,
    PROG,
    CLIError,
    add_model_options,
    at_least_one,
    count,
    memory_from,
    model_from,
    positive,
)
from mcr.cli.tools import tool_specs
from mcr.errors import MCRError

RUN_MODEL_HELP = (
    "hub id, local model folder or .gguf, openai:MODEL@URL, or replay:FILE (default: $MCR_MODEL, "
    "else InternVideo3-8B-Instruct with a GPU, Qwen3-VL-2B-Instruct on CPU; see `models`)"
)


def cmd_run(args: argparse.Namespace) -> int:
    from mcr.agents import Agent

    if not args.question.strip():
        raise CLIError("the question is empty: pass it as the last argument, after the video")
    video = _video_or_library(args)  # checked (and fetched) first: a bad video fails before any model loads
    tools = [t for spec in args.tools for t in tool_specs(spec)]
    subscribers = _live_trace(args)
    stages = [s.strip() for s in args.index.split(",") if s.strip()] if args.index else None
    if stages:
        from mcr.memory.index import check_stages

        check_stages(stages, " in --index")
    # checked here; a local model's weights then load while the video is indexed
    model = model_from(args, **({"constrain": False} if args.no_constrain else {}))
    if args.policy == "baseline":
        from mcr.agents import BaselineAgent

        agent = BaselineAgent(
            model=model,
            frames=args.frames,
            subscribers=subscribers,
            trace_dir=args.trace_dir,
            device=args.device,
            max_wall_s=args.max_time,
        )
    else:
        agent = Agent(
            model=model,
            tools=tools,
            max_steps=args.max_steps,
            max_wall_s=args.max_time,
            subscribers=subscribers,
            trace_dir=args.trace_dir,
            device=args.device,
            memory=memory_from(args),
            policy=args.policy,
            index=stages,
            caption_model=args.caption_model,
        )
    with _naming_trace(agent):
        result = _to_the_end(
            agent, lambda: agent.run(video, args.question, options=args.option or None, trace=args.trace)
        )
    if args.report and result.trace_path:
        from mcr.outputs.report_page import write_report

        print(f"report: {write_report(result)}", file=sys.stderr)
    return _report(result, args)


def _video_or_library(args: argparse.Namespace) -> Any:
    """The opened video, or the library when the arguments name several videos, a folder or a glob."""
    from mcr.media.collection import names_many
    from mcr.media.sources import open_video

    if args.library and args.video:
        raise CLIError("name videos or --library NAME, not both")
    if not args.library and not args.video:
        raise CLIError("name the video (or several, a folder, a glob) before the question, or --library NAME")
    if not args.library and len(args.video) == 1 and not names_many(args.video[0]):
        return open_video(args.video[0])
    if args.no_memory or args.policy == "baseline":
        raise CLIError("asking a library needs its index in the memory: drop --no-memory and --policy baseline")
    from mcr.tools.library import Library

    return Library.open(library_files(args) if args.library else args.video)


def _live_trace(args: argparse.Namespace) -> list:
    """The renderer that draws the run as it happens, unless --quiet or --json."""
    if args.quiet or args.json:
        return []
    from mcr.outputs.console import RichRenderer

    return [RichRenderer()]


def _to_the_end(agent: Any, start: Any) -> Any:
    """The run's result. A run that ended in ``error`` and then raised its error (one met before the
    first model turn) gives its result too: the run failed, and ``_report`` says so with exit 1."""
    ended: list = []

    def watch(event: Any) -> None:
        if event.kind == "run_finished" and event.depth == 0:
            ended.append(event.result)

    agent.subscribers.append(watch)
    try:
        return start()
    except MCRError:
        if ended and ended[-1].status == "error":
            return ended[-1]
        raise


@contextlib.contextmanager
def _naming_trace(agent: object):
    """An interrupt that ends a run carries the run's trace, for the line that says how to go on."""
    try:
        yield
    except KeyboardInterrupt as exc:
        exc.trace = getattr(agent, "last_trace", None)
        raise


def _report(result, args: argparse.Namespace) -> int:
    """A finished run on stdout (``--json``: the result; ``--quiet``: the answer) and its exit code."""
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    elif args.quiet:
        print(result.answer)
    if result.status == "error":
        print(f"{PROG}: error: the run failed: {result.error}", file=sys.stderr)
        return 1
    return 0 if result.ok else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from mcr.outputs.console import RichRenderer
    from mcr.run.trace import iter_trace

    render = RichRenderer()
    drawn, status = 0, None
    for event in iter_trace(args.trace, torn_end=True):
        render(event)
        drawn += 1
        if event.kind == "run_finished" and event.depth == 0:
            status = event.status
    if drawn == 0:
        raise CLIError(f"{args.trace} holds no events")
    if status is None:
        print(
            f"{PROG}: the trace ends before the run did (it was killed, or is still running); "
            f"continue it with `{PROG} resume {args.trace}`",
            file=sys.stderr,
        )
    elif status == "interrupted":
        print(f"{PROG}: the run was interrupted; continue it with `{PROG} resume {args.trace}`", file=sys.stderr)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from mcr.agents import Agent
    from mcr.run.policy import Policy
    from mcr.run.resume import load_unfinished

    started = load_unfinished(args.trace).started  # a finished or unreadable trace: one line, before any model loads
    subscribers = _live_trace(args)
    model = model_from(args, started.model, background=False)
    tools = [t for spec in args.tools for t in tool_specs(spec)]
    budget = started.budget
    agent = Agent(
        model=model,
        tools=tools,
        max_steps=budget.get("max_steps", 12),
        max_wall_s=budget.get("max_wall_s"),
        max_tokens=budget.get("max_tokens"),
        subscribers=subscribers,
        device=args.device,
        memory=memory_from(args, started.memory or False),
        policy=Policy.from_dict(started.policy) if started.policy else None,
        index=(),
    )
    with _naming_trace(agent):
        result = _to_the_end(agent, lambda: agent.resume(args.trace))
    return _report(result, args)


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="answer a question about a video or a library of videos")
    run.add_argument(
        "video",
        nargs="*",
        help="the video: a file, an http(s) URL of a media file, or a page yt-dlp reads; or a library: "
        "several of them, a folder or a glob (each video is indexed in the memory if it is not yet)",
    )
    run.add_argument("question", help="the question to answer")
    run.add_argument("--option", action="append", metavar="TEXT", help="a multiple-choice option (repeat)")
    add_library_option(run, "ask the videos recorded under this name (by index --library) instead")
    add_model_options(
        run,
        RUN_MODEL_HELP,
        endpoint="an OpenAI-compatible server (vLLM, SGLang, llama.cpp); --model names the served model",
        device=DEVICE_HELP,
        no_memory="run without memory or video index",
    )
    run.add_argument(
        "--no-constrain",
        action="store_true",
        help="let a local model without native tool calls write freely (no constrained decoding)",
    )
    run.add_argument(
        "--max-steps", type=count, default=12, metavar="N", help="model turns before asking for the answer"
    )
    run.add_argument("--max-time", type=positive, default=None, metavar="SECONDS", help="wall-time budget")
    run.add_argument(
        "--policy",
        default="mcr",
        choices=["mcr", "plain", "baseline"],
        help="mcr: perceive, plan, reflect, verify, investigate (default); plain: a bare tool loop; "
        "baseline: uniform frames and one answer",
    )
    run.add_argument("--frames", type=at_least_one, default=32, metavar="N", help="frames for --policy baseline")
    run.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="NAMES_OR_FILE",
        help="built-in tools to keep (e.g. asr,ocr,inspect_frames), or a .py file or module whose "
        "@tool functions are added (repeat)",
    )
    run.add_argument(
        "--index",
        default=None,
        metavar="STAGES",
        help="index stages to build before the run (default: shots, and transcript under --policy mcr)",
    )
    run.add_argument(
        "--caption-model",
        default=None,
        metavar="SPEC",
        help="the model that captions clips for --index captions (default: --model)",
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    run.add_argument("--trace", default=None, metavar="FILE", help="write the trace here")
    run.add_argument("--trace-dir", default=None, metavar="DIR", help="folder for traces (default .mcr/traces)")
    run.add_argument("--quiet", action="store_true", help="print only the answer")
    run.add_argument("--report", action="store_true", help="also write the run's HTML report beside its trace")
    run.set_defaults(func=cmd_run)


def register(sub: Any) -> None:
    _add_run(sub)

    replay = sub.add_parser("replay", help="draw a saved trace again")
    replay.add_argument("trace", help="a .jsonl trace")
    replay.set_defaults(func=cmd_replay)

    resume = sub.add_parser("resume", help="continue a run that was interrupted or killed, from its trace")
    resume.add_argument("trace", help="the run's .jsonl trace (the run goes on writing it)")
    add_model_options(
        resume,
        "the model (default: the one the trace names)",
        device=DEVICE_HELP,
        memory="memory database (default: the run's)",
        no_memory="go on without memory",
    )
    resume.add_argument(
        "--tools", action="append", default=[], metavar="NAMES_OR_FILE", help="the run's own tools, as for run"
    )
    resume.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    resume.add_argument("--quiet", action="store_true", help="print only the answer")
    resume.set_defaults(func=cmd_resume)
