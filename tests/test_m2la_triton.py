"""The Triton absorbed-decode kernel (mcr.m2la.triton_decode) against the PyTorch absorbed path.

No GPU here: the kernel runs under Triton's interpreter (TRITON_INTERPRET=1, set before
triton is imported, so in a subprocess) on CPU-sized shapes, in float32. Tolerance: the
largest difference between the two paths' outputs at most 1e-4 times the largest output
(measured: about 1e-6; the kernel sums in another order, in float32).
"""

import subprocess

import pytest
import torch
from procs import worker, worker_env
from tiny_models import random_layer

pytest.importorskip("transformers")

from mcr.m2la import LatentCache, M2LAError, RotaryEmbedding

TOLERANCE = 1e-4


@pytest.mark.slow
def test_the_triton_kernel_equals_the_pytorch_absorbed_path_under_the_interpreter():
    pytest.importorskip("triton")
    env = worker_env(TRITON_INTERPRET="1")
    out = subprocess.run(worker("triton_decode"), capture_output=True, text=True, timeout=600, env=env)
    if out.returncode != 0 and "interpret" in out.stderr.lower() and "not supported" in out.stderr.lower():
        pytest.skip(f"Triton's interpreter cannot run here: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr[-3000:]
    worst = float(out.stdout.split("WORST")[-1])
    assert worst < TOLERANCE, out.stdout


def layer_and_cache():
    layer = random_layer(shared=True)
    rot = RotaryEmbedding(32)
    x = torch.randn(1, 9, 64)
    cos, sin = rot(x, torch.arange(9)[None])
    cache = LatentCache()
    with torch.no_grad():
        layer(x[:, :8], (cos[:, :8], sin[:, :8]), None, past_key_values=cache)
    return layer, cache, x[:, 8:], (cos[:, 8:], sin[:, 8:])


def test_auto_uses_pytorch_on_the_cpu_and_a_forced_kernel_says_what_it_needs(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    layer, cache, x, rope = layer_and_cache()
    assert layer.decode_kernel == "auto"
    with torch.no_grad():
        layer(x, rope, None, past_key_values=cache)  # auto on the CPU: the PyTorch path
        layer.decode_kernel = "triton"
        with pytest.raises(M2LAError, match="TRITON_INTERPRET=1 on the CPU"):
            layer(x, rope, None, past_key_values=cache)
        layer.decode_kernel = "fast"
        with pytest.raises(M2LAError, match="decode_kernel must be one of"):
            layer(x, rope, None, past_key_values=cache)


@pytest.mark.slow
def test_the_kernel_module_imports_triton_only_when_it_runs():
    loaded = worker("loaded", "mcr.m2la.triton_decode,mcr.m2la.attention", "triton")
    out = subprocess.run(loaded, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


def test_bad_kernel_inputs_raise_m2la_errors():
    from mcr.m2la.triton_decode import absorbed_decode, triton_available

    if not triton_available():
        pytest.skip("triton is not installed")
    q, qr = torch.zeros(1, 4, 8), torch.zeros(1, 4, 2)
    with pytest.raises(M2LAError, match="do not match"):
        absorbed_decode(q, qr, None, torch.zeros(1, 5, 7), torch.zeros(1, 1, 5, 2), None, 1.0)
    with pytest.raises(M2LAError, match="at least one cached token"):
        absorbed_decode(q, qr, None, torch.zeros(1, 0, 8), torch.zeros(1, 1, 0, 2), None, 1.0)
    with pytest.raises(M2LAError, match="q_rope must be"):
        absorbed_decode(q, torch.zeros(1, 4, 3), None, torch.zeros(1, 5, 8), torch.zeros(1, 1, 5, 2), None, 1.0)
