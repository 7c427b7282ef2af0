"""One prefix for every call: the same system prompt and tools on every call of a run, the phase
said in a message appended at the end, what a phase may not call held back in decoding and
refused by the loop, the view append-only until a compaction, and the local backend's kept
cache equal to a fresh prefill."""

from __future__ import annotations

import json

import pytest

from mcr import Agent
from mcr.models.phases import phase_of
from mcr.models.replay import ReplayModel
from mcr.run.context import Context, RenderProfile
from mcr.run.events import ContextCompacted, ToolReturned
from mcr.run.policy import Policy
from mcr.run.testing import ScriptedModel, answer, request_kind, say, tool_call, verdict
from mcr.run.trace import read_trace
from mcr.types import FramesPart, ToolCall


def _same(a, b) -> bool:
    """Two messages as sent: role, text, tool calls and the frames they carry."""
    frames = lambda m: [tuple(p.frames.timestamps) for p in m.parts if isinstance(p, FramesPart)]  # noqa: E731
    calls = lambda m: [(c.name, json.dumps(c.arguments, sort_keys=True)) for c in m.tool_calls]  # noqa: E731
    return (a.role, a.text, calls(a), frames(a)) == (b.role, b.text, calls(b), frames(b))


def _extends(before, after) -> bool:
    return len(after) > len(before) and all(_same(x, y) for x, y in zip(before, after))


def _main_calls(model):
    return [c for c in model.calls if c.kind != "verify"]


def test_every_phase_sees_the_same_system_prompt_and_tools_and_nothing_sent_is_rewritten(tmp_path, short_video):
    model = ScriptedModel(
        [
            say("Plan: look at the start, then answer."),
            tool_call("inspect_frames", span="00:00:00-00:00:02", max_frames=2),
            say("Learned: boats at the start."),
            tool_call("inspect_frames", span="00:00:02-00:00:04", max_frames=2),
            answer("boats", evidence=["00:00:00-00:00:02"]),
            verdict("supported", 0.9, "boats"),
        ],
        strict=True,
    )
    agent = Agent(
        model=model, memory=tmp_path / "m.db", trace_dir=tmp_path, max_steps=2, policy=Policy(overview_frames=4)
    )
    result = agent.run(short_video, "What is on the water?")
    assert [c.kind for c in model.calls] == ["plan", "act", "reflect", "act", "act", "verify"]
    calls = _main_calls(model)
    assert all(c.tools == calls[0].tools for c in calls) and len(calls[0].tools) > 3
    assert all(_same(c.messages[0], calls[0].messages[0]) for c in calls)
    assert [phase_of(c.messages) for c in calls] == ["plan", "act", "reflect", "act", "answer"]
    for before, after in zip(calls, calls[1:]):  # append-only: every prompt begins with the last one
        assert _extends(before.messages, after.messages)
    # the last call is forced (max_steps): the same tools, only the answer allowed
    assert calls[-1].options["allowed_tools"] == ["answer"] and calls[0].options["allowed_tools"] == []
    assert "allowed_tools" not in calls[1].options
    assert result.status == "verified" and result.answer == "boats"


def test_a_tool_call_in_a_phase_that_may_call_none_is_not_run(tmp_path, short_video):
    """Scripted: the plan and the reflection call a tool; neither runs, the next message says so."""
    model = ScriptedModel(
        [
            tool_call("inspect_frames", span="00:00:00-00:00:02", max_frames=2, thought="Plan: look."),
            tool_call("inspect_frames", span="00:00:02-00:00:04", max_frames=2),
            tool_call("memory_search", query="boats"),
            answer("boats", evidence=["00:00:02-00:00:04"]),
        ],
        strict=True,
    )
    policy = Policy(perceive=False, model_check=False)
    result = Agent(model=model, memory=tmp_path / "m.db", trace_dir=tmp_path, policy=policy).run(short_video, "What?")
    events = read_trace(result.trace_path)
    ran = [e.name for e in events if isinstance(e, ToolReturned)]
    assert ran == ["inspect_frames"]  # only the act phase's call ran
    texts = [m.text for m in model.calls[1].messages]
    assert any("plan phase may call no tool" in t and "not run" in t for t in texts)
    assert result.status == "verified"


