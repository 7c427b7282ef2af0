"""``mcr-agent``: run an agent on a video, replay a trace, list tools."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path
from typing import Sequence

from mcr.errors import MCRError, ToolNameError

PROG = "mcr-agent"


class CLIError(MCRError):
    """A command-line argument the user can fix (a tools file, an empty question...)."""


def _fail(message: str, code: int = 2) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def load_tools(spec: str) -> list:
    """``@tool`` objects from a Python file or an importable module."""
    from mcr.tools import Tool

    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise CLIError(f"tools file not found: {spec}")
        name = f"mcr_user_tools_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(spec)
        except ImportError as exc:
            raise CLIError(f"cannot import tools module {spec!r}: {exc}") from None
    found = [v for v in vars(module).values() if isinstance(v, Tool)]
    if not found:
        raise CLIError(f"{spec} defines no @tool functions")
    return found


def tool_specs(spec: str) -> list:
    """Names of built-in tools (``asr,ocr,inspect_frames``: only those are on) or the tools of a
    ``.py`` file or module (added to the built-in ones)."""
    from mcr.tools import BUILTIN_NAMES

    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names and all(n in BUILTIN_NAMES for n in names):
        return names
    if "," in spec:
        unknown = [n for n in names if n not in BUILTIN_NAMES]
        raise ToolNameError(
            f"unknown tool {unknown[0]!r} in --tools {spec}: the built-in tools are {', '.join(BUILTIN_NAMES)}"
        )
    return load_tools(spec)


def cmd_run(args: argparse.Namespace) -> int:
    from mcr.agents import Agent
    from mcr.media.sources import open_video

    if not args.question.strip():
        raise CLIError("the question is empty: pass it as the second argument, after the video")
    if args.max_steps < 0:
        raise CLIError(f"--max-steps must be 0 or more, not {args.max_steps}")
    video = open_video(args.video)  # checked (and fetched) first: a bad video fails before any model loads
    tools = [t for spec in args.tools for t in tool_specs(spec)]
    subscribers = _live_trace(args)
    memory = False if args.no_memory else args.memory
    stages = [s.strip() for s in args.index.split(",") if s.strip()] if args.index else None
    if stages:
        from mcr.memory.index import check_stages

        check_stages(stages, " in --index")
    from mcr.models import load_model

    model = load_model(  # checked here; a local model's weights then load while the video is indexed
        args.model,
        endpoint=args.endpoint,
        device=args.device,
        background=True,
        **({"constrain": False} if args.no_constrain else {}),
    )
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
            memory=memory,
            policy=args.policy,
            index=stages,
            caption_model=args.caption_model,
        )
    with _naming_trace(agent):
        result = agent.run(video, args.question, options=args.option or None, trace=args.trace)
    if args.report and result.trace_path:
        from mcr.outputs.report_page import write_report

        print(f"report: {write_report(result)}", file=sys.stderr)
    return _report(result, args)


def _live_trace(args: argparse.Namespace) -> list:
    """The renderer that draws the run as it happens, unless --quiet or --json."""
    if args.quiet or args.json:
        return []
    from mcr.outputs.console import RichRenderer

    return [RichRenderer()]


class Terminated(KeyboardInterrupt):
    """SIGTERM, ending a command the way Ctrl-C does (the run's trace says ``interrupted``)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


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
    count, status = 0, None
    for event in iter_trace(args.trace, torn_end=True):
        render(event)
        count += 1
        if event.kind == "run_finished" and event.depth == 0:
            status = event.status
    if count == 0:
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
    from mcr.models import load_model
    from mcr.run.policy import Policy
    from mcr.run.resume import load_unfinished

    started = load_unfinished(args.trace).started  # a finished or unreadable trace: one line, before any model loads
    subscribers = _live_trace(args)
    spec = args.model or started.model
    model = load_model(spec, endpoint=args.endpoint, device=args.device)
    tools = [t for spec in args.tools for t in tool_specs(spec)]
    memory = False if args.no_memory else (args.memory or started.memory or False)
    budget = started.budget
    agent = Agent(
        model=model,
        tools=tools,
        max_steps=budget.get("max_steps", 12),
        max_wall_s=budget.get("max_wall_s"),
        max_tokens=budget.get("max_tokens"),
        subscribers=subscribers,
        device=args.device,
        memory=memory,
        policy=Policy.from_dict(started.policy) if started.policy else None,
        index=(),
    )
    with _naming_trace(agent):
        result = agent.resume(args.trace)
    return _report(result, args)


def cmd_report(args: argparse.Namespace) -> int:
    from mcr.outputs.report_page import write_report

    if not Path(args.trace).is_file():
        raise CLIError(f"trace not found: {args.trace} (pass a .jsonl trace, e.g. from .mcr/traces)")
    out = write_report(args.trace, args.output, thumbnails=not args.no_thumbnails)
    print(out)
    if args.png:
        from mcr.outputs.report import run_report, timeline_png

        print(timeline_png(run_report(args.trace, thumbnails=False), args.png))
    return 0


def cmd_clips(args: argparse.Namespace) -> int:
    from mcr.outputs.clips import contact_sheet, cut_clips, spans_of_trace
    from mcr.types import TimeSpan

    source = Path(args.trace)
    if not source.is_file():
        raise CLIError(f"not found: {source} (pass a .jsonl trace, or a video with --spans)")
    if source.suffix == ".jsonl":
        video, spans = spans_of_trace(source)
    else:
        video, spans = str(source), []
    if args.spans:
        spans = [TimeSpan.parse(s.strip()) for s in args.spans.split(",") if s.strip()]
    if not spans:
        raise CLIError(f"{source}: no spans to cut (the run cited none): pass --spans")
    clips = cut_clips(video, spans, args.out, margin=args.margin)
    for c in clips:
        print(f"{c.path}  {c.span}  {'copied' if c.copied else 're-encoded'}")
    if args.sheet:
        print(contact_sheet(clips, Path(args.out) / args.sheet))
    return 0


def cmd_tools(args: argparse.Namespace) -> int:
    from mcr.tools import ToolRegistry, builtin_tools

    registry = ToolRegistry(builtin_tools(memory=True))
    for spec in args.tools:
        for t in load_tools(spec):
            registry.add(t, replace=True)
    if args.json:
        print(json.dumps(registry.schemas(), indent=2, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="MCR tools", show_lines=False)
    table.add_column("tool", style="bold")
    table.add_column("arguments")
    table.add_column("description")
    table.add_column("timeout")
    for t in registry.listing():
        props = t["parameters"].get("properties", {})
        required = set(t["parameters"].get("required", []))
        argtext = ", ".join(f"{k}{'' if k in required else '?'}: {v.get('type', 'any')}" for k, v in props.items())
        timeout = ("none" if t["timeout"] is None else f"{t['timeout']:g} s") + (
            ", can be stopped" if t["cancellable"] else ""
        )
        table.add_row(t["name"], argtext, t["description"].splitlines()[0] if t["description"] else "", timeout)
    Console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Answer questions about long videos with an agent.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="answer a question about a video")
    run.add_argument("video", help="the video: a file, an http(s) URL of a media file, or a page yt-dlp reads")
    run.add_argument("question", help="the question to answer")
    run.add_argument("--option", action="append", metavar="TEXT", help="a multiple-choice option (repeat)")
    run.add_argument(
        "--model",
        default=None,
        help="hub id, local model folder or .gguf, openai:MODEL@URL, or replay:FILE (default: $MCR_MODEL, "
        "else InternVideo3-8B-Instruct with a GPU, Qwen3-VL-2B-Instruct on CPU; see `models`)",
    )
    run.add_argument(
        "--endpoint",
        default=None,
        metavar="URL",
        help="an OpenAI-compatible server (vLLM, SGLang, llama.cpp); --model names the served model",
    )
    run.add_argument(
        "--no-constrain",
        action="store_true",
        help="let a local model without native tool calls write freely (no constrained decoding)",
    )
    run.add_argument("--max-steps", type=int, default=12, metavar="N", help="model turns before asking for the answer")
    run.add_argument("--max-time", type=float, default=None, metavar="SECONDS", help="wall-time budget")
    run.add_argument(
        "--policy",
        default="mcr",
        choices=["mcr", "plain", "baseline"],
        help="mcr: perceive, plan, reflect, verify, investigate (default); plain: a bare tool loop; "
        "baseline: uniform frames and one answer",
    )
    run.add_argument("--frames", type=int, default=32, metavar="N", help="frames for --policy baseline")
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
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device for local models")
    run.add_argument("--memory", default=None, metavar="FILE", help="memory database (default .mcr/memory.db)")
    run.add_argument("--no-memory", action="store_true", help="run without memory or video index")
    run.add_argument("--quiet", action="store_true", help="print only the answer")
    run.add_argument("--report", action="store_true", help="also write the run's HTML report beside its trace")
    run.set_defaults(func=cmd_run)

    replay = sub.add_parser("replay", help="draw a saved trace again")
    replay.add_argument("trace", help="a .jsonl trace")
    replay.set_defaults(func=cmd_replay)

    resume = sub.add_parser("resume", help="continue a run that was interrupted or killed, from its trace")
    resume.add_argument("trace", help="the run's .jsonl trace (the run goes on writing it)")
    resume.add_argument("--model", default=None, help="the model (default: the one the trace names)")
    resume.add_argument("--endpoint", default=None, metavar="URL", help="an OpenAI-compatible server for --model")
    resume.add_argument(
        "--tools", action="append", default=[], metavar="NAMES_OR_FILE", help="the run's own tools, as for run"
    )
    resume.add_argument("--memory", default=None, metavar="FILE", help="memory database (default: the run's)")
    resume.add_argument("--no-memory", action="store_true", help="go on without memory")
    resume.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device for local models")
    resume.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    resume.add_argument("--quiet", action="store_true", help="print only the answer")
    resume.set_defaults(func=cmd_resume)

    report = sub.add_parser("report", help="a run's report: one HTML file with the run on the video's timeline")
    report.add_argument("trace", help="a .jsonl trace")
    report.add_argument("-o", "--output", default=None, metavar="FILE", help="where (default: beside the trace)")
    report.add_argument("--png", default=None, metavar="FILE", help="also the timeline alone as a PNG")
    report.add_argument("--no-thumbnails", action="store_true", help="leave the frame thumbnails out")
    report.set_defaults(func=cmd_report)

    clips = sub.add_parser("clips", help="cut a run's evidence spans (or --spans) as MP4 clips, with a contact sheet")
    clips.add_argument("trace", help="a .jsonl trace (its video and evidence), or a video with --spans")
    clips.add_argument("out", help="folder for the clips")
    clips.add_argument("--spans", default=None, help='spans to cut instead, e.g. "00:01:02-00:01:10,95-100"')
    clips.add_argument("--margin", type=float, default=0.0, metavar="SECONDS", help="widen each span on both sides")
    clips.add_argument("--sheet", default="contact.jpg", metavar="NAME", help="contact sheet file name ('' for none)")
    clips.set_defaults(func=cmd_clips)

    tools = sub.add_parser("tools", help="list the tools and their schemas")
    tools.add_argument("--json", action="store_true", help="print the schemas as JSON")
    tools.add_argument("--tools", action="append", default=[], metavar="FILE_OR_MODULE", help="also load these tools")
    tools.set_defaults(func=cmd_tools)

    from mcr.cli.doctor import register as register_doctor

    register_doctor(sub)
    from mcr.cli.models import register as register_models

    register_models(sub)
    from mcr.cli.memory import register as register_memory

    register_memory(sub)
    from mcr.cli.live import register as register_watch

    register_watch(sub)
    from mcr.cli.analyze import register as register_analyze

    register_analyze(sub)
    from mcr.cli.serve import register as register_serve

    register_serve(sub)
    from mcr.cli.mcp import register as register_mcp

    register_mcp(sub)
    if importlib.util.find_spec("mcr.cli.m2la") is not None:
        from mcr.cli.m2la import register

        register(sub)
    importlib.import_module("mcr.eval.cli").register(sub)
    importlib.import_module("mcr.train.cli").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except MCRError as exc:  # every error a user can cause and fix: one line, its exit code
        return _fail(exc.one_line(), exc.exit_code)
    except KeyboardInterrupt as exc:
        trace = getattr(exc, "trace", None)
        code = 143 if isinstance(exc, Terminated) else 130
        if trace is None:
            return _fail("interrupted", code)
        return _fail(f"interrupted; the run's trace is {trace}: continue it with `{PROG} resume {trace}`", code)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
