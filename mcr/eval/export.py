"""Trajectories of an evaluation as conversational JSONL that TRL's trainers load.

``sft``: one row per model call of a question (plan, act, reflect, verify): the context
exactly as the model saw it rendered (``prompt``, a list of messages) and the model's
turn (``completion``: one assistant message with its tool calls) — TRL's conversational
prompt-completion type, for ``SFTTrainer``. By default only questions answered correctly.

``rl``: one row per question: the rendered context of its first acting turn (``prompt``)
with the columns the rewards of :mod:`mcr.eval.rewards` read (``form``, ``options``,
``gold``) — TRL's conversational prompt-only type, for ``GRPOTrainer``.

Messages are ``{"role", "content"}`` with ``content`` a string; frames the model saw are
written into the text as a reference line (``[8 frames of clip.mp4 at 00:00:01.0, ...]``)
and listed, as references (file, content hash, timestamps), in the row's ``frames``
column, never as pixels. Assistant tool calls are ``{"id", "type": "function", "function":
{"name", "arguments"}}`` with ``arguments`` a JSON string (one Arrow type for every row,
whatever the arguments were). ``tools`` holds the tool schemas offered through the chat
template; it is empty when the model saw them listed in the system prompt instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from mcr.files import replacing

from .results import read_results
from .samples import EvalError

FORMATS = ("sft", "rl")
SELECT = ("all", "correct", "verified")


def _format_time(t: float) -> str:
    from mcr.types import format_time

    return format_time(t)


def message_to_dict(message: Any) -> dict:
    """A rendered ``Message`` as a plain chat message; frames become a reference line."""
    from mcr.types import FramesPart, ImagePart, TextPart

    content = message.content
    texts: list[str] = []
    frames: list[dict] = []
    if isinstance(content, str):
        texts.append(content)
    else:
        for part in content:
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, FramesPart):
                ref = part.frames.ref()
                name = Path(ref.get("source") or "video").name
                times = ", ".join(_format_time(t) for t in ref["timestamps"])
                texts.append(f"[{len(ref['timestamps'])} frames of {name} at {times}]")
                frames.append(ref)
            elif isinstance(part, ImagePart):
                at = f" at {_format_time(part.timestamp)}" if part.timestamp is not None else ""
                texts.append(f"[image{at}]")
    out: dict[str, Any] = {"role": message.role, "content": "\n".join(t for t in texts if t)}
    if message.tool_calls:
        out["tool_calls"] = [_call(c.id, c.name, c.arguments) for c in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    if frames:
        out["frames"] = frames
    return out


def _call(call_id: str, name: str, arguments: Any) -> dict:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False, default=str)
    return {"id": call_id or "", "type": "function", "function": {"name": name, "arguments": args}}


def _clean(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """Messages without their frame lists, and the frames of all of them."""
    frames: list[dict] = []
    out = []
    for m in messages:
        m = dict(m)
        frames += m.pop("frames", None) or []
        for c in m.get("tool_calls") or []:  # turns written by other versions may hold argument objects
            fn = c.get("function") or {}
            if not isinstance(fn.get("arguments"), str):
                fn["arguments"] = json.dumps(fn.get("arguments") or {}, ensure_ascii=False, default=str)
        out.append(m)
    return out, frames


def assistant_message(output: dict) -> dict:
    """The model's reply (``ModelOutput.to_dict()``) as one assistant message."""
    msg: dict[str, Any] = {"role": "assistant", "content": output.get("text") or ""}
    calls = output.get("tool_calls") or []
    if calls:
        msg["tool_calls"] = [_call(c.get("id", ""), c["name"], c.get("arguments") or {}) for c in calls]
    if output.get("reasoning"):
        msg["reasoning_content"] = output["reasoning"]
    return msg


def gold_text(record: dict) -> str:
    """The gold answer as the text the rewards read: a letter, ``start-end`` seconds, a count, or text."""
    gold, form = record.get("gold"), record.get("form")
    if gold is None:
        return ""
    if form == "choice":
        return chr(65 + int(gold))
    if form == "span":
        return f"{float(gold[0]):g}-{float(gold[1]):g}"
    return str(gold)


def _read_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line: what came before is whole
    return rows


def _tools(turn: dict, prompt: list[dict]) -> list[dict]:
    """The tool schemas for the row: none when the rendered system prompt already lists them
    (a model without native tools saw them as text there), so a template does not add them twice."""
    from mcr.run.context import TOOL_PROTOCOL

    system = next((m.get("content") or "" for m in prompt if m.get("role") == "system"), "")
    return [] if TOOL_PROTOCOL in system else list(turn.get("tools") or [])


def _phases(trace_path: Path) -> list[str]:
    return [e.get("phase", "act") for e in _read_lines(trace_path) if e.get("event") == "model_called"]


def _selected(record: dict, select: str) -> bool:
    if select == "correct":
        return record.get("correct") is True
    if select == "verified":
        return record.get("status") == "verified"
    return True


def iter_rows(out_dir: str | Path, fmt: str = "sft", select: str | None = None) -> Iterator[dict]:
    """The export rows of an evaluation folder."""
    if fmt not in FORMATS:
        raise EvalError(f"unknown export format {fmt!r}: sft or rl")
    select = select or ("correct" if fmt == "sft" else "all")
    if select not in SELECT:
        raise EvalError(f"unknown selection {select!r}: {', '.join(SELECT)}")
    out = Path(out_dir)
    records = read_results(out / "results.jsonl")
    if not records:
        raise EvalError(f"{out} holds no results (results.jsonl is missing or empty)")
    for qid, record in records.items():
        if not _selected(record, select):
            continue
        turns = _read_lines(out / record.get("turns", ""))
        if not turns:
            continue
        phases = _phases(out / record.get("trace", ""))
        if len(phases) != len(turns):
            phases = ["act" if t.get("tools") else "other" for t in turns]
        base = {
            "question_id": qid,
            "video": record.get("video_path") or record.get("video"),
            "form": record.get("form"),
            "correct": record.get("correct"),
            "status": record.get("status"),
        }
        if fmt == "sft":
            for i, (turn, phase) in enumerate(zip(turns, phases)):
                prompt, frames = _clean(turn["messages"])
                yield {
                    "id": f"{qid}#{i}",
                    **base,
                    "phase": phase,
                    "turn": i,
                    "prompt": prompt,
                    "completion": [assistant_message(turn["output"])],
                    "tools": _tools(turn, prompt),
                    "frames": frames,
                }
        else:
            first = next((i for i, p in enumerate(phases) if p == "act"), 0)
            prompt, frames = _clean(turns[first]["messages"])
            yield {
                "id": qid,
                **base,
                "prompt": prompt,
                "tools": _tools(turns[first], prompt),
                "options": list(record.get("options") or []),
                "gold": gold_text(record),
                "frames": frames,
            }


def export(
    out_dir: str | Path, fmt: str = "sft", output: str | Path | None = None, select: str | None = None
) -> tuple[Path, int]:
    """Write the rows to ``output`` (default ``OUT_DIR/export-FORMAT.jsonl``); returns (path, rows)."""
    target = Path(output) if output else Path(out_dir) / f"export-{fmt}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with replacing(target) as f:
        for row in iter_rows(out_dir, fmt, select):
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            n += 1
    return target, n


__all__ = ["assistant_message", "export", "gold_text", "iter_rows", "message_to_dict"]