def test_a_server_is_told_tool_choice_and_its_stray_call_is_refused(tmp_path, short_video):
    pytest.importorskip("openai")
    from chat_server import Reply, ScriptedServer, completion

    from mcr.models.openai_server import OpenAIServerModel

    stray = {"name": "inspect_frames", "arguments": {"span": "00:00:00-00:00:02"}}
    final = {"name": "answer", "arguments": {"answer": "boats", "evidence": ["00:00:00-00:00:02"]}}
    replies = [Reply(completion("Plan", [stray])), Reply(completion(None, [stray])), Reply(completion(None, [final]))]
    with ScriptedServer(replies) as srv:
        model = OpenAIServerModel(srv.url, "stub-model")
        policy = Policy(perceive=False, reflect_every=0, verify=False)
        agent = Agent(model=model, memory=tmp_path / "m.db", trace_dir=tmp_path, policy=policy, max_steps=1)
        result = agent.run(short_video, "What?")
    plan, act, forced = srv.requests
    assert plan["tool_choice"] == "none" and "tool_choice" not in act
    assert forced["tool_choice"] == {"type": "function", "function": {"name": "answer"}}
    assert plan["tools"] == act["tools"] == forced["tools"] and plan["messages"][0] == act["messages"][0]
    ran = [e.name for e in read_trace(result.trace_path) if isinstance(e, ToolReturned) and not e.is_error]
    assert ran == ["inspect_frames"] and result.answer == "boats"  # the plan's call was not run


@pytest.fixture(scope="module")
def steered_qwen(tmp_path_factory):
    from tiny_models import make_qwen3_vl, steer_to_reply

    from mcr.models import load_model

    folder = make_qwen3_vl(tmp_path_factory.mktemp("tiny") / "qwen3-vl-tiny")
    steer_to_reply(folder)  # it writes a call of inspect_frames whatever it is asked
    return load_model(str(folder))


def test_a_local_constrained_model_writes_no_call_where_none_is_allowed(steered_qwen):
    from mcr.run.loop import answer_schema
    from mcr.tools.frames import inspect_frames
    from mcr.types import Message

    tools = [inspect_frames.schema(), answer_schema()]
    ask = [Message("system", "You look at videos."), Message("user", "What is shown?")]
    free = steered_qwen.generate(ask, tools, constrain=True, max_new_tokens=60)
    assert [c.name for c in free.tool_calls] == ["inspect_frames"]  # the steered call, when allowed
    held = steered_qwen.generate(ask, tools, constrain=True, allowed_tools=[], max_new_tokens=20)
    assert not held.tool_calls and "<tool_call>" not in (held.raw or "")
    only = steered_qwen.generate(ask, tools, constrain=True, allowed_tools=["answer"], max_new_tokens=120)
    # the grammar holds the rest back: the call it writes (random weights may not finish it) is the answer's
    assert '<tool_call>\n{"name": "answer"' in only.raw and "inspect_frames" not in only.raw


def _compacting_run(tmp_path, short_video, last):
    steps = [tool_call("inspect_frames", span=f"00:00:0{i}-00:00:0{i + 2}", max_frames=2) for i in range(0, 8, 2)]
    model = ScriptedModel(steps + [last, answer("boats", evidence=["00:00:00-00:00:01"])])
    profile = RenderProfile(max_context_tokens=6000, max_frames=3, tokens_per_frame=256, reserve_tokens=500)
    model.profile = profile
    policy = Policy(perceive=False, plan=False, reflect_every=0, model_check=False)
    agent = Agent(model=model, memory=tmp_path / "m.db", trace_dir=tmp_path, policy=policy, max_steps=8)
    return model, agent.run(short_video, "What is on the water?")


def test_a_compaction_is_one_step_in_the_trace_and_keeps_the_answer_rules(tmp_path, short_video):
    model, result = _compacting_run(tmp_path, short_video, answer("boats", evidence=["00:00:11-00:00:12"]))
    events = read_trace(result.trace_path)
    compacted = [e for e in events if isinstance(e, ContextCompacted)]
    assert len(compacted) >= 1 and all(e.tokens_after < e.tokens_before for e in compacted)
    assert compacted[0].frames_before > 3 >= compacted[0].frames_after
    calls = _main_calls(model)
    breaks = [i for i, (a, b) in enumerate(zip(calls, calls[1:]), 1) if not _extends(a.messages, b.messages)]
    assert len(breaks) == len(compacted)  # the prompt changes where the context was compacted, nowhere else
    # an unseen span is refused after the compaction; a span seen before it still counts as seen
    refused = [v for v in result.verdicts if v["verdict"] == "fail"]
    assert refused and "00:00:11.0-00:00:12.0 was not looked at" in refused[0]["reason"]
    assert result.status == "verified" and result.evidence[0].start == 0


