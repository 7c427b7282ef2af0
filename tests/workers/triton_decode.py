"""The Triton absorbed-decode kernel against the PyTorch absorbed path, under Triton's interpreter
(which must be switched on before triton is imported, hence a process of its own). Prints each
variant's largest relative difference and, last, ``WORST`` with the largest of them all."""

import os

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

import torch
from tiny_models import random_layer

from mcr.m2la import LatentCache, RotaryEmbedding
from mcr.m2la.triton_decode import absorbed_decode

worst = 0.0
variants = {
    "shared, key norm, rope mix": dict(key_norm="scale", shared=True, rope_mix=True),
    "one group, key norm": dict(key_norm="scale", shared=True, groups=1),
    "shared, no key norm": dict(shared=True),
}
for name, kw in variants.items():
    for softcap in (None, 5.0):
        layer = random_layer(**kw)
        layer.spec.softcap = softcap
        rot = RotaryEmbedding(32)
        b, n, prefill = 2, 72, 64
        x = torch.randn(b, n, 64, generator=torch.Generator().manual_seed(3))
        cos, sin = rot(x, torch.arange(n).expand(b, n))
        outs = {}
        for kernel in ("torch", "triton"):
            layer.decode_kernel = kernel
            cache = LatentCache()
            with torch.no_grad():
                layer(x[:, :prefill], (cos[:, :prefill], sin[:, :prefill]), None, past_key_values=cache)
                steps = [
                    layer(x[:, i : i + 1], (cos[:, i : i + 1], sin[:, i : i + 1]), None, past_key_values=cache)[0]
                    for i in range(prefill, n)
                ]
            outs[kernel] = torch.cat(steps, 1)
        diff = float((outs["torch"] - outs["triton"]).abs().max() / outs["torch"].abs().max())
        worst = max(worst, diff)
        print(f"{name} softcap={softcap}: {diff:.2e}")

# the kernel alone, with many splits and a ragged last tile, against a plain softmax
g = torch.Generator().manual_seed(0)
b, h, r, d, t, groups = 2, 20, 40, 12, 203, 4
q, qr, qb = torch.randn(b, h, r, generator=g), torch.randn(b, h, d, generator=g), torch.randn(b, h, generator=g)
lat, kr = torch.randn(b, t, r, generator=g), torch.randn(b, 1, t, d, generator=g)
sc = torch.rand(b, groups, t, generator=g) + 0.5
got = absorbed_decode(q, qr, qb, lat, kr, sc, 0.1, None, block_t=16, splits=5)
scores = q @ lat.transpose(1, 2) + qb[..., None] + qr @ kr[:, 0].transpose(1, 2)
scores = scores * sc.repeat_interleave(h // groups, dim=1) * 0.1
want = torch.softmax(scores, -1) @ lat
diff = float((got - want).abs().max() / want.abs().max())
worst = max(worst, diff)
print(f"kernel alone, 13 tiles in 5 splits: {diff:.2e}")
print("WORST", worst)
