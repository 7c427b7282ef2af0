"""Scripted agents for the evaluation tests: a model that answers each question with the text
given for it, and the helpers around it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from mcr.agents import Agent
from mcr.models import ModelOutput
from mcr.run.testing import RecordingModel
from mcr.types import ToolCall, Usage


def question_of(messages) -> str:
    """The question of a run's task message (its first line)."""
    task = next(m.text for m in messages if m.role == "user" and "Question: " in m.text)
    return task.split("Question: ", 1)[1].split("\n", 1)[0]


def oracle(answers: dict, delay: float = 0.0, fail_on: str | None = None) -> RecordingModel:
    """A model that answers each question with the text given for it (keyed by the question's
    first line), after ``delay`` seconds; a question containing ``fail_on`` raises instead."""

    def reply(messages, tools=None, **options):
        question = question_of(messages)
        if delay:
            time.sleep(delay)
        if fail_on and fail_on in question:
            raise RuntimeError("the server went away")
        return ModelOutput(
            tool_calls=[ToolCall("answer", {"answer": answers[question], "evidence": ["00:00:00-00:00:01"]})],
            usage=Usage(100, 10, 1),
        )

    return RecordingModel(reply, name="oracle")


def asked(model: RecordingModel) -> list[str]:
    """The questions the model was asked, in order."""
    return [question_of(c.messages) for c in model.calls]


def oracle_factory(model):
    return lambda sample, work, out: Agent(
        model, policy="plain", memory=False, trace_dir=False, builtin=False, max_steps=2, work_dir=work
    )


def place(video: Path, folder: Path, *names: str) -> Path:
    """Copies of ``video`` under ``folder`` with the given names."""
    for name in names:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video, target)
    return folder
