"""Frame embeddings without PyTorch: once a CLIP image graph is exported and checked, a later
process embeds frames on the graph with numpy and PIL alone, to the same numbers."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from procs import worker
from tiny_vision import make_tiny_clip

from mcr.media.video import Video
from mcr.types import TimeSpan

open_clip = pytest.importorskip("open_clip")
pytest.importorskip("onnxruntime")


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


@pytest.mark.slow
def test_a_later_process_embeds_frames_without_pytorch(object_video, tmp_path):
    folder = make_tiny_clip(tmp_path / "clip")
    env = {**os.environ, "MCR_CACHE": str(tmp_path / "cache")}

    def embed() -> dict:
        done = subprocess.run(
            worker("clip_embed", object_video, folder),
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
    # new weights in the same file: the record does not fit them, the model is loaded again
    os.utime(folder / "open_clip_pytorch_model.bin", ns=(1, 1))
    assert embed()["kind"] == "ClipModel"


def test_no_record_no_light_path(tmp_path, monkeypatch):
    from mcr.tools.clip_image import light_images

    monkeypatch.setenv("MCR_CACHE", str(tmp_path))
    assert light_images("ViT-B-32|laion2b_s34b_b79k") is None
    assert Video  # the video module is importable without torch either
    assert TimeSpan(0, 1).duration == 1
