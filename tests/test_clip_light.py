"""Frame embeddings without PyTorch: once a CLIP image graph is exported and checked, a later
process embeds frames on the graph with numpy and PIL alone, to the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcr.media.video import Video
from mcr.types import TimeSpan

open_clip = pytest.importorskip("open_clip")
pytest.importorskip("onnxruntime")

TESTS = str(Path(__file__).resolve().parent)
EMBED = """
import json, sys
sys.path.insert(0, sys.argv[3])
from mcr.tools.clip import EmbeddingStage
from mcr.types import TimeSpan
from mcr.media.video import Video
stage = EmbeddingStage(model=sys.argv[2], fps=1.0, share=False)
video = Video(sys.argv[1])
rows = stage.run_chunk(video, TimeSpan(0, 6)).arrays[0.0]
print(json.dumps({"rows": rows.tolist(), "torch": "torch" in sys.modules, "kind": type(stage.images()).__name__}))
"""


def test_plain_pixels_equal_open_clips_transform():
    from PIL import Image

    from mcr.tools.clip_image import pixels, plain_preprocess

    preprocess = open_clip.image_transform(224, is_train=False)
    settings = plain_preprocess(preprocess)
    assert settings is not None and settings["resize"] == settings["crop"] == 224
    rng = np.random.default_rng(1)
    for shape in ((360, 640, 3), (224, 398, 3), (500, 300, 3), (224, 224, 3), (50, 70, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        want = preprocess(Image.fromarray(image)).numpy()
        assert np.abs(pixels(image, settings) - want).max() <= 1e-5, shape
    odd = open_clip.image_transform(224, is_train=True)  # random crops: not a plain transform
    assert plain_preprocess(odd) is None


def test_a_later_process_embeds_frames_without_pytorch(object_video, tmp_path):
    import torch
    from test_perception_models import TINY_CLIP

    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(TINY_CLIP))
    torch.manual_seed(0)
    torch.save(open_clip.create_model(f"local-dir:{folder}").state_dict(), folder / "open_clip_pytorch_model.bin")
    script = tmp_path / "embed.py"
    script.write_text(EMBED)
    env = {**os.environ, "MCR_CACHE": str(tmp_path / "cache")}

    def embed() -> dict:
        done = subprocess.run(
            [sys.executable, str(script), str(object_video), str(folder), TESTS],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, second = embed(), embed()
    assert first["torch"] and first["kind"] == "ClipModel"  # exports, checks and records the graph
    assert not second["torch"] and second["kind"] == "LightImages"
    a, b = np.asarray(first["rows"]), np.asarray(second["rows"])
    assert a.shape == b.shape == (6, 33) and np.array_equal(a[:, 0], b[:, 0])
    assert (a[:, 1:] * b[:, 1:]).sum(1).min() > 1 - 1e-5
    # new weights in the same file: the record no longer applies, the model is loaded again
    os.utime(folder / "open_clip_pytorch_model.bin", ns=(1, 1))
    assert embed()["kind"] == "ClipModel"


def test_no_record_no_light_path(tmp_path, monkeypatch):
    from mcr.tools.clip_image import light_images

    monkeypatch.setenv("MCR_CACHE", str(tmp_path))
    assert light_images("ViT-B-32|laion2b_s34b_b79k") is None
    assert Video  # the video module is importable without torch either
    assert TimeSpan(0, 1).duration == 1
