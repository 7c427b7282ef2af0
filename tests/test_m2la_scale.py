"""The M2LA benchmark at InternVideo3's dimensions (benchmarks/m2la_scale.py), on the CPU:
the shape builds, converts and decodes the same on both paths; the reduced-size run works; and
the benchmark imports nothing but torch, transformers and mcr.m2la (it must run on a GPU
machine that has only PyTorch, Triton and transformers)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from procs import worker, worker_env

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("m2la_scale", ROOT / "benchmarks" / "m2la_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["m2la_scale"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_internvideo3_shape_builds_converts_and_decodes_equal_on_both_paths(bench):
    shape = bench.CONFIGS["internvideo3"]
    assert (shape.layers, shape.hidden, shape.heads, shape.kv_heads, shape.head_dim) == (36, 4096, 32, 8, 128)
    assert (shape.rank, shape.rope_dim, shape.gqa_values, shape.m2la_values) == (896, 128, 2048, 1024)
    model = bench.source_model(shape, 2)  # two layers at full width, random weights
    report = bench.convert(model, shape)
    attn = model.model.layers[0].self_attn
    assert attn.spec.rank == 896 and attn.spec.num_rope_keys == 1 and attn.spec.key_norm == "none"
    assert [r.values_per_token for r in report.layers] == [1024, 1024] and report.cache_ratio == 0.5
    assert attn.cache_bytes_per_token(torch.bfloat16) == 2048  # half of 8 KV heads x 128 x 2 x 2 bytes
    assert bench.decode_paths_agree(model, steps=3, prefill=16) < 1e-5  # float32: absorbed = materialised


def test_the_reduced_cpu_run_writes_its_table(bench, tmp_path):
    argv = ["--device", "cpu", "--lengths", "256,512", "--steps", "1", "--check-layers", "1"]
    rows = bench.main([*argv, "--out", str(tmp_path)])
    variants = {r["variant"] for r in rows}
    assert variants == {"GQA sdpa", "M2LA mat.", "M2LA abs."}
    assert all(r["ms_per_token"] > 0 and r["layers_timed"] == 2 for r in rows)
    table = (tmp_path / "m2la_scale.txt").read_text()
    assert "decode check" in table and "copy bandwidth" in table and "ms/token" in table
    data = json.loads((tmp_path / "m2la_scale.json").read_text())
    assert data["meta"]["shape"]["hidden"] == 1024 and len(data["rows"]) == 6  # --shrink 4 on the CPU


@pytest.mark.slow
def test_the_benchmark_imports_only_torch_transformers_and_mcr_m2la():
    env = worker_env(PYTHONPATH=str(ROOT / "benchmarks"))
    out = subprocess.run(worker("m2la_scale_imports"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    ours, heavy = out.stdout.splitlines()
    allowed = {"mcr", "mcr.errors", "mcr.lazy", "mcr.m2la"}
    assert all(m in allowed or m.startswith("mcr.m2la.") for m in ours.split()), ours
    assert heavy == "-", heavy


@pytest.mark.slow
def test_the_benchmark_runs_from_the_checkout(tmp_path):
    """``python benchmarks/m2la.py --config ...`` puts the checkout first on the path itself, so it
    uses this checkout's mcr.m2la (no ``pip install -e .`` needed) from any folder."""
    script = ROOT / "benchmarks" / "m2la.py"
    out = subprocess.run(
        [sys.executable, str(script), "--config", "internvideo3", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "--lengths" in out.stdout and "--shrink" in out.stdout, out.stderr[-2000:]
    code = (
        f"import runpy, sys; sys.argv = ['x']; g = runpy.run_path({str(script)!r}, run_name='probe'); "
        "import mcr.m2la; print(mcr.m2la.__file__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert Path(out.stdout.strip()).resolve() == (ROOT / "mcr" / "m2la" / "__init__.py").resolve()
