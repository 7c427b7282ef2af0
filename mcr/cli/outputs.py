"""``mcr-agent report`` and ``mcr-agent clips``: what a finished run leaves to look at
(``mcr.outputs``): its HTML report, and its evidence cut as clips with a contact sheet."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mcr.cli.options import CLIError


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
