"""Metrics over result records: accuracy overall and per category, grounding (mIoU, R@IoU),
cost per question, each with a bootstrap confidence interval.

Bootstrap: ``n_boot`` resamples of the questions with replacement (a fixed seed, so the
same results give the same intervals), the percentile interval of the statistic.
Errored questions count as wrong; questions without a gold answer are not scored.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .samples import duration_group

IOU_THRESHOLDS = (0.3, 0.5, 0.7)
COST_FIELDS = ("model_calls", "input_tokens", "output_tokens", "frames_seen", "wall_s")


def bootstrap_ci(
    values: Sequence[float],
    stat: Callable[[np.ndarray], np.ndarray] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """The percentile bootstrap interval of ``stat`` (the mean by default) over ``values``."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1 or np.all(x == x[0]):
        v = float(x[0]) if stat is None else float(stat(x[None, :])[0])
        return (v, v)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    samples = x[idx]
    stats = samples.mean(axis=1) if stat is None else stat(samples)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def _mean_ci(values: list[float], n_boot: int, seed: int) -> dict:
    if not values:
        return {"value": None, "ci": [None, None], "n": 0}
    lo, hi = bootstrap_ci(values, n_boot=n_boot, seed=seed)
    return {"value": float(np.mean(values)), "ci": [lo, hi], "n": len(values)}


def _category_values(record: dict) -> dict[str, list[str]]:
    cats: dict[str, list[str]] = {}
    for key, value in (record.get("categories") or {}).items():
        items = value if isinstance(value, list) else [value]
        items = [str(v) for v in items if v is not None and v != ""]
        if items:
            cats[key] = items
    if "duration" not in cats:
        group = duration_group(record.get("video_duration"))
        if group:
            cats["duration"] = [group]
    return cats


def cost_of(record: dict) -> dict[str, float]:
    usage = record.get("usage") or {}
    return {
        "model_calls": float(usage.get("model_calls", 0)),
        "input_tokens": float(usage.get("input_tokens", 0)),
        "output_tokens": float(usage.get("output_tokens", 0)),
        "frames_seen": float(record.get("frames_seen") or 0),
        "wall_s": float(record.get("wall_s") or 0.0),
    }


