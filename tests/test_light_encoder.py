"""The sentence encoder without torch: after the full encoder has run once, a new process
encodes with the recorded ONNX graphs and the folder's tokenizer, and gets the same vectors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from mcr.memory.encoder import SentenceEncoder, _bundled_minilm
from mcr.memory.light_encoder import BUCKETS

TEXTS = [
    "the ferry crosses the river at dawn",
    "Q: What is on the water? A: Boats moving on the water.",
    " ".join(["a long transcript sentence about the harbour and its boats"] * 40),  # past 256 tokens: cut there
]

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from mcr.memory.encoder import default_encoder
enc = default_encoder()
vecs = enc.encode(json.loads(sys.argv[1]))
print(json.dumps({"kind": type(enc).__name__, "name": enc.name, "seconds": time.perf_counter() - t0,
                  "heavy": sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules),
                  "vecs": vecs.tolist()}))
"""


def child(env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(TEXTS)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)  # fmt: skip
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
    assert light["seconds"] < before["seconds"]
    time.sleep(0.01)
    (folder / "model.safetensors").touch()  # new weights: the recorded graphs no longer apply
    assert child(env)["kind"] == "SentenceEncoder"
