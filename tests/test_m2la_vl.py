"""M2LA on vision-language models: tiny random Qwen3-VL and Qwen2.5-VL, with image and video inputs.

Random weights prove the arithmetic and the plumbing (conversion, the latent cache in
``generate``, loading through ``load_model``, an agent step), not model quality.
"""

import copy
import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from tiny_models import make_qwen2_5_vl, make_qwen3_vl
from transformers import AutoModelForImageTextToText, AutoProcessor, DynamicCache
from transformers.video_utils import VideoMetadata

from mcr.cli.m2la import main
from mcr.m2la import (
    LatentCache,
    M2LAAttention,
    M2LAError,
    cache_argument,
    capture_calibration,
    convert_to_m2la,
    load_m2la,
    processor_batches,
)
from mcr.m2la.factor import axis_quota
from mcr.m2la.families import multimodal_pair_axes

pytestmark = pytest.mark.slow

MAKERS = {"qwen3_vl": make_qwen3_vl, "qwen2_5_vl": make_qwen2_5_vl}
PROMPT = "look <|vision_start|><|image_pad|><|vision_end|> then <|vision_start|><|video_pad|><|vision_end|> what?"


@pytest.fixture(scope="module", params=list(MAKERS))
def source(request, tmp_path_factory):
    """(kind, folder) of a tiny random VLM saved with its processor."""
    folder = MAKERS[request.param](tmp_path_factory.mktemp(request.param) / "model")
    return request.param, folder


def load(folder):
    return AutoModelForImageTextToText.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder)


def media(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)


def image_and_video(processor, seed=0):
    image, video = media(seed)
    meta = VideoMetadata(total_num_frames=4, fps=2.0, frames_indices=[0, 1, 2, 3], height=64, width=64)
    return dict(
        processor(
            text=[PROMPT],
            images=[image],
            videos=[video],
            video_metadata=[meta],
            do_sample_frames=False,
            return_tensors="pt",
        )
    )


def text_config(model):
    return model.config.get_text_config(decoder=True)


def lossless(model):
    cfg = text_config(model)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return cfg.num_key_value_heads * head_dim, head_dim


def generate(model, batch, n=12, **kw):
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False, **kw)
    return out[:, batch["input_ids"].shape[1] :]


def test_lossless_conversion_keeps_the_logits_with_image_and_video(source):
    kind, folder = source
    model, processor = load(folder)
    batch = image_and_video(processor)
    assert batch["pixel_values"].numel() and batch["pixel_values_videos"].numel()
    with torch.no_grad():
        expected = model(**batch).logits
    converted = copy.deepcopy(model)
    rank, rope_dim = lossless(model)
    convert_to_m2la(converted, rank, rope_dim, shared_rope=False)
    layers = converted.get_decoder().layers
    assert all(isinstance(layer.self_attn, M2LAAttention) for layer in layers)
    vision = {k: v for k, v in converted.state_dict().items() if ".visual." in k or k.startswith("visual.")}
    original = model.state_dict()
    assert vision and all(torch.equal(v, original[k]) for k, v in vision.items())  # the vision tower is untouched
    with torch.no_grad():
        got = converted(**batch).logits
    assert (got - expected).abs().max() < 1e-5 * max(1.0, float(expected.abs().max()))
    assert torch.equal(generate(converted, batch), generate(model, batch))


def test_greedy_generation_with_the_latent_cache_equals_generation_without_it(source):
    kind, folder = source
    model, processor = load(folder)
    batch = image_and_video(processor, seed=1)
    image, video = media(2)
    calibration = capture_calibration(model, processor_batches(processor, [image], [(video, 2.0)]))
    convert_to_m2la(model, rank=12, rope_dim=8, calibration=calibration)
    name = cache_argument(model)
    latent = LatentCache(config=model.config)
    with_latent = generate(model, batch, **{name: latent})
    assert latent.get_seq_length() == batch["input_ids"].shape[1] + with_latent.shape[1] - 1
    assert torch.equal(generate(model, batch), with_latent)  # plain generate picks the latent cache itself
    assert torch.equal(generate(model, batch, **{name: DynamicCache(config=model.config)}), with_latent)
    assert torch.equal(generate(model, batch, use_cache=False), with_latent)


