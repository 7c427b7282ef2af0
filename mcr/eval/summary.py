"""The report of one evaluation folder, or two side by side: a table printed, a PNG and an
HTML page (``report.html``, :mod:`.summary_page`) saved.

The figure has two panels: accuracy per category (overall first) with 95% bootstrap
intervals, one bar per result folder; and, per question, correctness (IoU for grounding)
against frames seen, with the accuracy of frames-seen bins drawn as a line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .metrics import format_comparison, format_summary, summarize
from .results import read_results
from .samples import EvalError


def load_records(out_dir: str | Path) -> list[dict]:
    out = Path(out_dir)
    if not out.is_dir():
        raise EvalError(f"result folder not found: {out}")
    records = list(read_results(out / "results.jsonl").values())
    if not records:
        raise EvalError(f"{out} holds no results (results.jsonl is missing or empty)")
    return records


def run_title(out_dir: str | Path) -> str:
    out = Path(out_dir)
    try:
        cfg = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return out.name
    agent = cfg.get("agent") or {}
    parts = [cfg.get("benchmark"), agent.get("agent"), agent.get("model")]
    return f"{out.name} ({', '.join(str(p) for p in parts if p)})"


def report(dirs: Sequence[str | Path], png: str | Path | None = None) -> tuple[str, Path | None]:
    """The printed report of one folder, or the comparison of two; the PNG path when one was written."""
    if not 1 <= len(dirs) <= 2:
        raise EvalError("report takes one result folder, or two to compare")
    records = [load_records(d) for d in dirs]
    summaries = [summarize(r) for r in records]
    for d, s in zip(dirs, summaries):
        (Path(d) / "summary.json").write_text(json.dumps(s, indent=2), encoding="utf-8")
    if len(dirs) == 1:
        text = format_summary(summaries[0], title=run_title(dirs[0]))
    else:
        names = (Path(dirs[0]).name, Path(dirs[1]).name)
        if names[0] == names[1]:
            names = (str(dirs[0]), str(dirs[1]))
        text = f"A: {run_title(dirs[0])}\nB: {run_title(dirs[1])}\n" + format_comparison(*summaries, names=names)
    target = None
    if png is not False:
        target = Path(png) if png else Path(dirs[0]) / "report.png"
        draw(records, summaries, [Path(d).name for d in dirs], target)
    from .summary_page import write_html

    bars = [_bars(s) for s in summaries]
    page = write_html(dirs, records, bars, [Path(d).name for d in dirs], target, Path(dirs[0]) / "report.html")
    text += f"\nreport: {page}"
    return text, target


def _bars(summary: dict) -> dict[str, dict]:
    out = {}
    if summary["accuracy"]["n"]:
        out["overall"] = summary["accuracy"]
    for key, groups in summary["by_category"].items():
        for value, m in groups.items():
            out[f"{key}: {value}"] = m
    g = summary.get("grounding")
    if g:
        out["grounding mIoU"] = g["miou"]
        for t in (0.3, 0.5, 0.7):
            out[f"grounding R@{t}"] = g[f"r@{t}"]
    return out


def draw(records: Sequence[list[dict]], summaries: Sequence[dict], names: Sequence[str], target: Path) -> Path:
    try:
        import matplotlib
    except ImportError:
        raise EvalError("the report figure needs matplotlib: pip install 'mcr-agent[eval]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    bars = [_bars(s) for s in summaries]
    labels = list(bars[0]) + [k for b in bars[1:] for k in b if k not in bars[0]]
    fig, (ax1, ax2) = plt.subplots(
        1,
        2,
        figsize=(max(10.0, 4 + 0.45 * len(labels)), 5.0),
        gridspec_kw={"width_ratios": [max(2, len(labels) // 3 + 1), 2]},
    )
    width = 0.8 / len(bars)
    x = np.arange(len(labels))
    colours = ["tab:blue", "tab:orange"]
    for i, (b, name) in enumerate(zip(bars, names)):
        vals = np.array([100 * (b[k]["value"] if k in b and b[k]["value"] is not None else np.nan) for k in labels])
        lo = np.array([100 * b[k]["ci"][0] if k in b and b[k]["ci"][0] is not None else np.nan for k in labels])
        hi = np.array([100 * b[k]["ci"][1] if k in b and b[k]["ci"][1] is not None else np.nan for k in labels])
        err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        ax1.bar(x + (i - (len(bars) - 1) / 2) * width, vals, width, yerr=err, capsize=2, label=name, color=colours[i])
    ax1.set_xticks(x)
    ax1.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax1.set_ylabel("accuracy (%) with 95% CI")
    ax1.set_ylim(0, 105)
    ax1.set_title("accuracy per category")
    ax1.legend(fontsize=8)
    rng = np.random.default_rng(0)
    for i, (recs, name) in enumerate(zip(records, names)):
        pts = [
            (
                float(r.get("frames_seen") or 0),
                float(r["iou"]) if r.get("form") == "span" and r.get("iou") is not None else float(bool(r["correct"])),
            )
            for r in recs
            if r.get("correct") is not None
        ]
        if not pts:
            continue
        f, y = np.array(pts).T
        ax2.scatter(f, y + rng.uniform(-0.04, 0.04, y.size), s=12, alpha=0.5, color=colours[i], label=name)
        edges = np.unique(np.quantile(f, np.linspace(0, 1, min(6, len(f)) + 1)))
        if len(edges) > 1:
            which = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, len(edges) - 2)
            mids = [(edges[j] + edges[j + 1]) / 2 for j in range(len(edges) - 1) if np.any(which == j)]
            accs = [y[which == j].mean() for j in range(len(edges) - 1) if np.any(which == j)]
            ax2.plot(mids, accs, "-o", color=colours[i], lw=1.5, ms=4)
    ax2.set_xlabel("frames seen per question")
    ax2.set_ylabel("correct (1/0), IoU for grounding")
    ax2.set_ylim(-0.1, 1.1)
    ax2.set_title("accuracy against frames seen")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


__all__ = ["draw", "load_records", "report", "run_title"]