def summarize(records: Iterable[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """The summary of a set of result records (any order: they are sorted by id first)."""
    recs = sorted(records, key=lambda r: str(r["id"]))
    statuses: dict[str, int] = {}
    for r in recs:
        statuses[r.get("status") or "?"] = statuses.get(r.get("status") or "?", 0) + 1
    choice = [r for r in recs if r.get("form") != "span" and r.get("correct") is not None]
    spans = [r for r in recs if r.get("form") == "span" and r.get("correct") is not None]
    summary: dict[str, Any] = {
        "questions": len(recs),
        "scored": len(choice) + len(spans),
        "errors": sum(1 for r in recs if r.get("status") == "error"),
        "statuses": dict(sorted(statuses.items())),
        "accuracy": _mean_ci([float(bool(r["correct"])) for r in choice], n_boot, seed),
        "by_category": {},
    }
    by_cat: dict[str, dict[str, list[float]]] = {}
    for r in choice:
        for key, values in _category_values(r).items():
            for v in values:
                by_cat.setdefault(key, {}).setdefault(v, []).append(float(bool(r["correct"])))
    summary["by_category"] = {
        key: {v: _mean_ci(vals, n_boot, seed) for v, vals in sorted(groups.items())}
        for key, groups in sorted(by_cat.items())
    }
    if spans:
        ious = [float(r.get("iou") or 0.0) for r in spans]
        grounding = {"n": len(spans), "miou": _mean_ci(ious, n_boot, seed)}
        for t in IOU_THRESHOLDS:
            grounding[f"r@{t}"] = _mean_ci([float(i >= t) for i in ious], n_boot, seed)
        summary["grounding"] = grounding
    costs = [cost_of(r) for r in recs]
    summary["cost"] = {f: _mean_ci([c[f] for c in costs], n_boot, seed) for f in COST_FIELDS}
    summary["cost"]["total_tokens"] = _mean_ci([c["input_tokens"] + c["output_tokens"] for c in costs], n_boot, seed)
    return summary


# ------------------------------------------------------------------ tables


def _pct(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "-"
    lo, hi = m["ci"]
    return f"{100 * m['value']:5.1f}% [{100 * lo:4.1f}-{100 * hi:4.1f}]"


def _num(m: dict | None, digits: int = 1) -> str:
    if not m or m.get("value") is None:
        return "-"
    lo, hi = m["ci"]
    return f"{m['value']:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"


def summary_rows(summary: dict) -> list[tuple[str, str, str]]:
    """(section, label, value) rows of a summary, in print order."""
    rows = [
        ("overall", "questions", f"{summary['questions']} ({summary['scored']} scored, {summary['errors']} errors)"),
        ("overall", "status", ", ".join(f"{k} {v}" for k, v in summary["statuses"].items())),
    ]
    if summary["accuracy"]["n"]:
        rows.append(("overall", "accuracy", f"{_pct(summary['accuracy'])}  n={summary['accuracy']['n']}"))
    for key, groups in summary["by_category"].items():
        for value, m in groups.items():
            rows.append((key, value, f"{_pct(m)}  n={m['n']}"))
    g = summary.get("grounding")
    if g:
        rows.append(("grounding", "mIoU", _pct(g["miou"])))
        for t in IOU_THRESHOLDS:
            rows.append(("grounding", f"R@{t}", _pct(g[f"r@{t}"])))
    cost = summary["cost"]
    rows += [
        ("cost / question", "model calls", _num(cost["model_calls"])),
        ("cost / question", "tokens (in+out)", _num(cost["total_tokens"], 0)),
        ("cost / question", "frames seen", _num(cost["frames_seen"])),
        ("cost / question", "wall time (s)", _num(cost["wall_s"])),
    ]
    return rows


def format_summary(summary: dict, title: str = "") -> str:
    rows = summary_rows(summary)
    w1 = max([len(r[0]) for r in rows] + [7])
    w2 = max([len(r[1]) for r in rows] + [5])
    lines = [title] if title else []
    lines.append(f"{'section':<{w1}}  {'group':<{w2}}  value (95% CI)")
    last = None
    for section, label, value in rows:
        lines.append(f"{section if section != last else '':<{w1}}  {label:<{w2}}  {value}")
        last = section
    return "\n".join(lines)


def format_comparison(a: dict, b: dict, names: tuple[str, str]) -> str:
    """Two summaries side by side, keyed by (section, group); the last column is b - a where both are rates."""
    ra = {(s, g): v for s, g, v in summary_rows(a)}
    rb = {(s, g): v for s, g, v in summary_rows(b)}
    keys = list(ra) + [k for k in rb if k not in ra]
    values = {k: (_metric(a, k), _metric(b, k)) for k in keys}
    w1 = max(len(k[0]) for k in keys)
    w2 = max(len(k[1]) for k in keys)
    wa = max([len(ra.get(k, "-")) for k in keys] + [len(names[0])])
    wb = max([len(rb.get(k, "-")) for k in keys] + [len(names[1])])
    lines = [f"{'section':<{w1}}  {'group':<{w2}}  {names[0]:<{wa}}  {names[1]:<{wb}}  delta"]
    last = None
    for k in keys:
        va, vb = values[k]
        delta = f"{100 * (vb - va):+.1f} pts" if va is not None and vb is not None else ""
        lines.append(
            f"{k[0] if k[0] != last else '':<{w1}}  {k[1]:<{w2}}  {ra.get(k, '-'):<{wa}}  "
            f"{rb.get(k, '-'):<{wb}}  {delta}"
        )
        last = k[0]
    return "\n".join(lines)


def _metric(summary: dict, key: tuple[str, str]) -> float | None:
    section, group = key
    if section == "overall" and group == "accuracy":
        return summary["accuracy"]["value"]
    if section in summary["by_category"]:
        return (summary["by_category"][section].get(group) or {}).get("value")
    g = summary.get("grounding")
    if section == "grounding" and g:
        m = g["miou"] if group == "mIoU" else g.get(f"r@{group[2:]}")
        return (m or {}).get("value")
    return None


__all__ = ["bootstrap_ci", "cost_of", "format_comparison", "format_summary", "summarize", "summary_rows"]
