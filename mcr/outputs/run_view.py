"""The drawing of a run, in pieces: its header (question, answer, verdict, cost), its timeline
(shots, one lane per run, frames seen, evidence coloured by verdict, thumbnails), the excerpts of
the cited spans and its steps. The report file (:mod:`mcr.outputs.report_page`) and the service's
page (a run drawn as it goes) put the same pieces together, so a run looks the same live and
finished. Each piece takes the dict :func:`mcr.outputs.report.run_report` makes.

Quoted material (speech, on-screen text, web pages: the ``<data source=... trust=...>`` blocks
the model reads) is shown as a labelled quotation, never as the markup. Every mark carries
``data-start``/``data-end``; :data:`SCRIPT` plays that moment in the page's ``#player``.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from mcr.types import format_time

WIDTH = 1000  # the timeline's SVG units across
LANE = 22  # pixels a lane
TEXT_LIMIT = 4000  # characters of a step's text shown
VERDICTS = {"supported": "supported", "contradicted": "contradicted", "insufficient": "insufficient", "": "not checked"}
_BLOCK = re.compile(r'<data source="([^"]*)" trust="[^"]*">\n?(.*?)(?:\n?</data>|\Z)', re.DOTALL)

CSS = """
:root{--ink:#1d2330;--muted:#667085;--line:#d7dde5;--panel:#f6f8fa;--accent:#2f6fb7;--evidence:#e8a33d;
--ok:#3a9d5d;--bad:#c0392b;--touch:#6f93c4}
*{box-sizing:border-box}
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:20px;color:var(--ink)}
h1{font-size:20px;margin:0 0 6px;line-height:1.3}h2{font-size:15px;margin:22px 0 8px;color:#344054}
.muted{color:var(--muted)}
header .answer{font-size:18px;margin:8px 0;font-weight:600}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-size:12px;font-weight:500;background:#dde3ea;
vertical-align:2px;margin-left:4px}
.verified,.answered{background:#cdebd3}.failed,.error,.no_answer{background:#f4cccc}
.unverified,.interrupted{background:#f8e3b8}.running,.queued,.unfinished{background:#dbe7f6}
table.cost{border-collapse:collapse;margin:8px 0 4px;font-size:13px}
table.cost td{padding:1px 14px 1px 0}table.cost td.muted{padding-right:6px}
ol.options{margin:4px 0;padding-left:24px}
#timeline{margin:16px 0 6px}
.tl{display:grid;grid-template-columns:130px 1fr;gap:8px}
.lanes{font-size:11px;color:#475467;padding-top:1px}
.lanes div{height:22px;line-height:22px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;text-align:right}
#timeline svg{display:block;width:100%;border:1px solid var(--line);border-radius:4px;background:#fafbfc}
.labels{display:flex;justify-content:space-between;font-size:11px;color:var(--muted)}
.legend{display:flex;gap:14px;font-size:12px;color:#475467;margin:6px 0 0 138px;flex-wrap:wrap}
.legend span::before{content:"";display:inline-block;width:12px;height:10px;border-radius:2px;margin-right:5px;
vertical-align:-1px;background:var(--evidence)}
.legend .supported::before{background:var(--ok)}.legend .contradicted::before{background:var(--bad)}
.legend .touch::before{background:var(--touch);opacity:.7}.legend .frame::before{width:2px;background:#222}
rect.shot{fill:#e3e8ee}rect.shot.odd{fill:#cdd5df}rect.touch{fill:var(--touch);fill-opacity:.6}
rect.touch.error{fill:#c46f6f}line.frame{stroke:#222;stroke-width:1.2}
rect.evidence{fill:var(--evidence)}rect.evidence.supported{fill:var(--ok)}rect.evidence.contradicted{fill:var(--bad)}
[data-start]{cursor:pointer}
.strip{display:flex;gap:6px;overflow-x:auto;padding:8px 0 4px;margin-left:138px}
.strip img{height:64px;border:1px solid var(--line);border-radius:3px;flex:none}
.strip img:hover{outline:2px solid var(--accent)}
video{width:100%;max-height:320px;background:#000;margin:10px 0;border-radius:4px}
ol.steps{padding-left:30px;margin:0}
ol.steps li{margin:8px 0;padding:6px 10px;border-left:3px solid var(--line);background:#fff;border-radius:0 4px 4px 0}
ol.steps li.call{border-color:var(--touch)}ol.steps li.answer{border-color:var(--evidence)}
ol.steps li.verdict{border-color:var(--ok)}ol.steps li.thought{border-color:#b9c2cf}
ol.steps li.plan,ol.steps li.reflect,ol.steps li.perceive{border-color:#9a7fc4}li.active{background:#fff6df}
.kind{font-weight:600;margin-right:6px}a.span{margin-right:6px;color:var(--accent);font-size:12px}
pre.args{white-space:pre-wrap;margin:4px 0;font:12px/1.4 ui-monospace,monospace;background:var(--panel);
padding:3px 6px;border-radius:3px;color:#344054}
.text{white-space:pre-wrap;margin:4px 0;max-height:260px;overflow:auto;font-size:13px}
blockquote.quoted{margin:4px 0;padding:4px 10px;border-left:3px solid #c9b458;background:#fbf8ec;white-space:pre-wrap;
font-size:13px}
blockquote.quoted .source{display:block;font-size:11px;font-weight:600;color:#8a7a2c;text-transform:uppercase;
letter-spacing:.04em}
#excerpts{padding-left:18px}#excerpts li{margin:3px 0}
"""

# one click handler for the whole document, so steps drawn after the page loaded play too
SCRIPT = """
document.addEventListener('click', ev => {
  const el = ev.target.closest ? ev.target.closest('[data-start]') : null;
  if (!el || ev.target.closest('a:not(.span)')) return;
  ev.preventDefault();
  document.querySelectorAll('li.active').forEach(x => x.classList.remove('active'));
  const step = el.dataset.step ? document.getElementById('step-' + el.dataset.step) : el.closest('li');
  if (step) { step.classList.add('active'); if (!el.closest('li')) step.scrollIntoView({block: 'nearest'}); }
  const player = document.getElementById('player');
  if (player && player.currentSrc) { player.currentTime = parseFloat(el.dataset.start); player.play().catch(() => {}); }
});
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def span_attrs(a: float, b: float, step: int | None = None) -> str:
    extra = f' data-step="{step}"' if step is not None else ""
    return f'data-start="{a:.3f}" data-end="{b:.3f}"{extra}'


def span_link(a: float, b: float) -> str:
    return f'<a href="#" class="span" {span_attrs(a, b)}>{format_time(a)}-{format_time(b)}</a>'


def quoted_html(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` as HTML: its data blocks become quotations labelled with their source, the rest
    plain text. Over ``limit`` characters it is cut at a line's end, and a block cut open is
    shown up to the cut."""
    text = str(text or "")
    more = len(text) > limit
    if more:
        head = text[:limit]
        text = head[: head.rfind("\n")] if "\n" in head[limit // 2 :] else head
    parts, at = [], 0
    for m in _BLOCK.finditer(text):
        plain = text[at : m.start()].strip("\n")
        if plain:
            parts.append(esc(plain))
        source = m.group(1).replace("-", " ").replace("_", " ") or "quoted"
        parts.append(
            f'<blockquote class="quoted"><span class="source">{esc(source)}</span>{esc(m.group(2))}</blockquote>'
        )
        at = m.end()
    rest = text[at:].strip("\n")
    if rest:
        parts.append(esc(rest))
    return "\n".join(parts) + (" …" if more else "")


def final_verdict(report: dict) -> str:
    verdicts = [v for v in report["verdicts"] if v.get("verdict")]
    return verdicts[-1]["verdict"] if verdicts else ""


def header(report: dict) -> str:
    """The question, the options, the answer with its status, the evidence and the cost."""
    c = report["cost"]
    options = "".join(f"<li>{esc(o)}</li>" for o in report["options"])
    video = report["video"]
    name = (video.get("source") or {}).get("url") or Path(video.get("path", "")).name
    library = [f"{v.get('name', '')} ({format_time(v.get('duration') or 0)})" for v in video.get("library") or []]
    rows = [
        ("model", report["model"]),
        ("library", ", ".join(library)) if library else ("video", f"{name} ({format_time(report['duration'])})"),
        ("model calls", c["model_calls"]),
        ("tokens", f"{c['input_tokens']} in, {c['output_tokens']} out"),
        ("frames seen", c["frames_seen"]),
        ("steps", c["steps"]),
        ("wall time", f"{c['wall_s']:.2f} s"),
    ]
    table = "".join(f"<tr><td class='muted'>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    named = list(report.get("evidence_videos") or []) + [""] * len(report["evidence"])
    evidence = (
        " ".join((f"{esc(v)} " if v else "") + span_link(a, b) for (a, b), v in zip(report["evidence"], named))
        or "<span class='muted'>none yet</span>"
    )
    error = f"<p class='muted'>error: {esc(report['error'])}</p>" if report.get("error") else ""
    going = report["status"] in ("running", "queued", "unfinished")
    answer = (
        quoted_html(report["answer"]) if report["answer"] else f"<i>{'no answer yet' if going else 'no answer'}</i>"
    )
    return (
        f"<header><h1 id='question'>{esc(report['question'])}</h1>"
        + (f"<ol class='options' type='A'>{options}</ol>" if options else "")
        + f"<div class='answer' id='answer'>{answer} "
        + f"<span class='badge {esc(report['status'])}' id='status'>{esc(report['status'])}</span></div>"
        + f"<div>evidence: {evidence}</div>{error}<table class='cost' id='cost'>{table}</table></header>"
    )


def _lanes(report: dict) -> list[str]:
    names = [("run " if r["depth"] == 0 else "investigate ") + r["run_id"][:8] for r in report["runs"]]
    return ["shots", *names, "frames seen", "evidence"]


def _marks(report: dict, lanes: list[str]) -> list[str]:
    d = max(float(report["duration"]), 1e-6)
    x = lambda t: max(0.0, min(WIDTH, float(t) / d * WIDTH))  # noqa: E731
    w = lambda a, b: max(1.5, x(b) - x(a))  # noqa: E731
    marks = []
    for i, (a, b) in enumerate(report["shots"]):
        marks.append(f'<rect class="shot{" odd" if i % 2 else ""}" x="{x(a):.2f}" y="2" width="{w(a, b):.2f}" '
                     f'height="{LANE - 4}" {span_attrs(a, b)}><title>shot {format_time(a)}-{format_time(b)}</title></rect>')  # fmt: skip
    lane_of = {r["run_id"]: 1 + i for i, r in enumerate(report["runs"])}
    for s in report["steps"]:
        if s["kind"] != "call":
            continue
        y = lane_of.get(s["run_id"], 1) * LANE + 2
        where = f" in {esc(s['video'])}" if s.get("video") else ""
        for a, b in [sp for sp in s.get("spans", []) if sp]:
            cls = "touch error" if s.get("error") else "touch"
            marks.append(f'<rect class="{cls}" x="{x(a):.2f}" y="{y}" width="{w(a, b):.2f}" height="{LANE - 4}" '
                         f'{span_attrs(a, b, s["i"])}><title>{esc(s["name"])}{where} {format_time(a)}-{format_time(b)}</title></rect>')  # fmt: skip
    fy = (len(lanes) - 2) * LANE
    for f in report["frames"]:
        marks.append(f'<line class="frame" x1="{x(f["t"]):.2f}" x2="{x(f["t"]):.2f}" y1="{fy + 3}" y2="{fy + LANE - 3}" '
                     f'{span_attrs(f["t"], f["t"], f["step"])}><title>frame {format_time(f["t"])}</title></line>')  # fmt: skip
    verdict = final_verdict(report)
    label = VERDICTS.get(verdict, verdict)
    ey = (len(lanes) - 1) * LANE
    for a, b in report["evidence"]:
        title = f"evidence {format_time(a)}-{format_time(b)}: {label}"
        marks.append(f'<rect class="evidence {esc(verdict)}" x="{x(a):.2f}" y="{ey + 2}" width="{w(a, b):.2f}" '
                     f'height="{LANE - 4}" {span_attrs(a, b)} aria-label="{esc(title)}"><title>{esc(title)}</title></rect>')  # fmt: skip
    return marks


def timeline(report: dict, thumbs: dict[str, str] | None = None) -> str:
    """The timeline section: a labelled lane for shots, each run, the frames seen and the evidence,
    a legend, and under it ``thumbs`` (``{"12.5": image address}``; default the report's own)."""
    d = max(float(report["duration"]), 1e-6)
    lanes = _lanes(report)
    height = LANE * len(lanes)
    svg = (f'<svg id="timeline-svg" viewBox="0 0 {WIDTH} {height}" preserveAspectRatio="none" height="{height + 2}" '
           f'data-duration="{d:.3f}" role="img" aria-label="timeline">{"".join(_marks(report, lanes))}</svg>')  # fmt: skip
    names = "".join(f"<div>{esc(n)}</div>" for n in lanes)
    ticks = f"<span>{format_time(0)}</span><span>{format_time(d / 2)}</span><span>{format_time(d)}</span>"
    keys = [("touch", "spans a tool looked at"), ("frame", "frame seen")]
    keys += [(k or "unchecked", f"evidence: {v}") for k, v in VERDICTS.items()]
    legend = "".join(f'<span class="{k}">{esc(v)}</span>' for k, v in keys)
    return (
        f'<section id="timeline"><div class="tl"><div class="lanes">{names}</div>'
        f'<div class="track">{svg}<div class="labels">{ticks}</div></div></div>'
        f'<div class="legend">{legend}</div>{strip(report, thumbs)}</section>'
    )


def strip(report: dict, thumbs: dict[str, str] | None = None) -> str:
    """The frames the model saw as thumbnails, in time order; a click plays the frame and shows
    the step that looked at it."""
    thumbs = (report.get("thumbs") or {}) if thumbs is None else thumbs
    if not thumbs:
        return ""
    step_at = {f"{round(f['t'], 3):g}": f["step"] for f in report["frames"]}
    imgs = "".join(
        f'<img class="thumb" alt="frame at {format_time(float(t))}" title="frame at {format_time(float(t))}" '
        f'src="{esc(src)}" {span_attrs(float(t), float(t), step_at.get(t))}>'
        for t, src in sorted(thumbs.items(), key=lambda kv: float(kv[0]))
    )
    return f'<div class="strip" id="thumbs">{imgs}</div>'


def excerpts(report: dict) -> str:
    if not report["excerpts"]:
        return ""
    items = "".join(
        f"<li>{span_link(*e['span'])}<span class='kind'>{esc(e['kind'])}</span>{esc(e['text'])}</li>"
        for e in report["excerpts"]
    )
    return f"<section><h2>What the cited spans hold</h2><ul id='excerpts'>{items}</ul></section>"


def step(s: dict) -> str:
    """One step as a list item: its kind, the run it belongs to, its spans, a call's arguments and
    its text (quoted material as quotations)."""
    label = {"call": s.get("name", "call"), "verdict": f"verdict: {s.get('verdict', '')}"}.get(s["kind"], s["kind"])
    label += f" in {s['video']}" if s.get("video") else ""  # a library run: the video the call looked at
    lane = "" if s.get("depth", 0) == 0 else f" <span class='muted'>(investigate, depth {s['depth']})</span>"
    body = ""
    if s["kind"] == "call":
        body += f"<pre class='args'>{esc(json.dumps(s.get('arguments', {}), ensure_ascii=False))}</pre>"
    text = s.get("text") or s.get("reason") or ""
    if text:
        body += f"<div class='text'>{quoted_html(text)}</div>"
    spans = " ".join(span_link(a, b) for a, b in [sp for sp in s.get("spans", []) if sp])
    attrs = f" {span_attrs(*s['spans'][0])}" if s.get("spans") and s["spans"][0] else ""
    return (
        f'<li id="step-{s["i"]}" class="step {esc(s["kind"])}"{attrs}><span class="kind">{esc(label)}</span>'
        f"{lane}{(' ' + spans) if spans else ''}{body}</li>"
    )


def steps(report: dict) -> str:
    return f"<section><h2>Steps</h2><ol class='steps' id='steps'>{''.join(step(s) for s in report['steps'])}</ol></section>"


def thumb_times(report: dict, limit: int) -> list[float]:
    """Up to ``limit`` of the times of the frames seen, spread over them."""
    unique = sorted({round(f["t"], 3) for f in report["frames"]})
    if len(unique) > limit:
        unique = [unique[int(i * len(unique) / limit)] for i in range(limit)]
    return unique


__all__ = ["CSS", "SCRIPT", "excerpts", "header", "quoted_html", "step", "steps", "strip", "thumb_times", "timeline"]