def test_bytes_per_token_equal_the_formula_at_a_reduced_rank(source):
    kind, folder = source
    model, processor = load(folder)
    cfg = text_config(model)
    rank, rope_dim = 12, 8
    report = convert_to_m2la(model, rank, rope_dim, shared_rope=True)
    key_scales = cfg.num_key_value_heads if report.key_norm == "scale" else 0  # Qwen3-VL normalises its keys
    assert report.key_norm == ("scale" if kind == "qwen3_vl" else "none")
    per_layer = rank + rope_dim * 1 + key_scales
    batch = image_and_video(processor)
    cache = LatentCache(config=model.config)
    with torch.no_grad():
        model(**batch, use_cache=True, **{cache_argument(model, "forward"): cache})
    tokens = batch["input_ids"].shape[1]
    assert cache.bytes_per_token() == cfg.num_hidden_layers * per_layer * 4
    assert cache.nbytes() == tokens * cfg.num_hidden_layers * per_layer * 4
    original = 2 * cfg.num_key_value_heads * lossless(model)[1]
    assert report.cache_ratio == pytest.approx(per_layer / original)


def test_rope_pairs_are_chosen_per_multimodal_rope_section(source):
    kind, folder = source
    model, _ = load(folder)
    axes = multimodal_pair_axes(model, text_config(model))
    # both tiny configs have mrope_section [2, 3, 3] over 8 frequency pairs
    if kind == "qwen3_vl":  # interleaved: height owns pairs 1, 4, 7; width 2, 5 (8 is past the end); time the rest
        assert axes.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    else:  # contiguous sections
        assert axes.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]
    report = convert_to_m2la(model, rank=12, rope_dim=8)
    assert report.mrope_section == [int((axes == a).sum()) for a in range(3)]
    quota = axis_quota(axes, 4)
    assert sum(quota) == 4 and all(q >= 1 for q in quota)  # every axis keeps a rotation
    for layer, attn in zip(report.layers, (x.self_attn for x in model.get_decoder().layers)):
        assert layer.rope_axes == quota
        for pairs in attn.rope_pairs:
            assert [int((axes[pairs] == a).sum()) for a in range(3)] == quota
    assert axis_quota(torch.tensor([0] * 12 + [1] * 10 + [2] * 10), 16) == [6, 5, 5]
    assert axis_quota(torch.tensor([0, 0, 1, 1, 1, 2, 2, 2]), 8) == [2, 3, 3]


def test_calibration_includes_image_and_video_tokens(source):
    kind, folder = source
    model, processor = load(folder)
    image, video = media(3)
    batches = processor_batches(processor, [image], [(video, 2.0)])
    captured = capture_calibration(model, batches)
    assert captured.kinds["image"] > 0 and captured.kinds["video"] > 0 and captured.kinds["text"] > 0
    assert captured.tokens == sum(captured.kinds.values())
    half = captured.tokens // 2
    few = capture_calibration(model, batches, max_tokens=half)  # evenly spaced over both batches
    assert few.tokens == half and few.kinds["image"] and few.kinds["video"]
    report = convert_to_m2la(copy.deepcopy(model), rank=12, rope_dim=8, calibration=batches)
    assert report.calibrated and report.calibration_tokens == captured.kinds
    assert "calibration tokens" in report.format() and "multimodal RoPE" in report.format()
    with pytest.raises(M2LAError, match="no input_ids"):
        convert_to_m2la(copy.deepcopy(model), rank=12, rope_dim=8, calibration=[{"pixel_values": 1}])
    with pytest.raises(M2LAError, match="calibration"):
        convert_to_m2la(copy.deepcopy(model), rank=12, rope_dim=8, calibration=[])


def write_media(tmp_path):
    from PIL import Image

    image, _ = media(4)
    path = tmp_path / "calib.png"
    Image.fromarray(image).save(path)
    return path


