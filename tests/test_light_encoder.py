"""The sentence encoder without torch: after the full encoder has run once, a new process
encodes with the recorded ONNX graphs and the folder's tokenizer, and gets the same vectors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from procs import worker

from mcr.memory.encoder import SentenceEncoder, _bundled_minilm
from mcr.memory.light_encoder import BUCKETS

pytestmark = pytest.mark.slow

TEXTS = [
    "the ferry crosses the river at dawn",
    "Q: What is on the water? A: Boats moving on the water.",
    " ".join(["a long transcript sentence about the harbour and its boats"] * 40),  # past 256 tokens: cut there
]


def child(env: dict) -> dict:
    done = subprocess.run(
        worker("sentence_encode", json.dumps(TEXTS)),
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(_bundled_minilm() is None, reason="the bundled MiniLM is not installed")
def test_a_later_process_encodes_without_torch_and_gets_the_same_vectors(tmp_path):
    folder = tmp_path / "minilm"
    shutil.copytree(_bundled_minilm(), folder)
    env = {"MCR_CACHE": str(tmp_path / "cache"), "MCR_ENCODER": str(folder)}
    before = child(env)  # nothing recorded yet: the full encoder
    assert before["kind"] == "SentenceEncoder" and "torch" in before["heavy"]
    os.environ.update(env)
    try:
        full = SentenceEncoder(str(folder))
        full.encode(["a query"])  # the first short query exports and records the graphs
        want = full.encode(TEXTS)
    finally:
        for k in env:
            os.environ.pop(k)
    assert len(list((tmp_path / "cache" / "onnx").glob("sentence-*.onnx"))) == len(BUCKETS)
    light = child(env)
    assert light["kind"] == "LightEncoder" and light["heavy"] == [] and light["name"] == "minilm"
    got = np.asarray(light["vecs"], dtype=np.float32)
    assert got.shape == want.shape and (got * want).sum(1).min() > 1 - 1e-5
    os.utime(folder / "model.safetensors", ns=(1, 1))  # new weights: the recorded graphs do not fit them
    assert child(env)["kind"] == "SentenceEncoder"
