"""The evaluation report as one HTML file beside ``report.png``: accuracy per category with its
95% interval, one column per result folder (two side by side), the figure, and every question
with its outcome in each folder, linked to its run report (written beside its trace)."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Sequence

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:16px;color:#1d2330}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #e3e6ea;text-align:left}
.bar{position:relative;width:220px;height:14px;background:#eef1f4}.fill{position:absolute;height:14px;background:#6f93c4}
.ci{position:absolute;top:6px;height:2px;background:#1d2330}.ok{color:#2e7d4f}.no{color:#b03a2e}img{max-width:100%}
"""
THUMBNAILS_UP_TO = 50  # questions whose run reports get frame thumbnails (more: reports without them)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "<td>–</td>"
    value, (lo, hi) = m["value"], m["ci"]
    bar = (
        f'<div class="bar"><div class="fill" style="width:{value * 100:.1f}%"></div>'
        f'<div class="ci" style="left:{lo * 100:.1f}%;width:{max(0.5, (hi - lo) * 100):.1f}%"></div></div>'
    )
    return f'<td class="acc" data-value="{value:.4f}">{value * 100:.1f}% [{lo * 100:.1f}, {hi * 100:.1f}] n={m["n"]}{bar}</td>'


def _run_report(out: Path, record: dict, target_dir: Path, thumbnails: bool) -> str | None:
    """The relative link to the record's run report, written beside its trace when missing."""
    trace = out / record.get("trace", "")
    if not record.get("trace") or not trace.is_file():
        return None
    page = trace.with_suffix(".html")
    if not page.exists():
        from mcr.outputs.report_page import write_report

        try:
            write_report(trace, page, thumbnails=thumbnails)
        except Exception:  # noqa: BLE001 - a trace that cannot be drawn: the question is listed without a link
            return None
    return os.path.relpath(page, target_dir)


def write_html(
    dirs: Sequence[str | Path],
    records: Sequence[list[dict]],
    bars: Sequence[dict[str, dict]],
    names: Sequence[str],
    png: Path | None,
    target: Path,
) -> Path:
    """``bars``: each folder's accuracy per category (``report._bars``)."""
    keys = list(dict.fromkeys(k for b in bars for k in b))
    head = "".join(f"<th>{esc(n)}</th>" for n in names)
    rows = "".join(f"<tr><td>{esc(k)}</td>{''.join(_cell(b.get(k)) for b in bars)}</tr>" for k in keys)
    figure = ""
    if png is not None and Path(png).is_file():
        data = base64.b64encode(Path(png).read_bytes()).decode()
        figure = f'<img id="figure" alt="accuracy per category" src="data:image/png;base64,{data}">'
    by_id = [{str(r["id"]): r for r in recs} for recs in records]
    ids = sorted(set().union(*[set(b) for b in by_id]))
    thumbs = len(ids) <= THUMBNAILS_UP_TO
    lines = []
    for qid in ids:
        cells = []
        for d, found in zip(dirs, by_id):
            r = found.get(qid)
            if r is None:
                cells.append("<td>–</td>")
                continue
            mark = "" if r.get("correct") is None else ("✓" if r["correct"] else "✗")
            cls = "ok" if r.get("correct") else "no"
            link = _run_report(Path(d), r, target.parent, thumbs)
            text = f"{mark} {esc(r.get('status', ''))}: {esc(str(r.get('answer') or '')[:80])}"
            cells.append(
                f'<td class="{cls}">' + (f'<a class="run" href="{esc(link)}">{text}</a>' if link else text) + "</td>"
            )
        first = next((f[qid] for f in by_id if qid in f), {})
        lines.append(
            f"<tr><td>{esc(qid)}</td><td>{esc(str(first.get('question', ''))[:120])}</td>{''.join(cells)}</tr>"
        )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>Evaluation: {esc(' vs '.join(names))}</title><style>{CSS}</style></head><body>"
        f"<h1>Evaluation: {esc(' vs '.join(names))}</h1>"
        f'<table id="accuracy"><tr><th>category</th>{head}</tr>{rows}</table>{figure}'
        f'<h2>Questions</h2><table id="questions"><tr><th>id</th><th>question</th>{head}</tr>{"".join(lines)}</table>'
        "</body></html>"
    )
    from mcr.files import write_text

    return write_text(target, page)


__all__ = ["write_html"]
