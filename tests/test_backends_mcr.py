"""The full MCR policy driven by a real (tiny, randomly initialised) Qwen3-VL through
``TransformersModel`` with constrained decoding: plumbing, not answer quality.

A thin wrapper narrows what is offered at each act turn (investigate first, then
inspect_frames, then only the answer) and narrows span arguments to a start in the first
half of the clip and an end in the second, so a span is always in order; every call is
still written by the model under the grammar, the verifier's verdict under the verdict
schema. So the run goes through every phase: perceive, plan, act, reflect, a nested
investigation (which perceives its span, answers and is checked by the rules), and a
model check of the final answer.
"""

import copy
import json
from collections import Counter

import pytest
from media import make_code_video

from mcr import Agent
from mcr.models import load_model
from mcr.run.policy import Policy
from mcr.run.testing import RecordingModel
from mcr.run.trace import read_trace
from mcr.run.verify import VERDICTS

pytestmark = pytest.mark.slow

ORDERED_SPAN = r"00:00:0[0-2]\.[0-9]-00:00:0[3-5]\.[0-9]"  # the clip is 6 s long


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tiny_models import make_qwen3_vl

    return load_model(str(make_qwen3_vl(tmp_path_factory.mktemp("tiny") / "qwen3-vl-tiny")))


def narrowed(tool: dict) -> dict:
    """The tool with its spans in order and its question non-empty."""
    tool = copy.deepcopy(tool)
    props = tool["function"]["parameters"]["properties"]
    for name, prop in props.items():
        if name in ("span", "evidence"):
            target = prop.get("items", prop)
            target.update(type="string", pattern=ORDERED_SPAN)
            target.pop("anyOf", None)
        elif name == "question":
            prop["pattern"] = "[A-Za-z][A-Za-z ?]{2,30}"
    return tool


class Steered:
    """Offers the real model one tool at a time at the top level; children may only answer."""

    def __init__(self, inner):
        self.inner, self.name, self.profile = inner, "steered:" + inner.name, inner.profile
        self.top_turns = 0

    def generate(self, messages, tools=None, **options):
        if options.get("response_schema"):  # the verifier: the verdict schema holds the reply
            return self.inner.generate(messages, None, max_new_tokens=60, constrain=True, **options)
        if options.get("allowed_tools") == []:  # plan, reflect: the same tools, none of them callable
            return self.inner.generate(messages, tools, max_new_tokens=24, constrain=False, allowed_tools=[])
        names = [t["function"]["name"] for t in tools]
        if "investigate" in names:
            want = ["investigate", "inspect_frames"][self.top_turns] if self.top_turns < 2 else "answer"
            self.top_turns += 1
        else:
            want = "answer"
        offer = [narrowed(t) for t in tools if t["function"]["name"] == want]
        return self.inner.generate(messages, offer, max_new_tokens=320, constrain=True, **options)


def test_mcr_policy_with_a_real_constrained_vlm(model, tmp_path):
    import jsonschema

    video = make_code_video(tmp_path / "clip.mp4", seconds=6, tone_hz=None)
    real = RecordingModel(model)  # what the real model was offered and wrote
    steered = RecordingModel(Steered(real))  # what the loop asked for
    policy = Policy(overview_frames=4, max_depth=1, investigate_steps=1, max_verify_rounds=1, verify_frames=2)
    agent = Agent(model=steered, max_steps=4, memory=tmp_path / "m.db", policy=policy, trace_dir=tmp_path)
    result = agent.run(video, "What is drawn on the screen?")

    events = read_trace(result.trace_path)
    kinds = Counter(e.kind for e in events)
    top, child = [e for e in events if e.kind == "run_started"]
    assert (top.depth, child.depth, child.parent_run_id) == (0, 1, top.run_id)
    assert kinds["run_finished"] == 2 and events[-1].kind == "run_finished" and events[-1].depth == 0
    # the parent perceives, plans, acts, reflects and has its answer checked by rules and by the model;
    # the child (by design) perceives its span densely, acts, and has its answer checked by the rules
    phases = {d: [e.phase for e in events if e.kind == "model_called" and e.depth == d] for d in (0, 1)}
    assert {"plan", "act", "reflect", "verify"} <= set(phases[0]) and set(phases[1]) == {"act"}, phases
    assert [e.phase for e in events if e.kind == "phase" and e.depth == 0][:2] == ["perceive", "plan"]
    assert [e.phase for e in events if e.kind == "phase" and e.depth == 1][:1] == ["perceive"]
    checks = {d: [e for e in events if e.kind == "verification" and e.depth == d] for d in (0, 1)}
    assert [c.source for c in checks[0]][:2] == ["rules", "model"] and checks[0][0].verdict == "pass", checks[0]
    assert all(c.verdict in VERDICTS for c in checks[0] if c.source == "model")
    assert [c.source for c in checks[1]] == ["rules"] and checks[1][0].verdict == "pass"
    assert result.status == ("verified" if checks[0][1].passed else "failed")  # supported, and sure enough
    # the child's events all lie between its start and its end, at depth 1
    first = events.index(child)
    last = next(i for i, e in enumerate(events) if e.kind == "run_finished" and e.run_id == child.run_id)
    assert all(e.depth == 1 and e.run_id == child.run_id for e in events[first : last + 1])
    probe = next(e for e in events if e.kind == "tool_returned" and e.name == "investigate")
    assert probe.text.startswith("investigation of") and probe.metadata["child_run_id"] == child.run_id
    called = [e.call_id for e in events if e.kind == "tool_called"]
    returned = [e.call_id for e in events if e.kind == "tool_returned"]
    assert sorted(called) == sorted(returned) and len(set(called)) == len(called)
    # every act turn was one schema-valid call of the offered tool; every verdict a valid JSON verdict
    offered = [(c.tools, c.output.raw or "") for c in real.of_kind("act")]
    verdicts = [c.output.raw for c in real.of_kind("verify")]
    for offer, raw in offered:
        body = json.loads(raw[raw.index("<tool_call>") + len("<tool_call>") : raw.index("</tool_call>")])
        assert body["name"] == offer[0]["function"]["name"]
        jsonschema.validate(body["arguments"], offer[0]["function"]["parameters"])
    assert [o[0]["function"]["name"] for o, _ in offered][:2] == ["investigate", "answer"]
    assert len(verdicts) == len([c for c in checks[0] if c.source == "model"]) >= 1
    for raw in verdicts:
        assert json.loads(raw)["verdict"] in VERDICTS
    assert {c.options.get("max_time") for c in steered.calls} == {6.0}  # every call knew the video's length
