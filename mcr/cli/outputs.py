"""``mcr-agent report`` and ``mcr-agent clips``: what a finished run leaves to look at
(``mcr.outputs``): its HTML report, and its evidence cut as clips with a contact sheet."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mcr.cli.options import CLIError, output_folder
from mcr.errors import MCRError


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
    out = output_folder(args.out, "the clips")
    spans = [TimeSpan.parse(s.strip()) for s in args.spans.split(",") if s.strip()] if args.spans else []
    if _is_trace(source):
        video, cited = spans_of_trace(source)
        if not spans and not cited:
            raise CLIError(f"{source}: no spans to cut (the run cited none): pass --spans")
    else:
        video = _video_or_fail(source)
        if not spans:
            raise CLIError(f"{source} is a video: pass --spans to say what to cut from it")
    clips = cut_clips(video, spans or cited, out, margin=args.margin)
    for c in clips:
        print(f"{c.path}  {c.span}  {'copied' if c.copied else 're-encoded'}")
    if args.sheet:
        print(contact_sheet(clips, Path(args.out) / args.sheet))
    return 0


def _is_trace(path: Path) -> bool:
    """A run's trace (``.jsonl``, or a file whose first line is a JSON object) rather than a video."""
    if path.suffix == ".jsonl":
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"{"


def _video_or_fail(path: Path) -> str:
    """``path`` when it holds a video; otherwise one line saying it is neither a trace nor a video."""
    from mcr.media.video import Video

    try:
        Video(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read it means the same to the user
        reason = exc.one_line() if isinstance(exc, MCRError) else f"{type(exc).__name__}: {exc}"
        raise CLIError(f"{path} is neither a run's trace (.jsonl) nor a video it can read ({reason})") from None
    return str(path)


def register(sub: Any) -> None:
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
