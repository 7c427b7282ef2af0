"""One question of an evaluation: answered in a scratch folder, its model calls recorded,
its outcome made into a result record. Used by the local runner and by Ray workers alike.

A failure of the question itself (a bad video, a model error) becomes the record's
``error``; it never stops the run.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .samples import EvalError, Sample, predicted_value, score

Factory = Callable[[Sample, Path, "Path | None"], Any]  # (sample, scratch dir, out dir) -> agent


class Recorder:
    """Wraps a model and keeps every call: the rendered messages, the tools offered, the reply."""

    streams_text = False

    def __init__(self, model: Any) -> None:
        self._model = model
        self.turns: list[dict] = []

    def __getattr__(self, name: str) -> Any:
        if name == "_model":
            raise AttributeError(name)
        return getattr(self._model, name)

    def generate(self, messages: list, tools: list[dict] | None = None, **options: Any) -> Any:
        from .export import message_to_dict

        out = self._model.generate(messages, tools=tools, **options)
        self.turns.append(
            {"messages": [message_to_dict(m) for m in messages], "tools": list(tools or []), "output": out.to_dict()}
        )
        return out

    def dump(self) -> str:
        return "".join(json.dumps(t, ensure_ascii=False, default=str) + "\n" for t in self.turns)


def safe_name(text: str) -> str:
    """A file name for an id: readable part plus a short hash, so different ids never collide."""
    readable = re.sub(r"[^\w.-]+", "_", str(text)).strip("._")[:60] or "q"
    return f"{readable}-{hashlib.sha1(str(text).encode()).hexdigest()[:8]}"


def _video_duration(trace_text: str) -> float | None:
    for line in trace_text.splitlines()[:3]:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "run_started":
            return (event.get("video") or {}).get("duration")
    return None


def make_record(
    sample: Sample,
    result: Any = None,
    error: str | None = None,
    wall_s: float = 0.0,
    model_name: str = "",
    video_duration: float | None = None,
) -> dict:
    """The result record of one question."""
    answer = getattr(result, "answer", "") or ""
    value = getattr(result, "value", None)
    if hasattr(value, "to_list"):
        value = value.to_list()
    predicted = predicted_value(sample.form, answer, value, sample.options) if result is not None else None
    scored = score(sample.form, sample.gold, predicted)
    usage = result.usage.to_dict() if result is not None else {"input_tokens": 0, "output_tokens": 0, "model_calls": 0}
    status = getattr(result, "status", None) or "error"
    return {
        "id": sample.id,
        "video": sample.video,
        "video_path": sample.video_path,
        "video_duration": video_duration,
        "question": sample.question,
        "options": list(sample.options),
        "form": sample.form,
        "gold": sample.gold,
        "categories": dict(sample.categories),
        "answer": answer,
        "predicted": predicted,
        "correct": scored["correct"],
        "iou": scored["iou"],
        "status": status,
        "error": error or getattr(result, "error", None),
        "evidence": [s.to_list() for s in getattr(result, "evidence", [])],
        "usage": usage,
        "frames_seen": getattr(result, "frames_seen", 0),
        "steps": getattr(result, "steps", 0),
        "wall_s": round(wall_s, 3),
        "model": model_name,
        "run_id": getattr(result, "run_id", ""),
        "trace": f"traces/{safe_name(sample.id)}.jsonl",
        "turns": f"turns/{safe_name(sample.id)}.jsonl",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def run_one(factory: Factory, sample: Sample, out_dir: str | Path | None = None) -> dict:
    """Answer one question in a scratch folder; never raises for the question's own failures.

    Returns ``{"record": ..., "trace": TEXT, "turns": TEXT}``.
    """
    work = Path(tempfile.mkdtemp(prefix="mcr-eval-"))
    trace_file = work / "trace.jsonl"
    t0 = time.perf_counter()
    agent, recorder, result, error = None, None, None, None
    try:
        if not sample.video_path:
            raise EvalError(f"no video for question {sample.id} ({sample.video})")
        agent = factory(sample, work, Path(out_dir) if out_dir is not None else None)
        recorder = Recorder(agent.model)
        agent.model = recorder
        result = agent.run(
            sample.video_path,
            sample.question,
            options=sample.options or None,
            trace=trace_file,
            answer_form=sample.form,
        )
    except Exception as exc:  # one question's failure is recorded, never fatal to the run
        error = f"{type(exc).__name__}: {exc}".strip()
    try:
        trace = trace_file.read_text(encoding="utf-8") if trace_file.is_file() else ""
        name = getattr(recorder, "name", "") if recorder is not None else ""
        record = make_record(sample, result, error, time.perf_counter() - t0, str(name), _video_duration(trace))
        return {"record": record, "trace": trace, "turns": recorder.dump() if recorder is not None else ""}
    finally:
        close = getattr(getattr(agent, "memory", None), "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                pass
        shutil.rmtree(work, ignore_errors=True)


__all__ = ["Factory", "Recorder", "make_record", "run_one", "safe_name"]
