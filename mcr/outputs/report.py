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
import os
from pathlib import Path

from mcr.errors import MCRError
from mcr.run.events import (
    AnswerProposed,
    Event,
    IndexStage,
    ModelCalled,
    PhaseEntry,
    RunFinished,
    RunStarted,
    ToolCalled,
    ToolReturned,
    Verification,
)
from mcr.run.result import RunResult
from mcr.run.trace import iter_trace
from mcr.types import TimeSpan

MAX_THUMBS = 60  # thumbnails embedded at most (spread over the frames seen)
THUMB_WIDTH = 160


def read_events(trace: str | os.PathLike) -> list[Event]:
    """The trace's events; a last line cut off mid-write (a killed or running run) is left out."""
    return list(iter_trace(trace, torn_end=True))


def run_report(trace: str | os.PathLike, thumbnails: bool = True) -> dict:
    """The report's content from a trace (see the module)."""
    events = read_events(trace)
    starts = [e for e in events if isinstance(e, RunStarted)]
    if not starts:
        raise MCRError(f"{trace} holds no run: it has no run_started event; pass a trace .jsonl file")
    top = starts[0]
    ends = {e.run_id: e for e in events if isinstance(e, RunFinished)}
    end = ends.get(top.run_id)
    result = _outcome(end)
    video = dict(top.video or {})
    library = list(video.get("library") or [])
    runs = [_lane(s, ends.get(s.run_id)) for s in starts]
    steps, frames, calls = [], [], {}
    for e in events:
        step = _step(e, calls)
        if step is None:
            continue
        step["i"] = len(steps)
        steps.append(step)
        frames += [{"t": t, "run_id": e.run_id, "step": step["i"]} for t in step.get("frames", [])]
    report = {
        "trace": str(trace),
        "question": top.question,
        "options": list(top.options or []),
        "model": top.model,
        "video": video,
        # a library run's timeline runs to the end of its longest video; each step names its video
        "duration": float(video.get("duration") or max((v.get("duration") or 0.0 for v in library), default=0.0)),
        "answer": result.answer,
        "status": result.status,
        "error": result.error,
        "cost": {
            "model_calls": result.usage.model_calls,
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "frames_seen": result.frames_seen or len(frames),  # none counted (an unfinished run): those shown
            "wall_s": round(end.time - top.time, 2) if end is not None else 0.0,
            "steps": result.steps,
        },
        "runs": runs,
        "steps": steps,
        "frames": frames,
        "evidence": [s.to_list() for s in result.evidence],
        "evidence_videos": list(result.evidence_videos),
        "verdicts": [s for s in steps if s["kind"] == "verdict" and s["run_id"] == top.run_id],
        "shots": [],
        "excerpts": [],
        "thumbs": {},
    }
    indexed = [e.video_id for e in events if isinstance(e, IndexStage) and e.video_id]
    if not library:  # shots and excerpts are one video's
        _from_memory(report, top.memory, video.get("path"), indexed[0] if indexed else None)
    if thumbnails:
        report["thumbs"] = _thumbs(video.get("path"), [f["t"] for f in frames])
    return report


def _outcome(end: RunFinished | None) -> RunResult:
    """How the run ended; a run without its ``run_finished`` (killed, or still running) is unfinished."""
    return end.result if end is not None else RunResult(status="unfinished")


def _lane(start: RunStarted, end: RunFinished | None) -> dict:
    """One run's lane: the top run, or an ``investigate`` child."""
    done = _outcome(end)
    return {
        "run_id": start.run_id,
        "depth": start.depth,
        "parent": start.parent_run_id,
        "question": start.question,
        "status": done.status,
        "answer": done.answer,
    }


def _step(e: Event, calls: dict[str, ToolCalled]) -> dict | None:
    """The report's step for one event (a tool call's step is made when its result comes)."""
    base = {"run_id": e.run_id, "depth": e.depth, "step": e.step}
    if isinstance(e, PhaseEntry):
        return {**base, "kind": e.phase, "text": e.text, "frames": _times(e.frames)}
    if isinstance(e, ToolCalled):
        calls[e.call_id] = e
        return None
    if isinstance(e, ToolReturned):
        call = calls.get(e.call_id)
        return {
            **base,
            "kind": "call",
            "name": e.name,
            "arguments": (call.arguments if call is not None else None) or {},
            "text": e.text,
            "error": bool(e.is_error),
            "spans": [list(s) for s in e.spans or []],
            "frames": _times(e.frames),
            "latency_s": e.latency_s,
            **({"video": e.metadata["video"]} if (e.metadata or {}).get("video") else {}),  # a library run's
        }
    if isinstance(e, AnswerProposed):
        return {**base, "kind": "answer", "text": e.answer, "spans": [list(s) for s in e.evidence or []],
                "accepted": e.accepted, "reason": e.reason}  # fmt: skip
    if isinstance(e, Verification):
        support = [s.get("span") for s in e.support or [] if isinstance(s, dict) and s.get("span")]
        return {**base, "kind": "verdict", "verdict": e.verdict, "confidence": e.confidence, "reason": e.reason,
                "source": e.source, "passed": e.passed, "checks": list(e.checks or []), "spans": support}  # fmt: skip
    if isinstance(e, ModelCalled) and e.phase == "act" and ((e.output or {}).get("text") or "").strip():
        return {**base, "kind": "thought", "text": e.output["text"].strip(), "latency_s": e.latency_s}
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
        store = memory.store
        cuts = sorted(e.span.to_list() for e in store.query(video_id, kind="shot") if e.span is not None)
        if cuts or store.stage_status(video_id, "shots") == "done":  # the shots between the boundaries found
            starts = [0.0] + [b for _, b in cuts]
            ends = [a for a, _ in cuts] + [report["duration"]]
            report["shots"] = [[a, b] for a, b in zip(starts, ends) if b > a]
        for a, b in report["evidence"]:
            for e in store.query(video_id, kind=["transcript", "ocr"], span=TimeSpan(a, b)):
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
