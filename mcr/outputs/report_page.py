"""The run report as one self-contained HTML file (no network: inline style and script,
thumbnails as data URLs, a content security policy that allows nothing else).

The pieces are :mod:`mcr.outputs.run_view`'s, the same the service's page draws a live run with.
The timeline is an SVG over the video's length: shots as bands, one lane per run (the top one
and each ``investigate`` child) with the spans its tool calls touched, ticks for the frames the
model saw, and the evidence spans coloured by the verdict on them. Every mark and every step
carries ``data-start``/``data-end``; clicking one plays that moment in the page's player when
the video file sits where the run read it (a relative link), and shows the step.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from mcr.errors import MCRError
from mcr.outputs.run_view import CSS, SCRIPT, esc, excerpts, header, steps, timeline
from mcr.run.result import RunResult

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; media-src 'self' file:"


def render(report: dict, out_dir: str | os.PathLike | None = None, video_url: str | None = None) -> str:
    """The report as HTML; ``out_dir`` is where the file goes (for the player's relative link),
    ``video_url`` the video's address instead (a page served over HTTP)."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>MCR run: {esc(report['question'][:80])}</title><style>{CSS}</style></head><body>",
        header(report),
        timeline(report),
        player(report, out_dir, video_url),
        excerpts(report),
        steps(report),
        f"<script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def player(report: dict, out_dir: str | os.PathLike | None, video_url: str | None = None) -> str:
    if video_url:
        return f'<video id="player" controls preload="metadata" src="{esc(video_url)}"></video>'
    path = report["video"].get("path")
    if not path or not Path(path).is_file():
        return "<p class='muted'>The video file is not where the run read it: the report reads without it.</p>"
    base = Path(out_dir) if out_dir else Path.cwd()
    rel = os.path.relpath(path, base)
    return f'<video id="player" controls preload="metadata" src="{esc(urllib.parse.quote(rel))}"></video>'


def write_report(
    trace: str | os.PathLike | RunResult, out: str | os.PathLike | None = None, thumbnails: bool = True
) -> Path:
    """Write the HTML report of ``trace`` (a trace file, or the ``RunResult`` of a run that wrote
    one) to ``out`` (default: beside the trace, ``.html``)."""
    if isinstance(trace, RunResult):
        if not trace.trace_path:
            raise MCRError("this run wrote no trace (trace_dir=False): there is nothing to report from")
        trace = trace.trace_path
    from mcr.files import write_text
    from mcr.outputs.report import run_report

    out = Path(out) if out else Path(trace).with_suffix(".html")
    return write_text(out, render(run_report(trace, thumbnails), out.parent.resolve()))


__all__ = ["render", "write_report"]
