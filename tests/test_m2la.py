"""M2LA latent attention: layer, cache and conversion on tiny random models.

Random weights prove the arithmetic and the plumbing, not model quality.
"""

import copy

import pytest
import torch

pytest.importorskip("transformers")

from tiny_models import greedy, logits, random_layer
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from mcr.m2la import (
    LatentCache,
    LatentLayer,
    LatentSlidingLayer,
    M2LAAttention,
    M2LAError,
    RotaryEmbedding,
    convert_to_m2la,
)

SMALL = dict(vocab_size=160, hidden_size=64, intermediate_size=128, num_hidden_layers=2, max_position_embeddings=512)


def qwen2(**over):
    torch.manual_seed(0)
    cfg = Qwen2Config(**{**SMALL, "num_attention_heads": 4, "num_key_value_heads": 2, **over})
    return Qwen2ForCausalLM(cfg).eval()


def qwen3(**over):
    torch.manual_seed(0)
    cfg = Qwen3Config(**{**SMALL, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, **over})
    model = Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norm weights, so the key norm matters
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model


def gemma3(**over):
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        **{
            **SMALL,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 8,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
            **over,
        }
    )
    model = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(-0.5, 0.5)
    return model


def ids(batch=1, n=12, seed=1):
    return torch.randint(0, SMALL["vocab_size"], (batch, n), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- the layer
ROPES = {
    "standard": dict(),
    "mrope-sections": dict(mrope_section=[4, 6, 6]),
    "mrope-interleaved": dict(mrope_section=[6, 5, 5], mrope_interleaved=True),
}
VARIANTS = {
    "per-group": dict(),
    "shared-keynorm-mixed": dict(key_norm="scale", shared=True, rope_mix=True),
    "one-group-keynorm": dict(key_norm="scale", shared=True, groups=1),
}


@pytest.mark.parametrize("rope", list(ROPES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_prefill_and_absorbed_decode_agree(rope, variant):
    layer = random_layer(**VARIANTS[variant])
    rot = RotaryEmbedding(32, **ROPES[rope])
    b, n, split = 2, 14, 9
    x = torch.randn(b, n, 64)
    pos = torch.arange(n).expand(b, n)
    if rope != "standard":  # time, height, width ids as for a 3x3 image between text
        pos = torch.stack([pos, pos // 3 + 2 * (pos % 2), (pos * 7) % 5])
    cos, sin = rot(x, pos)
    with torch.no_grad():
        prefill, _ = layer(x, (cos, sin), None)  # materialised keys/values, SDPA
        layer.decode_mode = "absorbed"
        absorbed_all, _ = layer(x, (cos, sin), None)  # absorbed over the whole sequence
        layer.decode_mode = "auto"
        cache = LatentCache()
        parts = [layer(x[:, :split], (cos[:, :split], sin[:, :split]), None, past_key_values=cache)[0]]
        for i in range(split, n):  # one token at a time: absorbed decode over the latent cache
            parts.append(layer(x[:, i : i + 1], (cos[:, i : i + 1], sin[:, i : i + 1]), None, past_key_values=cache)[0])
    incremental = torch.cat(parts, dim=1)
    assert (prefill - absorbed_all).abs().max() < 1e-4
    assert (prefill - incremental).abs().max() < 1e-4
    assert cache.get_seq_length() == n


def test_multimodal_rope_with_equal_axes_is_standard_rope():
    x = torch.randn(1, 5, 8)
    pos = torch.arange(5)[None]
    std = RotaryEmbedding(32)(x, pos)
    for kw in (ROPES["mrope-sections"], ROPES["mrope-interleaved"]):
        mm = RotaryEmbedding(32, **kw)(x, torch.stack([pos, pos, pos]))
        assert torch.allclose(std[0], mm[0]) and torch.allclose(std[1], mm[1])


# ---------------------------------------------------------------- the cache
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("variant", ["per-group", "shared", "keynorm"])
def test_cache_bytes_per_token_exact(dtype, variant):
    kw = {"per-group": {}, "shared": dict(shared=True, rope_mix=True), "keynorm": dict(key_norm="scale")}[variant]
    layer = random_layer(**kw).to(dtype)
    s = layer.spec
    x = torch.randn(1, 10, 64, dtype=dtype)
    cos, sin = RotaryEmbedding(32)(x, torch.arange(10)[None])
    cache = LatentCache()
    with torch.no_grad():
        layer(x, (cos, sin), None, past_key_values=cache)
    size = torch.empty((), dtype=dtype).element_size()
    scales = s.num_kv_heads if variant == "keynorm" else 0
    expected = (s.rank + s.rope_dim * s.num_rope_keys + scales) * size
    assert cache.bytes_per_token(0) == expected == layer.cache_bytes_per_token()
    assert cache.nbytes() == 10 * expected
    if variant != "keynorm":
        assert expected == (s.rank + s.rope_dim * s.num_rope_keys) * size


def test_cache_grows_in_chunks_and_sliding_layer_keeps_window():
    layer = LatentLayer(chunk_size=4)
    for t in range(1, 11):
        latent, _, _ = layer.update_latent(torch.full((1, 1, 3), float(t)), torch.zeros(1, 1, 1, 2))
        assert latent.shape[1] == t and layer.capacity == 4 * ((t + 3) // 4)
    assert latent[0, :, 0].tolist() == [float(i) for i in range(1, 11)]

    sliding = LatentSlidingLayer(sliding_window=4, chunk_size=2)
    for t in range(1, 9):
        latent, _, _ = sliding.update_latent(torch.full((1, 1, 3), float(t)), torch.zeros(1, 1, 1, 2))
    assert latent[0, :, 0].tolist() == [5.0, 6.0, 7.0, 8.0]  # 3 kept + the new one
    assert sliding.get_seq_length() == 8 and sliding.get_mask_sizes(1) == (4, 5)


def test_latent_cache_refuses_full_keys():
    with pytest.raises(M2LAError, match="latent"):
        LatentCache().update(torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4), 0)


# ---------------------------------------------------------------- conversion
def test_greedy_generation_with_latent_cache_equals_no_cache():
    model = qwen2()
    convert_to_m2la(model, rank=24, rope_dim=8)
    x = ids()
    cache = LatentCache(config=model.config)
    with_cache = greedy(model, x, past_key_values=cache)
    without = greedy(model, x, use_cache=False)
    assert with_cache.shape[1] == x.shape[1] + 32
    assert torch.equal(with_cache, without)
    assert cache.get_seq_length() == x.shape[1] + 31
    assert cache.nbytes() == cache.get_seq_length() * (24 + 8 * 2) * 4 * 2  # 2 layers, float32


def test_batched_left_padded_generation_with_latent_cache():
    model = qwen2()
    convert_to_m2la(model, rank=24, rope_dim=8)
    x = ids(batch=2, n=10)
    mask = torch.ones_like(x)
    mask[0, :4] = 0  # the first prompt is 4 tokens shorter, padded on the left
    x[0, :4] = 0
    kw = dict(attention_mask=mask, pad_token_id=0)
    cached = greedy(model, x, n=12, past_key_values=LatentCache(model), **kw)
    assert torch.equal(cached, greedy(model, x, n=12, use_cache=False, **kw))
    alone = greedy(model, x[1:], n=12)  # the unpadded row matches its own unbatched run
    assert torch.equal(cached[1:], alone)


@pytest.mark.parametrize(
    "make", [qwen2, lambda: LlamaForCausalLM(LlamaConfig(**SMALL, num_attention_heads=4, num_key_value_heads=2)).eval()]
)
def test_lossless_conversion_reproduces_logits(make):
    model = make()
    x = ids(batch=2, n=16)
    before = logits(model, x)
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    groups = model.config.num_key_value_heads
    report = convert_to_m2la(model, rank=groups * head_dim, rope_dim=head_dim)
    assert all(isinstance(layer.self_attn, M2LAAttention) for layer in model.model.layers)
    assert (logits(model, x) - before).abs().max() < 1e-3
    assert report.cache_ratio == 1.0 and all(r.energy > 0.999999 for r in report.layers)


def test_shared_rope_key_is_exact_when_groups_differ_by_a_rotation():
    model = qwen2()
    d, k = 16, 8
    with torch.no_grad():
        for layer in model.model.layers:  # group 1's keys = group 0's keys times a complex number per pair
            w, b = layer.self_attn.k_proj.weight.view(2, d, -1), layer.self_attn.k_proj.bias.view(2, d)
            c = torch.randn(k, 2)
            for t in (w, b):
                re, im = t[0, :k], t[0, k:]
                cr, ci = (c[:, 0], c[:, 1]) if t.dim() == 2 else (c[:, :1], c[:, 1:])
                t[1, :k], t[1, k:] = re * cr - im * ci, re * ci + im * cr
    x = ids(n=16)
    before = logits(model, x)
    report = convert_to_m2la(model, rank=2 * d, rope_dim=d, shared_rope=True)
    assert report.layers[0].rope_share_energy > 0.999999
    assert (logits(model, x) - before).abs().max() < 1e-3
    assert torch.equal(greedy(model, x, past_key_values=LatentCache(model)), greedy(model, x, use_cache=False))


@pytest.mark.parametrize("key_norm,shared", [("scale", False), ("scale", True), ("fold", True)])
def test_qwen3_with_key_norm_converts_and_generates(key_norm, shared):
    model = qwen3()
    x = ids()
    before = logits(model, x)
    report = convert_to_m2la(
        model, rank=24, rope_dim=8, key_norm=key_norm, shared_rope=shared, calibration=ids(2, 32, 5)
    )
    assert report.key_norm == key_norm
    after = logits(model, x)
    assert torch.isfinite(after).all() and (after - before).abs().max() > 0  # lossy, as configured
    cache = LatentCache(config=model.config)
    out = greedy(model, x, past_key_values=cache)
    assert torch.equal(out, greedy(model, x, use_cache=False))
    keys = 1 if shared else 2
    scales = 2 if key_norm == "scale" else 0
    assert cache.bytes_per_token(0) == (24 + 8 * keys + scales) * 4


def test_captured_calibration_is_reusable():
    from mcr.m2la import capture_calibration

    base = qwen3()
    calib = ids(2, 32, 5)
    captured = capture_calibration(base, calib)
    assert captured.tokens == 64
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    convert_to_m2la(a, rank=24, rope_dim=8, calibration=calib)
    convert_to_m2la(b, rank=24, rope_dim=8, calibration=captured)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(M2LAError, match="other layers"):
        convert_to_m2la(gemma3(), rank=16, rope_dim=8, calibration=captured)


def test_qwen3_key_norm_scale_is_lossless_at_full_settings():
    model = qwen3()
    x = ids(n=16)
    before = logits(model, x)
    convert_to_m2la(model, rank=32, rope_dim=16, key_norm="scale")
    assert (logits(model, x) - before).abs().max() < 1e-3


def test_gemma3_sliding_layers_lossless_and_cached_generation():
    model = gemma3()
    x = ids(n=20)  # longer than the sliding window of 8
    before = logits(model, x)
    report = convert_to_m2la(model, rank=16, rope_dim=16)  # one KV head: shared rope key, key norm kept exactly
    assert report.shared_rope and report.key_norm == "scale"
    assert (logits(model, x) - before).abs().max() < 1e-3
    cache = LatentCache(config=model.config)
    assert torch.equal(greedy(model, x, past_key_values=cache), greedy(model, x, use_cache=False))
    assert isinstance(cache.layers[0], LatentSlidingLayer) and cache.layers[0].length <= 8
    model2 = gemma3()
    convert_to_m2la(model2, rank=12, rope_dim=4)
    assert torch.equal(greedy(model2, x, past_key_values=LatentCache(model2)), greedy(model2, x, use_cache=False))


def test_plain_generate_uses_latent_cache_after_conversion():
    model = qwen2()
    convert_to_m2la(model, rank=24, rope_dim=8)
    with torch.no_grad():
        out = model.generate(ids(), max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    assert isinstance(out.past_key_values, LatentCache)


# ---------------------------------------------------------------- bad input
def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rank=24, rope_dim=7), "even"),
        (dict(rank=24, rope_dim=0), "even"),
        (dict(rank=24, rope_dim=18), "larger than the head dim 16"),
        (dict(rank=65, rope_dim=8), "larger than the projection allows: at most 48"),
        (dict(rank=0, rope_dim=8), "at least 1"),
        (dict(rank=24, rope_dim=8, key_norm="fold"), "no key norm"),
        (dict(rank=24, rope_dim=8, calibration=torch.tensor([[1, 999]])), "calibration"),
    ],
)
def test_bad_arguments_fail_before_touching_weights(kwargs, match):
    model = qwen2()
    before = state(model)
    with pytest.raises(M2LAError, match=match):
        convert_to_m2la(model, **kwargs)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(layer.self_attn, M2LAAttention) for layer in model.model.layers)


def test_unknown_family_and_double_conversion_fail_clearly():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)).eval()
    before = state(gpt2)
    with pytest.raises(M2LAError, match="unknown model family 'gpt2'"):
        convert_to_m2la(gpt2, rank=8, rope_dim=4)
    assert all(torch.equal(before[k], v) for k, v in gpt2.state_dict().items())
    model = qwen2()
    convert_to_m2la(model, rank=24, rope_dim=8)
    with pytest.raises(M2LAError, match="already converted"):
        convert_to_m2la(model, rank=24, rope_dim=8)
