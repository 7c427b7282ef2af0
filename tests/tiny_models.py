"""Tiny randomly initialised vision-language models, built offline from configs.

They prove the plumbing (inputs reach ``generate``, constrained decoding, serving),
never the quality: their weights are random unless a test trains them a little.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
PLAIN_ADDED = ["<tool_call>", "</tool_call>", "<think>", "</think>"]

# A ChatML template in the Qwen style: tools in the system turn, <tool_call> blocks for the
# assistant's calls, <tool_response> for results, images and videos as vision placeholders.
CHAT_TEMPLATE = r"""{%- macro render(content) -%}
{%- if content is string -%}{{ content }}{%- else -%}
{%- for part in content -%}
{%- if part.type == 'text' -%}{{ part.text }}
{%- elif part.type == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>
{%- elif part.type == 'video' -%}<|vision_start|><|video_pad|><|vision_end|>
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- if tools -%}
<|im_start|>system
{% if messages[0].role == 'system' %}{{ render(messages[0].content) }}

{% endif %}# Tools
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
Call a tool with <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>
{% elif messages[0].role == 'system' -%}
<|im_start|>system
{{ render(messages[0].content) }}<|im_end|>
{% endif -%}
{%- for message in messages -%}
{%- if message.role == 'system' -%}
{%- elif message.role == 'tool' -%}
<|im_start|>user
<tool_response>
{{ render(message.content) }}
</tool_response><|im_end|>
{% elif message.role == 'assistant' -%}
<|im_start|>assistant
{{ render(message.content) if message.content else '' }}
{%- for call in message.tool_calls or [] -%}
<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{%- endfor -%}
<|im_end|>
{% else -%}
<|im_start|>{{ message.role }}
{{ render(message.content) }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% if enable_thinking is defined and not enable_thinking %}<think>

</think>

{% endif -%}
{%- endif -%}"""

CORPUS = [
    '<tool_call>\n{"name": "inspect_frames", "arguments": {"span": "00:00:00.0-00:00:04.0"}}\n</tool_call>',
    '{"name": "answer", "arguments": {"answer": "a red square", "evidence": ["00:00:01.0-00:00:02.0"]}}',
    "You answer questions about a video by looking at it with tools. Question: what is shown?",
    "frames at 00:00:01.5, 00:00:02.5 seconds; the answer is blue. 0123456789 -:.,[]{}\"'",
]


def make_tokenizer(vocab_size: int = 600):
    """A byte-level BPE tokenizer trained on the spot, with the Qwen special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.add_tokens(PLAIN_ADDED)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_qwen3_vl(folder: Path, seed: int = 0) -> Path:
    """A tiny random Qwen3-VL (text hidden 64, 2 layers; vision depth 2) saved to ``folder``."""
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    folder = Path(folder)
    tokenizer = make_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    vocab = len(tokenizer)
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    pixels = {"shortest_edge": 32 * 32, "longest_edge": 64 * 64 * 4}
    image_processor = Qwen2VLImageProcessor(patch_size=16, temporal_patch_size=2, merge_size=2, size=pixels)
    video_processor = Qwen3VLVideoProcessor(
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64 * 16},
    )
    processor = Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


FIXED_CALL = '<tool_call>\n{"name": "inspect_frames", "arguments": {"span": "00:00:00.0-00:00:04.0"}}\n</tool_call>'


def steer_to_reply(folder: Path, reply: str = FIXED_CALL) -> list[int]:
    """Make the model in ``folder`` write ``reply`` whatever it is asked, through its generation config.

    Each token of the reply gets a logit bias once the reply so far precedes it (a
    ``sequence_bias`` keyed by the whole prefix, growing with its length), so the
    random weights still run but the greedy path is fixed. Returns the reply's tokens.
    """
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(folder)
    target = tok(reply + "<|im_end|>", add_special_tokens=False)["input_ids"]
    config = GenerationConfig.from_pretrained(folder)
    config.sequence_bias = [[target[: i + 1], 10.0 * (i + 1)] for i in range(len(target))]
    config.save_pretrained(folder)
    return target


def logits(model, x):
    """A causal LM's logits for the token ids ``x``, without gradients."""
    import torch

    with torch.no_grad():
        return model(x).logits


def greedy(model, x, n=32, **kw):
    """``n`` greedily decoded tokens after ``x``; ``past_key_values`` goes by the name this
    transformers takes it by."""
    import torch

    from mcr.m2la import cache_argument

    if "past_key_values" in kw:
        kw[cache_argument(model)] = kw.pop("past_key_values")
    with torch.no_grad():
        return model.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False, **kw)


def make_qwen2_5_vl(folder: Path, seed: int = 0) -> Path:
    """A tiny random Qwen2.5-VL (text hidden 64, 2 layers, multimodal RoPE in contiguous sections;
    vision depth 2 with window attention) saved to ``folder``."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    folder = Path(folder)
    tokenizer = make_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
            "out_hidden_size": 64,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    image_processor = Qwen2VLImageProcessor(
        patch_size=14, temporal_patch_size=2, merge_size=2, size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56 * 4}
    )
    video_processor = Qwen2VLVideoProcessor(
        patch_size=14, temporal_patch_size=2, merge_size=2, size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56 * 4}
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def random_layer(key_norm="none", shared=False, groups=2, rope_mix=False, seed=0):
    """A random M2LA attention layer (hidden 64, four heads of 32, rank 24, RoPE keys of 8) with
    arbitrary kept frequency pairs."""
    import torch

    from mcr.m2la import M2LAAttention, M2LASpec

    torch.manual_seed(seed)
    spec = M2LASpec(
        hidden_size=64,
        num_heads=4,
        num_kv_heads=groups,
        head_dim=32,
        v_head_dim=32,
        rank=24,
        rope_dim=8,
        shared_rope=shared,
        softmax_scale=32**-0.5,
        key_norm=key_norm,
        query_norm=True,
        qkv_bias=True,
        rope_mix=rope_mix,
    )
    layer = M2LAAttention(spec, layer_idx=0).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.3)
        if key_norm == "scale":
            layer.rope_key_gain.uniform_(0.5, 1.5)
        for r in range(spec.num_rope_keys):  # an arbitrary choice of kept frequency pairs
            layer.rope_pairs[r] = torch.randperm(16)[:4].sort().values
    return layer
