"""A local model's weights load in a background thread while the run builds the video index."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading

import pytest

from mcr import Agent
from mcr.models import ModelError, load_model
from mcr.models.background import LoadingModel
from mcr.run.context import RenderProfile
from mcr.run.events import IndexStage
from mcr.run.testing import ScriptedModel, answer, tool_call
from mcr.run.trace import read_trace


class Counted(ScriptedModel):
    """A scripted model with its own budgets and token counter (ten tokens a character)."""

    profile = RenderProfile(max_context_tokens=900_000, tokens_per_frame=7)

    @staticmethod
    def count_tokens(text: str) -> int:
        return 10 * len(text)


def test_the_index_is_built_while_the_model_loads(tmp_path, short_video):
    """The load can only finish after the index stage was reported: run one after the other,
    this would time out."""
    indexed = threading.Event()
    model = Counted([tool_call("inspect_frames", span="0-2", max_frames=2), answer("boats")], name="slow")

    def load():
        if not indexed.wait(30):
            raise ModelError("the index was not built while the model loaded")
        return model

    loading = LoadingModel("slow", load)
    seen = []
    agent = Agent(
        model=loading,
        policy="plain",
        memory=tmp_path / "m.db",
        subscribers=[lambda e: (seen.append(e), indexed.set()) if isinstance(e, IndexStage) else None],
        trace_dir=tmp_path,
    )
    result = agent.run(short_video, "What is on the water?")
    assert result.status == "answered" and result.answer == "boats"
    assert seen and loading.ready and model.calls
    context = agent.last_context
    assert context.profile.tokens_per_frame == 7  # the loaded model's budgets, not the defaults
    task = context.entries[0]
    assert task.kind == "task" and task.tokens == 10 * len(task.text)  # counted again by the model's counter
    shown = [e for e in context.entries if e.frames is not None]
    assert shown and shown[0].tokens == 10 * len(shown[0].text) + 7 * len(shown[0].frames)
    assert context.tokens == sum(e.tokens for e in context.entries)


@pytest.mark.slow
def test_a_tiny_vlm_loads_in_the_background_like_in_the_foreground(tmp_path):
    from tiny_models import make_qwen3_vl

    folder = make_qwen3_vl(tmp_path / "tiny")
    eager = load_model(str(folder))
    later = load_model(str(folder), background=True)
    assert isinstance(later, LoadingModel) and later.name == eager.name
    assert later.wait().profile == eager.profile and later.ready and later.seconds > 0
    assert later.constrain == eager.constrain and later.stop_token_ids == eager.stop_token_ids
    assert Agent(model=later, memory=False).profile == Agent(model=eager, memory=False).profile


@pytest.mark.slow
def test_a_model_that_fails_to_load_ends_the_run_with_its_error(tmp_path, short_video):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    model = load_model(str(broken), background=True)  # the folder looks like a model: checked, not loaded
    assert isinstance(model, LoadingModel)
    agent = Agent(model=model, policy="plain", memory=tmp_path / "m.db", trace_dir=tmp_path)
    result = agent.run(short_video, "What is on the water?")  # like a model failing during the run
    assert result.status == "error" and result.error.startswith(f"cannot load {broken}")
    events = read_trace(agent.last_trace)
    assert events[0].kind == "run_started" and events[-1].kind == "run_finished"
    assert events[-1].result.status == "error" and "cannot load" in events[-1].result.error
    assert any(e.kind == "index_stage" for e in events)  # the index was built meanwhile

    shutil.rmtree(tmp_path / ".mcr", ignore_errors=True)
    cli = subprocess.run(
        [sys.executable, "-m", "mcr.cli.main", "run", str(short_video), "What?", "--model", str(broken), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert f"the run failed: cannot load {broken}" in cli.stderr.strip().splitlines()[-1]
