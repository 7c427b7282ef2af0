"""A run's report: what it did, gathered from its trace and laid on the video's timeline.

``run_report(trace)`` reads a trace into one plain dict: the question and the answer, status
and cost; every run (the top one and each ``investigate`` child, a lane each); the steps in
order (plans, reflections, tool calls with the spans they touched and the frames they showed,
proposed answers, verdicts); the evidence spans; the video's shots and the transcript and
on-screen text of the cited spans from the run's memory when it can be opened; and small JPEG
thumbnails of the frames the model saw when the video file can be read. :mod:`mcr.outputs.report_page`
draws it as one self-contained HTML file; ``timeline_png`` draws the timeline alone.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

MAX_THUMBS = 60  # thumbnails embedded at most (spread over the frames seen)
THUMB_WIDTH = 160


def read_lines(trace: str | os.PathLike) -> list[dict]:
    """The trace's events as the dicts written (a broken last line, as a killed run leaves, is
    left out). Read here as plain JSON so that this module sits below the result it reports on."""
    rows = []
    with open(trace, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and "event" in row:
                rows.append(row)
    return rows


def run_report(trace: str | os.PathLike, thumbnails: bool = True) -> dict:
    """The report's content from a trace (see the module)."""
    events = read_lines(trace)
    starts = [e for e in events if e["event"] == "run_started"]
    if not starts:
        from mcr.errors import MCRError

        raise MCRError(f"{trace} holds no run: it has no run_started event; pass a trace .jsonl file")
    top = starts[0]
    ends = {e["run_id"]: e for e in events if e["event"] == "run_finished"}
    end = ends.get(top["run_id"])
    video = dict(top.get("video") or {})
    runs = [{"run_id": s["run_id"], "depth": s.get("depth", 0), "parent": s.get("parent_run_id"),
             "question": s.get("question", ""), "status": ends.get(s["run_id"], {}).get("status", "unfinished"),
             "answer": ends.get(s["run_id"], {}).get("answer", "")} for s in starts]  # fmt: skip
    steps, frames, calls = [], [], {}
    for e in events:
        step = _step(e, calls)
        if step is None:
            continue
        step["i"] = len(steps)
        steps.append(step)
        frames += [{"t": t, "run_id": e["run_id"], "step": step["i"]} for t in step.get("frames", [])]
    usage = (end or {}).get("usage") or {}
    report = {
        "trace": str(trace),
        "question": top.get("question", ""),
        "options": list(top.get("options") or []),
        "model": top.get("model", ""),
        "video": video,
        "duration": float(video.get("duration") or 0.0),
        "answer": (end or {}).get("answer", ""),
        "status": (end or {}).get("status", "unfinished"),
        "error": (end or {}).get("error"),
        "cost": {
            "model_calls": usage.get("model_calls", 0),
            "input_tokens": usage.get("input_tokens", 0),
            "output_tokens": usage.get("output_tokens", 0),
            "frames_seen": (end or {}).get("frames_seen", len(frames)),
            "wall_s": round(end["time"] - top["time"], 2) if end else 0.0,
            "steps": (end or {}).get("steps", 0),
        },
        "runs": runs,
        "steps": steps,
        "frames": frames,
        "evidence": [list(s) for s in (end or {}).get("evidence") or []],
        "verdicts": [s for s in steps if s["kind"] == "verdict" and s["run_id"] == top["run_id"]],
        "shots": [],
        "excerpts": [],
        "thumbs": {},
    }
    indexed = [e.get("video_id") for e in events if e["event"] == "index_stage" and e.get("video_id")]
    _from_memory(report, top.get("memory"), video.get("path"), indexed[0] if indexed else None)
    if thumbnails:
        report["thumbs"] = _thumbs(video.get("path"), [f["t"] for f in frames])
    return report


def _step(e: dict, calls: dict) -> dict | None:
    kind = e["event"]
    base = {"run_id": e.get("run_id", ""), "depth": e.get("depth", 0), "step": e.get("step", 0)}
    if kind == "phase":
        return {**base, "kind": e.get("phase", ""), "text": e.get("text", ""), "frames": _times(e.get("frames"))}
    if kind == "tool_called":
        calls[e.get("call_id")] = e
        return None
    if kind == "tool_returned":
        call = calls.get(e.get("call_id")) or {}
        return {
            **base,
            "kind": "call",
            "name": e.get("name", ""),
            "arguments": call.get("arguments") or {},
            "text": e.get("text", ""),
            "error": bool(e.get("is_error")),
            "spans": [list(s) for s in e.get("spans") or []],
            "frames": _times(e.get("frames")),
            "latency_s": e.get("latency_s", 0.0),
        }
    if kind == "answer_proposed":
        return {**base, "kind": "answer", "text": e.get("answer", ""), "spans": [list(s) for s in e.get("evidence") or []],
                "accepted": e.get("accepted", True), "reason": e.get("reason", "")}  # fmt: skip
    if kind == "verification":
        support = [s.get("span") for s in e.get("support") or [] if isinstance(s, dict) and s.get("span")]
        return {**base, "kind": "verdict", "verdict": e.get("verdict", ""), "confidence": e.get("confidence", 0.0),
                "reason": e.get("reason", ""), "source": e.get("source", ""), "passed": e.get("passed"),
                "checks": list(e.get("checks") or []), "spans": support}  # fmt: skip
    output = e.get("output") or {}
    if kind == "model_called" and e.get("phase", "act") == "act" and (output.get("text") or "").strip():
        return {**base, "kind": "thought", "text": output["text"].strip(), "latency_s": e.get("latency_s", 0.0)}
    return None


