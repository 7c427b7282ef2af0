"""M²LA decode at InternVideo3's dimensions, random weights: GQA against latent attention.

InternVideo3-8B's language model is 36 layers, hidden 4096, 32 query heads; the original
Qwen3-VL attention caches 8 KV heads x 128 (2,048 values per token and layer), M²LA a
rank-896 latent and one 128-dim RoPE key shared by all heads (1,024 values: half).

One source layer with those shapes (a Llama layer, random weights, no key norm) is
converted by ``convert_to_m2la`` (rank 896, rope_dim 128, shared rope key), and copies of
its weights fill every timed layer. Each decode step runs the attention of every layer
(``x = x + attention(x)``) against a cache already holding the context; the MLPs,
norms and embeddings, the same for every variant and independent of the context, are
not timed. Variants:

* ``GQA sdpa``: the original cache, PyTorch ``scaled_dot_product_attention`` (the four
  query heads of a group as four query rows, so the fused kernels apply);
* ``GQA flash``: ``flash_attn_with_kvcache`` when the ``flash_attn`` package is present;
* ``M2LA mat.``: every cached latent up-projected to keys and values each step;
* ``M2LA abs.``: absorbed decode on the latent cache (the Triton kernel on CUDA when
  Triton imports, else PyTorch); ``M2LA abs. torch`` forces the PyTorch path.

As many layers as fit in memory are timed and the time is scaled to all layers (the
table says how many ran). The floor of a decode step is the bytes it must read (cache
plus attention weights) over the device-to-device copy bandwidth measured in the same
run; ``of peak`` is that floor over the measured time.

This file imports only torch and ``mcr.m2la`` (which needs transformers), so it runs on a
machine with just PyTorch, Triton and transformers: ``PYTHONPATH=. python
benchmarks/m2la.py --config internvideo3 --device cuda``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcr.m2la import LatentCache, RotaryEmbedding, convert_to_m2la  # noqa: E402


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    rank: int
    rope_dim: int
    rope_theta: float = 5_000_000.0

    def scaled(self, factor: int) -> Shape:
        """Hidden size, heads, KV heads and rank divided by ``factor`` (head dim and RoPE key kept)."""
        if factor == 1:
            return self
        for name in ("hidden", "heads", "kv_heads", "rank"):
            if getattr(self, name) % factor:
                raise SystemExit(f"--shrink {factor} does not divide {name} {getattr(self, name)}")
        return replace(
            self,
            hidden=self.hidden // factor,
            heads=self.heads // factor,
            kv_heads=self.kv_heads // factor,
            rank=self.rank // factor,
        )

    @property
    def gqa_values(self) -> int:
        return 2 * self.kv_heads * self.head_dim

    @property
    def m2la_values(self) -> int:
        return self.rank + self.rope_dim


CONFIGS = {
    "internvideo3": Shape(layers=36, hidden=4096, heads=32, kv_heads=8, head_dim=128, rank=896, rope_dim=128),
}


def source_model(shape: Shape, layers: int, seed: int = 0):
    """A random Llama model of ``shape`` with ``layers`` layers (small vocabulary and MLP: only the
    attention matters here), float32 on the CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=shape.hidden,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=262144,
        rope_theta=shape.rope_theta,
    )
    return LlamaForCausalLM(config).eval()


def convert(model, shape: Shape):
    """Convert ``model`` in place to M²LA at the shape's rank and RoPE key (shared by all heads)."""
    return convert_to_m2la(model, shape.rank, shape.rope_dim, shared_rope=True)


