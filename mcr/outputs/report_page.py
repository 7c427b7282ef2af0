"""The run report as one self-contained HTML file (no network: inline style and script,
thumbnails as data URLs, a content security policy that allows nothing else).

The timeline is an SVG over the video's length: shots as bands, one lane per run (the top one
and each ``investigate`` child) with the spans its tool calls touched, ticks for the frames the
model saw, and the evidence spans coloured by the verdict on them. Every mark and every step
carries ``data-start``/``data-end``; clicking one plays that moment in the page's player when
the video file sits where the run read it (a relative link), and shows the step.
"""

from __future__ import annotations

import html
import json
import os
import urllib.parse
from pathlib import Path

from mcr.errors import MCRError
from mcr.run.result import RunResult
from mcr.types import format_time

WIDTH = 1000  # the timeline's SVG units across
LANE = 22
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:16px;color:#1d2330}
h1{font-size:19px;margin:0 0 6px}.answer{font-size:17px;margin:8px 0}.muted{color:#667}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;background:#dde3ea}
.verified,.answered{background:#cdebd3}.failed,.error,.no_answer{background:#f4cccc}.unverified{background:#f8e3b8}
table.cost td{padding:1px 12px 1px 0}#timeline{position:relative;margin:14px 0 4px}
#timeline svg{display:block;width:100%;border:1px solid #ccd;background:#fafbfc}
.labels{display:flex;justify-content:space-between;font-size:11px;color:#667}
.lanes{font-size:11px;color:#445;margin:2px 0 8px}
rect.shot{fill:#d5dbe3}rect.shot.odd{fill:#bcc5d1}rect.touch{fill:#6f93c4;fill-opacity:.55}
rect.touch.error{fill:#c46f6f}line.frame{stroke:#222;stroke-width:1.2}
rect.evidence{fill:#e8a33d}rect.evidence.supported{fill:#3a9d5d}rect.evidence.contradicted{fill:#c0392b}
[data-start]{cursor:pointer}.strip{display:flex;gap:4px;overflow-x:auto;padding:4px 0}
.strip img{height:64px;border:1px solid #ccd}video{width:100%;max-height:300px;background:#000;margin:8px 0}
ol.steps{padding-left:26px}ol.steps li{margin:6px 0;padding:4px 8px;border-left:3px solid #ccd}
ol.steps li.call{border-color:#6f93c4}ol.steps li.answer{border-color:#e8a33d}ol.steps li.verdict{border-color:#3a9d5d}
ol.steps li.plan,ol.steps li.reflect,ol.steps li.perceive{border-color:#9a7fc4}li.active{background:#fff6df}
.kind{font-weight:600;margin-right:6px}pre{white-space:pre-wrap;margin:3px 0;font:12px/1.35 ui-monospace,monospace;
max-height:220px;overflow:auto;background:#f4f6f8;padding:4px}a.span{margin-right:6px}
"""
SCRIPT = """
const player = document.getElementById('player');
function show(el){
  document.querySelectorAll('li.active').forEach(x => x.classList.remove('active'));
  const step = el.dataset.step ? document.getElementById('step-' + el.dataset.step) : el.closest('li');
  if (step) { step.classList.add('active'); if (!el.closest('li')) step.scrollIntoView({block: 'nearest'}); }
}
document.querySelectorAll('[data-start]').forEach(el => el.addEventListener('click', ev => {
  ev.preventDefault();
  ev.stopPropagation();
  show(el);
  if (player) { player.currentTime = parseFloat(el.dataset.start); player.play().catch(() => {}); }
}));
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; media-src 'self' file:"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def span_attrs(a: float, b: float, step: int | None = None) -> str:
    extra = f' data-step="{step}"' if step is not None else ""
    return f'data-start="{a:.3f}" data-end="{b:.3f}"{extra}'


def span_link(a: float, b: float) -> str:
    return f'<a href="#" class="span" {span_attrs(a, b)}>{format_time(a)}-{format_time(b)}</a>'


def render(report: dict, out_dir: str | os.PathLike | None = None, video_url: str | None = None) -> str:
    """The report as HTML; ``out_dir`` is where the file goes (for the player's relative link),
    ``video_url`` the video's address instead (a page served over HTTP)."""
    d = max(float(report["duration"]), 1e-6)
    x = lambda t: max(0.0, min(WIDTH, float(t) / d * WIDTH))  # noqa: E731
    w = lambda a, b: max(1.5, x(b) - x(a))  # noqa: E731
    runs = report["runs"]
    lanes = ["shots"] + [("run " if r["depth"] == 0 else "investigate ") + r["run_id"][:8] for r in runs]
    lanes += ["frames seen", "evidence"]
    height = LANE * len(lanes)
    marks = []
    for i, (a, b) in enumerate(report["shots"]):
        marks.append(f'<rect class="shot{" odd" if i % 2 else ""}" x="{x(a):.2f}" y="2" width="{w(a, b):.2f}" '
                     f'height="{LANE - 4}" {span_attrs(a, b)}><title>shot {format_time(a)}-{format_time(b)}</title></rect>')  # fmt: skip
    lane_of = {r["run_id"]: 1 + i for i, r in enumerate(runs)}
    for s in report["steps"]:
        if s["kind"] != "call":
            continue
        y = lane_of.get(s["run_id"], 1) * LANE + 2
        for a, b in [sp for sp in s.get("spans", []) if sp]:
            cls = "touch error" if s.get("error") else "touch"
            marks.append(f'<rect class="{cls}" x="{x(a):.2f}" y="{y}" width="{w(a, b):.2f}" height="{LANE - 4}" '
                         f'{span_attrs(a, b, s["i"])}><title>{esc(s["name"])} {format_time(a)}-{format_time(b)}</title></rect>')  # fmt: skip
    fy = (len(lanes) - 2) * LANE
    for f in report["frames"]:
        marks.append(f'<line class="frame" x1="{x(f["t"]):.2f}" x2="{x(f["t"]):.2f}" y1="{fy + 3}" y2="{fy + LANE - 3}" '
                     f'{span_attrs(f["t"], f["t"], f["step"])}><title>frame {format_time(f["t"])}</title></line>')  # fmt: skip
    verdict = _final_verdict(report)
    ey = (len(lanes) - 1) * LANE
    for a, b in report["evidence"]:
        marks.append(f'<rect class="evidence {esc(verdict)}" x="{x(a):.2f}" y="{ey + 2}" width="{w(a, b):.2f}" '
                     f'height="{LANE - 4}" {span_attrs(a, b)}><title>evidence {format_time(a)}-{format_time(b)}'
                     f"{': ' + esc(verdict) if verdict else ''}</title></rect>")  # fmt: skip
    svg = (f'<svg id="timeline-svg" viewBox="0 0 {WIDTH} {height}" preserveAspectRatio="none" height="{height}" '
           f'data-duration="{d:.3f}" role="img" aria-label="timeline">{"".join(marks)}</svg>')  # fmt: skip
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>MCR run: {esc(report['question'][:80])}</title><style>{CSS}</style></head><body>",
        _header(report),
        '<section id="timeline">',
        f'<div class="lanes">lanes, top to bottom: {esc(" · ".join(lanes))}</div>',
        svg,
        f'<div class="labels"><span>{format_time(0)}</span><span>{format_time(d / 2)}</span><span>{format_time(d)}</span></div>',
        _strip(report),
        "</section>",
        _player(report, out_dir, video_url),
        _excerpts(report),
        _steps(report),
        f"<script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _final_verdict(report: dict) -> str:
    verdicts = [v for v in report["verdicts"] if v.get("verdict")]
    return verdicts[-1]["verdict"] if verdicts else ""


def _header(report: dict) -> str:
    c = report["cost"]
    options = "".join(f"<li>{chr(65 + i)}. {esc(o)}</li>" for i, o in enumerate(report["options"]))
    video = report["video"]
    name = (video.get("source") or {}).get("url") or Path(video.get("path", "")).name
    rows = [
        ("model", report["model"]),
        ("video", f"{name} ({format_time(report['duration'])})"),
        ("model calls", c["model_calls"]),
        ("tokens", f"{c['input_tokens']} in, {c['output_tokens']} out"),
        ("frames seen", c["frames_seen"]),
        ("steps", c["steps"]),
        ("wall time", f"{c['wall_s']:.2f} s"),
    ]
    table = "".join(f"<tr><td class='muted'>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    evidence = " ".join(span_link(a, b) for a, b in report["evidence"]) or "none"
    error = f"<p class='muted'>error: {esc(report['error'])}</p>" if report.get("error") else ""
    return (
        f"<header><h1 id='question'>{esc(report['question'])}</h1>"
        + (f"<ol class='options' type='A'>{options}</ol>" if options else "")
        + f"<div class='answer' id='answer'>{esc(report['answer']) or '<i>no answer</i>'} "
        + f"<span class='badge {esc(report['status'])}' id='status'>{esc(report['status'])}</span></div>"
        + f"<div>evidence: {evidence}</div>{error}<table class='cost' id='cost'>{table}</table></header>"
    )


def _player(report: dict, out_dir: str | os.PathLike | None, video_url: str | None = None) -> str:
    if video_url:
        return f'<video id="player" controls preload="metadata" src="{esc(video_url)}"></video>'
    path = report["video"].get("path")
    if not path or not Path(path).is_file():
        return "<p class='muted'>The video file is not where the run read it: the report reads without it.</p>"
    base = Path(out_dir) if out_dir else Path.cwd()
    rel = os.path.relpath(path, base)
    return f'<video id="player" controls preload="metadata" src="{esc(urllib.parse.quote(rel))}"></video>'


def _strip(report: dict) -> str:
    thumbs = report.get("thumbs") or {}
    if not thumbs:
        return ""
    imgs = "".join(
        f'<img class="thumb" alt="frame at {format_time(float(t))}" src="{src}" {span_attrs(float(t), float(t))}>'
        for t, src in sorted(thumbs.items(), key=lambda kv: float(kv[0]))
    )
    return f'<div class="strip" id="thumbs">{imgs}</div>'


def _excerpts(report: dict) -> str:
    if not report["excerpts"]:
        return ""
    items = "".join(
        f"<li>{span_link(*e['span'])}<span class='kind'>{esc(e['kind'])}</span>{esc(e['text'])}</li>"
        for e in report["excerpts"]
    )
    return f"<section><h2>What the cited spans hold</h2><ul id='excerpts'>{items}</ul></section>"


def _steps(report: dict) -> str:
    items = []
    for s in report["steps"]:
        label = {"call": s.get("name", "call"), "verdict": f"verdict: {s.get('verdict', '')}"}.get(s["kind"], s["kind"])
        lane = "" if s.get("depth", 0) == 0 else f" <span class='muted'>(investigate, depth {s['depth']})</span>"
        body = ""
        if s["kind"] == "call":
            body += f"<pre class='args'>{esc(json.dumps(s.get('arguments', {}), ensure_ascii=False))}</pre>"
        text = s.get("text") or s.get("reason") or ""
        if text:
            body += f"<pre>{esc(text[:4000])}{'…' if len(text) > 4000 else ''}</pre>"
        spans = " ".join(span_link(a, b) for a, b in [sp for sp in s.get("spans", []) if sp])
        attrs = f" {span_attrs(*s['spans'][0])}" if s.get("spans") and s["spans"][0] else ""
        items.append(
            f'<li id="step-{s["i"]}" class="step {esc(s["kind"])}"{attrs}><span class="kind">{esc(label)}</span>'
            f"{lane}{(' ' + spans) if spans else ''}{body}</li>"
        )
    return f"<section><h2>Steps</h2><ol class='steps' id='steps'>{''.join(items)}</ol></section>"


def write_report(
    trace: str | os.PathLike | RunResult, out: str | os.PathLike | None = None, thumbnails: bool = True
) -> Path:
    """Write the HTML report of ``trace`` (a trace file, or the ``RunResult`` of a run that wrote
    one) to ``out`` (default: beside the trace, ``.html``)."""
    if isinstance(trace, RunResult):
        if not trace.trace_path:
            raise MCRError("this run wrote no trace (trace_dir=False): there is nothing to report from")
        trace = trace.trace_path
    from mcr.outputs.report import run_report

    out = Path(out) if out else Path(trace).with_suffix(".html")
    from mcr.files import write_text

    return write_text(out, render(run_report(trace, thumbnails), out.parent.resolve()))


__all__ = ["render", "write_report"]