def test_cli_converts_a_vlm_with_image_and_video_calibration(source, tmp_path, capsys):
    from media import make_code_video

    kind, folder = source
    model, processor = load(folder)
    rank, rope_dim = lossless(model)
    clip = make_code_video(tmp_path / "clip.mp4", seconds=2, tone_hz=None)
    out = tmp_path / "converted"
    argv = ["convert", str(folder), str(out), "--rank", str(rank), "--rope-dim", str(rope_dim), "--per-group-rope"]
    argv += ["--calibration-image", str(write_media(tmp_path)), "--calibration-video", str(clip)]
    code = main([*argv, "--calibration-frames", "4"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "calibration tokens" in stdout and "image" in stdout and "video" in stdout
    report = json.loads((out / "m2la_report.json").read_text())
    assert report["calibration_tokens"]["video"] > 0 and len(report["mrope_section"]) == 3
    assert (out / "preprocessor_config.json").is_file() or (out / "processor_config.json").is_file()
    loaded = load_m2la(out)
    assert type(loaded).__name__ == type(model).__name__
    batch = image_and_video(processor)
    with torch.no_grad():
        assert (loaded(**batch).logits - model(**batch).logits).abs().max() < 1e-5
    code = main(
        ["convert", str(folder), str(tmp_path / "bad"), "--rank", "12", "--rope-dim", "8"]
        + [
            "--calibration-image",
            str(tmp_path / "clip.mp4"),
        ]
    )
    assert code == 2 and "cannot read calibration image" in capsys.readouterr().err


def test_image_calibration_of_a_text_model_is_refused(tmp_path, capsys):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = tmp_path / "text"
    Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    ).save_pretrained(folder)
    code = main(
        ["convert", str(folder), str(tmp_path / "o"), "--rank", "8", "--rope-dim", "4"]
        + ["--calibration-image", str(write_media(tmp_path))]
    )
    assert code == 2 and "vision-language model" in capsys.readouterr().err


@pytest.fixture(scope="module")
def converted_qwen3_vl(tmp_path_factory):
    """A tiny Qwen3-VL converted at a reduced rank by the command, as a folder."""
    base = tmp_path_factory.mktemp("vl")
    folder = make_qwen3_vl(base / "model")
    assert main(["convert", str(folder), str(base / "converted"), "--rank", "16", "--rope-dim", "8"]) == 0
    return base / "converted"


class Spy:
    """Records what reaches the transformers model's ``generate`` and which cache the attention saw."""

    def __init__(self, hf_model):
        self.calls, self.caches = [], set()
        inner = hf_model.generate

        def generate(**kwargs):
            self.calls.append(sorted(kwargs))
            return inner(**kwargs)

        hf_model.generate = generate
        attn = hf_model.get_decoder().layers[0].self_attn
        attn.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        self.caches.add(type(cache).__name__)


def frames(n=4):
    from mcr.types import Frames

    rng = np.random.default_rng(0)
    times = [1.0 + 0.5 * i for i in range(n)]
    return Frames(rng.integers(0, 255, (n, 96, 128, 3), dtype=np.uint8), times, list(range(n)), "clip.mp4", "abc")


def test_load_model_runs_a_converted_vlm_with_video_and_the_latent_cache(converted_qwen3_vl):
    from mcr.models import load_model
    from mcr.types import FramesPart, Message, TextPart

    model = load_model(str(converted_qwen3_vl))
    assert model.profile.video and all(isinstance(x.self_attn, M2LAAttention) for x in model.model.get_decoder().layers)
    spy = Spy(model.model)
    message = Message("user", [TextPart("What happens?"), FramesPart(frames())])
    model.generate([message], max_new_tokens=6, constrain=False)
    assert "pixel_values_videos" in spy.calls[0] and "video_grid_thw" in spy.calls[0]
    assert spy.caches == {"LatentCache"}


def test_an_agent_step_on_a_converted_vlm_sends_frames_to_generate(converted_qwen3_vl, tmp_path):
    from media import make_code_video

    from mcr import Agent
    from mcr.run.policy import Policy

    video = make_code_video(tmp_path / "clip.mp4", seconds=4, tone_hz=None)
    policy = Policy(overview_frames=4, plan=False, reflect_every=0, verify=False, investigate=False)
    agent = Agent(
        model=str(converted_qwen3_vl),
        max_steps=1,
        memory=False,
        policy=policy,
        trace_dir=tmp_path,
        generate_options={"max_new_tokens": 48},
    )
    spy = Spy(agent.model.wait().model)
    result = agent.run(video, "What is drawn on the screen?")
    assert spy.calls and all("pixel_values_videos" in keys for keys in spy.calls)
    assert spy.caches == {"LatentCache"}
    assert result.status  # the run ended (random weights: any status)