# ------------------------------------------------------------------ decoders
class GQADecoder:
    """Attention-only decode with the original grouped-query cache."""

    def __init__(self, attn, shape, layers, length, extra, device, dtype, flash=False):
        self.shape, self.flash = shape, flash
        self.weights = [
            [
                getattr(attn, n).weight.detach().to(device, dtype).clone()
                for n in ("q_proj", "k_proj", "v_proj", "o_proj")
            ]
            for _ in range(layers)
        ]
        self.caches = []
        g, d, cap = shape.kv_heads, shape.head_dim, length + extra
        for _ in range(layers):
            shape_kv = (1, cap, g, d) if flash else (1, g, cap, d)
            k = torch.empty(shape_kv, device=device, dtype=dtype)
            v = torch.empty_like(k)
            for t in (k, v):  # fill in slices: no second copy of the cache in memory
                for part in t.split(8192, dim=1 if flash else 2):
                    part.normal_()
            self.caches.append((k, v))
        self.pos = length

    def step(self, x, cos, sin):
        from mcr.m2la.rope import apply_rope

        s, pos = self.shape, self.pos
        g, d, h = s.kv_heads, s.head_dim, s.heads
        for (wq, wk, wv, wo), (kc, vc) in zip(self.weights, self.caches):
            q = apply_rope((x @ wq.T).view(1, h, d), cos, sin)
            k = apply_rope((x @ wk.T).view(1, g, d), cos, sin)
            v = (x @ wv.T).view(1, g, d)
            if self.flash:
                from flash_attn import flash_attn_with_kvcache

                seqlens = torch.full((1,), pos, dtype=torch.int32, device=x.device)
                out = flash_attn_with_kvcache(
                    q.view(1, 1, h, d), kc, vc, k=k.view(1, 1, g, d), v=v.view(1, 1, g, d), cache_seqlens=seqlens
                )
            else:
                kc[:, :, pos] = k
                vc[:, :, pos] = v
                qg = q.view(1, g, h // g, d)  # the heads of a group as query rows
                out = F.scaled_dot_product_attention(qg, kc[:, :, : pos + 1], vc[:, :, : pos + 1])
            x = x + out.reshape(1, h * d) @ wo.T
        self.pos += 1
        return x

    def cache_bytes(self, length):
        return len(self.caches) * length * self.shape.gqa_values * self.caches[0][0].element_size()

    def weight_bytes(self):
        return sum(w.numel() * w.element_size() for ws in self.weights for w in ws)


class M2LADecoder:
    """Attention-only decode with M²LA layers over a :class:`LatentCache`."""

    def __init__(self, attn, shape, layers, length, extra, device, dtype, mode="absorbed", kernel="auto"):
        self.shape = shape
        self.layers = []
        for i in range(layers):
            layer = copy.deepcopy(attn).to(device, dtype)
            layer.layer_idx, layer.decode_mode, layer.decode_kernel = i, mode, kernel
            self.layers.append(layer)
        self.cache = fill_latent_cache(self.layers, length, extra, device, dtype)
        self.pos = length

    def step(self, x, cos, sin):
        h = x.view(1, 1, -1)
        for layer in self.layers:
            h = h + layer(h, (cos, sin), None, past_key_values=self.cache)[0]
        self.pos += 1
        return h.view(1, -1)

    def cache_bytes(self, length):
        return len(self.layers) * length * self.layers[0].cache_bytes_per_token()

    def weight_bytes(self):
        return sum(p.numel() * p.element_size() for layer in self.layers for p in layer.parameters())


def fill_latent_cache(layers, length, extra, device, dtype, chunk=8192):
    """A latent cache holding ``length`` random tokens in every layer, with room for ``extra`` more."""
    cache = LatentCache()
    for i, layer in enumerate(layers):
        s = layer.spec
        scale = None
        for start in range(0, length, chunk):
            n = min(chunk, length - start)
            latent = 0.1 * torch.randn(1, n, s.rank, device=device, dtype=dtype)
            rope = torch.randn(1, s.num_rope_keys, n, s.rope_dim, device=device, dtype=dtype)
            if s.key_norm == "scale":
                scale = torch.rand(1, s.num_kv_heads, n, device=device, dtype=dtype) + 0.5
            cache.update_latent(latent, rope, scale, i)
            if start == 0:
                cache.layers[i].reserve(length + extra)
    return cache


# ------------------------------------------------------------------ timing
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device, nbytes):
    """Device-to-device copy bandwidth in bytes/s (a copy reads and writes ``nbytes``)."""
    a = torch.empty(nbytes, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    a.fill_(1)
    b.copy_(a)
    sync(device)
    reps = 10 if device.type == "cuda" else 3
    start = time.perf_counter()
    for _ in range(reps):
        b.copy_(a)
    sync(device)
    seconds = time.perf_counter() - start
    del a, b
    return 2 * nbytes * reps / seconds


@torch.no_grad()
def time_decoder(decoder, shape, steps, device, dtype, warmup=2):
    rot = RotaryEmbedding(shape.head_dim, theta=shape.rope_theta).to(device)
    x = 0.1 * torch.randn(1, shape.hidden, device=device, dtype=dtype)
    times = []
    for i in range(warmup + steps):
        pos = torch.tensor([[decoder.pos]], device=device)
        cos, sin = rot(x, pos)
        sync(device)
        start = time.perf_counter()
        decoder.step(x, cos, sin)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def layers_that_fit(shape, length, device, dtype, variant, budget_bytes, cap):
    """How many layers of ``variant`` fit in ``budget_bytes`` at ``length`` (at least 1, at most ``cap``)."""
    elem = torch.empty((), dtype=dtype).element_size()
    weights = (
        2 * shape.hidden * shape.heads * shape.head_dim + 2 * shape.hidden * shape.kv_heads * shape.head_dim
    ) * elem
    if variant.startswith("GQA"):
        per_layer = length * shape.gqa_values * elem + weights
        scratch = 0
    else:
        per_layer = length * shape.m2la_values * elem + weights
        scratch = length * shape.kv_heads * 3 * shape.head_dim * elem * 3 if "mat" in variant else 0
        scratch += length * shape.heads * 4 * 4  # float32 scores and probabilities
    return max(1, min(cap, int((budget_bytes - scratch) // per_layer)))


def memory_budget(device, fraction=0.85):
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return int(free * fraction)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") * 0.5)
    except (ValueError, OSError):
        return 4 << 30


# ------------------------------------------------------------------ checks
@torch.no_grad()
def decode_paths_agree(model, steps=4, prefill=24, seed=0):
    """Largest difference between absorbed and materialised decode logits over ``steps`` positions
    after a prefill of ``prefill`` tokens, relative to the logits' size (one pass for each path)."""
    from mcr.m2la import M2LAAttention, cache_argument

    ids = torch.randint(0, model.config.vocab_size, (1, prefill + steps), generator=torch.Generator().manual_seed(seed))
    name = cache_argument(model, "forward")
    outs = {}
    for mode in ("absorbed", "materialized"):
        for layer in model.model.layers:
            if isinstance(layer.self_attn, M2LAAttention):
                layer.self_attn.decode_mode = "auto" if mode == "absorbed" else mode
        cache = LatentCache(config=model.config)
        model(input_ids=ids[:, :prefill], use_cache=True, **{name: cache})
        outs[mode] = torch.cat(
            [
                model(input_ids=ids[:, i : i + 1], use_cache=True, **{name: cache}).logits
                for i in range(prefill, prefill + steps)
            ]
        )
    for layer in model.model.layers:
        layer.self_attn.decode_mode = "auto"
    a, m = outs["absorbed"], outs["materialized"]
    return float((a - m).abs().max() / m.abs().max())


@torch.no_grad()
def kernel_check(attn, shape, device, dtype, length=4096):
    """Largest difference between the Triton and PyTorch absorbed paths on one decode step over
    ``length`` cached tokens, relative to the output's size (None where the kernel cannot run)."""
    from mcr.m2la.triton_decode import supported

    layer = copy.deepcopy(attn).to(device, dtype)
    layer.decode_mode = "absorbed"
    cache = fill_latent_cache([layer], length, 4, device, dtype)
    if not supported(cache.layers[0].latent, layer.spec.num_rope_keys, 1, None):
        return None
    rot = RotaryEmbedding(shape.head_dim, theta=shape.rope_theta).to(device)
    x = 0.1 * torch.randn(1, 1, shape.hidden, device=device, dtype=dtype)
    cos, sin = rot(x, torch.tensor([[length]], device=device))
    outs = []
    for kernel in ("torch", "triton"):
        layer.decode_kernel = kernel
        outs.append(layer(x, (cos, sin), None, past_key_values=cache)[0].float())
        cache.layers[0].crop(-1)
    return float((outs[0] - outs[1]).abs().max() / outs[0].abs().max())


# ------------------------------------------------------------------ main
def time_variant(args, shape, variant, length, gqa_attn, m2la_attn, device, dtype, bandwidth, elem) -> dict:
    """One decode variant at one context length, as many layers as fit timed and scaled to all."""
    budget = memory_budget(device)
    layers = layers_that_fit(shape, length, device, dtype, variant, budget, min(args.layers, shape.layers))
    extra = args.steps + 4
    if variant.startswith("GQA"):
        dec = GQADecoder(gqa_attn, shape, layers, length, extra, device, dtype, flash="flash" in variant)
    else:
        mode = "materialized" if "mat" in variant else "absorbed"
        kernel = "torch" if "torch" in variant else "auto"
        dec = M2LADecoder(m2la_attn, shape, layers, length, extra, device, dtype, mode, kernel)
    seconds = time_decoder(dec, shape, args.steps, device, dtype)
    scale = shape.layers / layers
    ms = seconds * 1000 * scale
    read = (dec.cache_bytes(length) + dec.weight_bytes()) * scale
    floor_ms = read / bandwidth * 1000
    values = shape.gqa_values if variant.startswith("GQA") else shape.m2la_values
    row = dict(
        variant=variant,
        context=length,
        layers_timed=layers,
        kv_bytes_per_token=values * elem * shape.layers,
        kv_gib=values * elem * shape.layers * length / 2**30,
        ms_per_token=ms,
        speedup=float("nan"),
        gb_per_s=read / (ms / 1000) / 1e9,
        of_peak=floor_ms / ms,
    )
    del dec
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def run(args):
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    shape = CONFIGS[args.config].scaled(args.shrink)
    lengths = [int(n) for n in args.lengths.split(",") if n]
    t0 = time.time()
    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    say(
        f"M2LA at {args.config} dimensions{'' if args.shrink == 1 else f' / {args.shrink}'}: {device} ({name}), {args.dtype}"
    )
    say(
        f"shape: {shape.layers} layers, hidden {shape.hidden}, {shape.heads} query heads, GQA {shape.kv_heads} KV heads x "
        f"{shape.head_dim} = {shape.gqa_values} values/token/layer; M2LA rank {shape.rank} + rope {shape.rope_dim} = "
        f"{shape.m2la_values} values ({shape.m2la_values / shape.gqa_values:.3f} of GQA)"
    )
    source = source_model(shape, 1)
    gqa_attn = copy.deepcopy(source.model.layers[0].self_attn)
    report = convert(source, shape)
    m2la_attn = source.model.layers[0].self_attn
    say(f"one layer converted in {time.time() - t0:.1f} s (energy kept {report.layers[0].energy:.3f}, random weights)")
    check = source_model(shape, args.check_layers, seed=1) if args.check_layers else None
    if check is not None:
        convert(check, shape)
        say(
            f"decode check ({args.check_layers} layers, float32, CPU): absorbed vs materialised logits, "
            f"max difference / max |logit| = {decode_paths_agree(check):.2e}"
        )
        del check
    if device.type == "cuda":
        diff = kernel_check(m2la_attn, shape, device, dtype)
        say(
            "Triton absorbed kernel: not used (triton missing?)"
            if diff is None
            else f"Triton vs PyTorch absorbed decode ({args.dtype}, 4096 cached): max difference / max |output| = {diff:.2e}"
        )
    bandwidth = copy_bandwidth(device, (1 << 30) if device.type == "cuda" else (256 << 20))
    say(f"device-to-device copy bandwidth: {bandwidth / 1e9:.0f} GB/s (read + write)")
    variants = ["GQA sdpa"]
    if device.type == "cuda" and not args.no_flash:
        try:
            import flash_attn  # noqa: F401

            variants.append("GQA flash")
        except ImportError:
            say("flash_attn is not installed: no FlashAttention row")
    variants += ["M2LA mat.", "M2LA abs."]
    if device.type == "cuda":
        variants.append("M2LA abs. torch")
    elem = torch.empty((), dtype=dtype).element_size()
    rows = []
    for length in lengths:
        base_ms = None
        for variant in variants:
            if args.skip_materialized_over and "mat" in variant and length > args.skip_materialized_over:
                continue
            row = time_variant(args, shape, variant, length, gqa_attn, m2la_attn, device, dtype, bandwidth, elem)
            if variant == "GQA sdpa":
                base_ms = row["ms_per_token"]
            row["speedup"] = (base_ms / row["ms_per_token"]) if base_ms else float("nan")
            rows.append(row)
            print(
                f"  {variant} @ {length}: {row['ms_per_token']:.2f} ms/token ({row['layers_timed']} layers timed)",
                file=sys.stderr,
                flush=True,
            )
    say()
    say(
        f"decode, attention only (MLPs not timed), ms per token for all {shape.layers} layers (time of the layers "
        f"timed x {shape.layers} / layers timed), median of {args.steps} steps; of peak = (cache + attention weight "
        f"bytes) / copy bandwidth / time"
    )
    say(
        f"{'variant':<17}{'context':>8}{'timed':>6}{'KV B/token':>11}{'KV GiB':>8}{'ms/token':>10}{'vs GQA':>8}"
        f"{'GB/s':>8}{'of peak':>8}"
    )
    for r in rows:
        say(
            f"{r['variant']:<17}{r['context']:>8}{r['layers_timed']:>6}{r['kv_bytes_per_token']:>11}"
            f"{r['kv_gib']:>8.2f}{r['ms_per_token']:>10.2f}{r['speedup']:>8.2f}{r['gb_per_s']:>8.0f}"
            f"{r['of_peak']:>8.2f}"
        )
    say(f"\ntotal time {time.time() - t0:.0f} s")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "m2la_scale.txt").write_text("\n".join(lines) + "\n")
        meta = dict(shape=asdict(shape), device=name, dtype=args.dtype, bandwidth=bandwidth, torch=torch.__version__)
        (out / "m2la_scale.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="internvideo3", choices=sorted(CONFIGS))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16")
    parser.add_argument("--lengths", default=None, help="contexts (default 8192,32768,131072,393216; CPU 1024,4096)")
    parser.add_argument("--layers", type=int, default=None, help="most layers timed (default all; CPU 2)")
    parser.add_argument("--shrink", type=int, default=None, help="divide hidden, heads, KV heads and rank (CPU: 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed decode steps (default 10; CPU 3)")
    parser.add_argument("--check-layers", type=int, default=2, help="layers of the decode-paths check (0: none)")
    parser.add_argument("--skip-materialized-over", type=int, default=0, help="no materialised row past this context")
    parser.add_argument("--no-flash", action="store_true")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for the table and JSON (default $OUT)")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cpu = args.device == "cpu"
    if args.dtype == "auto":
        args.dtype = "float32" if cpu else "bfloat16"
    args.lengths = args.lengths or ("1024,4096" if cpu else "8192,32768,131072,393216")
    args.layers = args.layers or (2 if cpu else 36)
    args.shrink = args.shrink or (4 if cpu else 1)
    args.steps = args.steps or (3 if cpu else 10)
    if cpu:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    if args.layers < 1:
        raise SystemExit("--layers must be at least 1")
    return run(args)


if __name__ == "__main__":
    main()