def test_replay_scripts_of_tools_and_answers_fit_any_policy(tmp_path, short_video):
    script = tmp_path / "s.json"
    steps = [
        {"tool": "inspect_frames", "arguments": {"span": "00:00:00-00:00:02", "max_frames": 2}},
        {"answer": "boats", "evidence": ["00:00:00-00:00:02"]},
    ]
    script.write_text(json.dumps(steps))
    for policy in ("mcr", "plain"):
        agent = Agent(model=f"replay:{script}", memory=tmp_path / f"{policy}.db", trace_dir=tmp_path, policy=policy)
        result = agent.run(short_video, "What is on the water?")
        assert result.answer == "boats" and result.status == ("verified" if policy == "mcr" else "answered")
    full = [{"text": "Plan: look."}, steps[0], {"text": "Learned: boats."}, steps[1], {"text": json.dumps(
        {"verdict": "supported", "confidence": 0.9, "reason": "seen"})}]  # fmt: skip
    script.write_text(json.dumps(full))
    agent = Agent(model=f"replay:{script}", memory=tmp_path / "p.db", trace_dir=tmp_path, policy="plain")
    assert agent.run(short_video, "What is on the water?").answer == "boats"  # the phase texts are passed over
    model = ReplayModel.from_file(script)
    assert model.phases == ["think", None, "think", None, "verify"]


def test_request_kind_reads_the_phase_message():
    from mcr.run.policy import PLAN_PROMPT
    from mcr.types import Message

    tools = [{"type": "function", "function": {"name": "answer", "parameters": {}}}]
    assert request_kind([Message("user", "q"), Message("user", PLAN_PROMPT)], tools) == "plan"
    assert request_kind([Message("user", "q")], tools) == "act"


def test_the_view_is_append_only_until_the_budget_and_then_compacted_once():
    ctx = Context(profile=RenderProfile(max_context_tokens=3000, max_frames=64, reserve_tokens=200))
    ctx.add_task("q")
    sent = ctx.render()
    for i in range(60):
        call = ToolCall("asr", {}, f"c{i}")
        ctx.add_model_turn(i + 1, "", [call])
        ctx.add_tool_result(i + 1, call, f"line {i} " * 30)
        now = ctx.render()
        if not ctx.compactions:
            assert _extends(sent, now)
        sent = now
    assert len(ctx.compactions) >= 1
    first = ctx.compactions[0]
    assert first["tokens_before"] > 2800 and first["tokens_after"] <= 0.6 * 2800 + 1


# --------------------------------------------------------------- the kept cache


def _prefill_logits(model, cache, ids):
    """Logits of the first new token of ``ids`` through ``generate`` with the kept cache."""
    import torch

    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False)
    kwargs.update(return_dict_in_generate=True, output_logits=True, pad_token_id=0)
    batch = {"input_ids": ids, "attention_mask": kwargs["attention_mask"]}
    cache.attach(model, kwargs, batch)
    with torch.inference_mode():
        out = model.generate(**kwargs)
    cache.keep(out, batch)
    return out.logits[0][0]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dynamic", "latent"])
def test_the_kept_cache_gives_the_logits_of_a_fresh_prefill(kind):
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from mcr.m2la.convert import convert_to_m2la
    from mcr.m2la.io import use_latent_cache_by_default
    from mcr.models.kvcache import PromptCache

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=160, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=8, max_position_embeddings=512,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    )  # fmt: skip
    model = Gemma3ForCausalLM(config).eval()
    if kind == "latent":
        convert_to_m2la(model, rank=16, rope_dim=8)
        use_latent_cache_by_default(model)
    first = torch.randint(1, 160, (1, 30))
    second = torch.cat([first, torch.randint(1, 160, (1, 12))], dim=1)  # the next call: the same start, more after
    third = torch.cat([first[:, :20], torch.randint(1, 160, (1, 9))], dim=1)  # differs after 20 tokens
    kept = PromptCache(latent=kind == "latent")
    _prefill_logits(model, kept, first)
    for ids, reused in ((second, 30), (third, 20)):
        fresh = _prefill_logits(model, PromptCache(latent=kind == "latent"), ids)
        again = _prefill_logits(model, kept, ids)
        assert kept.reused == reused
        assert torch.allclose(again, fresh, atol=1e-4), float((again - fresh).abs().max())
    if kind == "latent":
        assert type(kept.cache).__name__ == "LatentCache"
