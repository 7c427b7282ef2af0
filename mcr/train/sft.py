"""Supervised fine-tuning on verified, correct trajectories exported from ``mcr-agent eval``.

Each model turn of a question whose run was verified and answered correctly becomes one
example: the context exactly as MCR renders it for the model being trained (its chat
template, its way of listing tools) as the prompt, and the turn it should write (the reply
and its tool calls, in the same rendering the model reads its own past turns in) as the
completion; only the completion is trained on. Frames appear as reference lines, as the
export writes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from mcr.types import Message, ToolCall

from .episode import assistant_header
from .run import (
    TrainError,
    _load_base,
    _logging_callback,
    _need_packages,
    lora_config,
    run_to_end,
    shared_settings,
)


def trajectories(source: str | os.PathLike) -> list[dict]:
    """The verified, correct turns of an evaluation folder, or of a JSONL file of exported ``sft`` rows."""
    path = Path(source)
    if path.is_dir():
        from mcr.eval.export import iter_rows

        rows: Iterable[dict] = iter_rows(path, "sft", select="verified")
    elif path.is_file():
        try:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise TrainError(f"{path}: not JSON lines of exported rows ({exc})") from None
    else:
        raise TrainError(f"no evaluation folder or exported file at {path}")
    keep = [r for r in rows if r.get("status", "verified") == "verified" and r.get("correct", True) is True]
    if not keep:
        raise TrainError(
            f"{path} holds no verified, correct trajectories: run `mcr-agent eval` first "
            "(its runs verified and answered correctly are the examples)"
        )
    return keep


def to_message(d: dict) -> Message:
    calls = []
    for c in d.get("tool_calls") or []:
        fn = c.get("function") or c
        args = fn.get("arguments") or {}
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                args = {}
        calls.append(ToolCall(fn.get("name", ""), args if isinstance(args, dict) else {}, c.get("id", "")))
    return Message(d["role"], d.get("content") or "", calls, d.get("tool_call_id"), d.get("name"))


def example(base: Any, row: dict) -> dict | None:
    """``{"prompt", "completion"}`` texts of one exported turn, rendered for ``base``; None when the
    template does not render the reply after the prompt (nothing to learn from it)."""
    messages = [to_message(m) for m in row["prompt"]]
    reply = to_message(row["completion"][0])
    tools = row.get("tools") or None
    prompt, *_ = base.prompt(messages, tools)
    full, *_ = base.prompt(messages + [reply], tools)
    if not full.startswith(prompt):
        return None
    header = base.tokenizer.decode(assistant_header(base.tokenizer))
    completion = full[len(prompt) :]
    if header and completion.endswith(header):
        completion = completion[: -len(header)]
    completion = completion.rstrip()
    return {"prompt": prompt, "completion": completion} if completion else None


def train_sft(
    model: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    steps: int | None = None,
    epochs: float = 1.0,
    learning_rate: float = 2e-5,
    lora: bool = True,
    lora_rank: int = 16,
    save_every: int = 50,
    device: str = "auto",
) -> Path:
    """Fine-tune ``model`` on the verified, correct trajectories of ``data``; returns the output folder."""
    _need_packages()
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = trajectories(data)
    base = _load_base(model, device, None)
    examples = [e for e in (example(base, r) for r in rows) if e]
    if not examples:
        raise TrainError(f"none of the {len(rows)} turns of {data} renders with {model}'s chat template")
    args = SFTConfig(
        **shared_settings(out, save_every, device),
        max_steps=steps or -1,
        num_train_epochs=epochs,
        per_device_train_batch_size=1,
        learning_rate=learning_rate,
        completion_only_loss=True,
        max_length=None,
    )
    trainer = SFTTrainer(
        model=base.model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=base.tokenizer,
        peft_config=lora_config(lora_rank) if lora else None,
        callbacks=[_logging_callback(out)],
    )
    from mcr.files import write_text

    settings = {"method": "sft", "model": model, "data": str(data), "examples": len(examples), "lora": lora}
    write_text(out / "train.json", json.dumps(settings, indent=1))
    return run_to_end(trainer, base, out, lora)