def _times(frames: dict | None) -> list[float]:
    return [float(t) for t in (frames or {}).get("timestamps", [])]


def _from_memory(report: dict, path: str | None, video_path: str | None, video_id: str | None) -> None:
    """Shots of the video, and speech and on-screen text inside the cited spans, when the run's
    memory can be opened (read-only); otherwise the report goes without them."""
    if not path or not Path(path).is_file():
        return
    if video_id is None and video_path and Path(video_path).is_file():
        from mcr.media.video import Video

        video_id = Video(video_path).id
    if not video_id:
        return
    try:
        from mcr.memory import Memory

        memory = Memory(path, readonly=True)
    except Exception:  # noqa: BLE001 - a report never fails for want of its memory
        return
    try:
        cuts = sorted(e.span.to_list() for e in memory.store.query(video_id, kind="shot") if e.span is not None)
        built = memory.store.conn.execute(
            "SELECT status FROM stages WHERE video_id = ? AND stage = 'shots'", (video_id,)
        ).fetchone()
        if cuts or (built and built[0] == "done"):  # the shots between the boundaries the stage found
            starts = [0.0] + [b for _, b in cuts]
            ends = [a for a, _ in cuts] + [report["duration"]]
            report["shots"] = [[a, b] for a, b in zip(starts, ends) if b > a]
        lines = memory.store.query(video_id, kind=["transcript", "ocr"]) if report["evidence"] else []
        for a, b in report["evidence"]:
            for e in lines:
                if e.span is not None and e.span.start < b and e.span.end > a:
                    report["excerpts"].append({"span": e.span.to_list(), "kind": e.kind, "text": e.text})
    finally:
        memory.close()


def _thumbs(path: str | None, times: list[float]) -> dict[str, str]:
    """``{"12.5": "data:image/jpeg;base64,..."}`` for up to MAX_THUMBS of ``times``."""
    if not path or not times or not Path(path).is_file():
        return {}
    unique = sorted(set(round(t, 3) for t in times))
    if len(unique) > MAX_THUMBS:
        step = len(unique) / MAX_THUMBS
        unique = [unique[int(i * step)] for i in range(MAX_THUMBS)]
    try:
        from PIL import Image

        from mcr.media.video import Video

        video = Video(path)
        out = {}
        for t in unique:
            frames = video.frame_at(t, max_pixels=THUMB_WIDTH * THUMB_WIDTH)
            image = Image.fromarray(frames.images[0])
            image.thumbnail((THUMB_WIDTH, THUMB_WIDTH))
            buf = io.BytesIO()
            image.save(buf, "JPEG", quality=70)
            out[f"{t:g}"] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        return out
    except Exception:  # noqa: BLE001 - a video that moved or broke: the report goes without thumbnails
        return {}


def timeline_png(report: dict, out: str | os.PathLike) -> Path:
    """The timeline alone as a PNG (matplotlib): shots, each run's tool spans, frames seen, evidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    lanes = 3 + len(runs)
    fig, ax = plt.subplots(figsize=(10, 0.45 * lanes + 0.8))
    duration = max(report["duration"], 1e-6)
    for i, (a, b) in enumerate(report["shots"]):
        ax.broken_barh([(a, b - a)], (lanes - 1, 0.8), color="#d9dde3" if i % 2 else "#bcc3cc")
    for r, run in enumerate(runs):
        y = lanes - 2 - r
        spans = [s for st in report["steps"] if st["run_id"] == run["run_id"] for s in st.get("spans", []) if s]
        ax.broken_barh([(a, max(b - a, duration / 500)) for a, b in spans], (y, 0.8), color="#7a9cc6", alpha=0.6)
    ax.vlines([f["t"] for f in report["frames"]], 1, 1.8, color="#333333", linewidth=0.6)
    ax.broken_barh([(a, max(b - a, duration / 500)) for a, b in report["evidence"]], (0, 0.8), color="#e8a33d")
    ax.set_xlim(0, duration)
    ax.set_yticks([lanes - 0.6] + [lanes - 1.6 - r for r in range(len(runs))] + [1.4, 0.4])
    ax.set_yticklabels(["shots"] + [f"run {r['run_id'][:6]}" for r in runs] + ["frames seen", "evidence"])
    ax.set_xlabel("seconds")
    ax.set_title(report["question"][:100], fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


__all__ = ["run_report", "timeline_png"]
