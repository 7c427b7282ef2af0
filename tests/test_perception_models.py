"""CLIP and SAM paths end to end with small randomly initialised models built here.

No CLIP or SAM weights ship in any package, so these models prove the plumbing (loading
from local files through the real loaders, the embeddings index stage, grounding with
the CLIP signal, box proposals, mask tracking, the overlay) and not the quality: their
outputs are noise, and the tests say "plumbing" in their names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_vision import build_tiny_sam

from mcr.media.video import Video
from mcr.memory import Memory, VideoIndex
from mcr.tools import ModelCache, ToolContext, ToolRegistry
from mcr.tools.grounding import temporal_grounding
from mcr.types import ToolCall

pytestmark = pytest.mark.slow

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")
segment_anything = pytest.importorskip("segment_anything")


def call(ctx, t, **arguments):
    return ToolRegistry([t]).execute(ToolCall(t.name, arguments, "c1"), ctx)


@pytest.fixture
def tiny_sam(tmp_path, monkeypatch):
    torch.manual_seed(0)
    path = tmp_path / "sam_tiny_test.pth"
    torch.save(build_tiny_sam().state_dict(), path)
    monkeypatch.setitem(segment_anything.sam_model_registry, "tiny_test", build_tiny_sam)
    monkeypatch.setenv("MCR_SAM_CHECKPOINT", str(path))
    monkeypatch.setenv("MCR_SAM_MODEL", "tiny_test")
    return path


@pytest.fixture
def with_tiny_clip(tiny_clip_dir, monkeypatch):
    monkeypatch.setenv("MCR_CLIP_MODEL", str(tiny_clip_dir))
    monkeypatch.setenv("MCR_CLIP_FPS", "1")
    return tiny_clip_dir


def test_clip_embeddings_stage_and_grounding_plumbing(cue_video, with_tiny_clip, tmp_path):
    ctx = ToolContext(video=Video(cue_video), memory=Memory(tmp_path / "m.db"), models=ModelCache())
    result = call(ctx, temporal_grounding, query="the museum is closed on mondays", k=3)
    assert not result.is_error, result.text
    assert result.metadata["signals"] == ["clip", "ocr", "transcript"]
    assert all(set(r["shares"]) == {"clip", "ocr", "transcript"} for r in result.metadata["results"])
    arrays = VideoIndex(ctx.video, ctx.memory).arrays("embeddings")
    assert [key for key, _ in arrays] == [0.0, 60.0]  # one array per 60 s chunk
    table = np.concatenate([a for _, a in arrays])
    assert table.shape == (63, 33)  # 1 fps over 63 s: time + a 32-dim embedding
    assert np.allclose(table[:, 0], np.arange(63)) and np.allclose(np.linalg.norm(table[:, 1:], axis=1), 1, atol=1e-4)
    assert VideoIndex(ctx.video, ctx.memory).state("embeddings")["version"].startswith("1:local-dir:")


def test_clip_text_tower_on_onnx_runtime_matches_pytorch_plumbing(with_tiny_clip, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from mcr.tools.clip import load_clip

    monkeypatch.setenv("MCR_CACHE", str(tmp_path / "cache"))
    clip = load_clip(ModelCache(), device="cpu")
    assert clip.text_session is not None
    texts = ["a dog", "the museum is closed on mondays and tuesdays", "x"]
    fast = clip.embed_texts(texts)
    assert sorted(p.name for p in (tmp_path / "cache" / "onnx").iterdir())[0].startswith("clip-text-")
    assert not list((tmp_path / "cache" / "onnx").glob("*.part"))  # written whole, then renamed
    single = clip.embed_texts(texts[1:2])
    clip.text_session = None  # the PyTorch path
    assert np.allclose(fast, clip.embed_texts(texts), atol=1e-5) and np.allclose(single[0], fast[1], atol=1e-5)
    monkeypatch.setenv("MCR_ONNX", "0")
    assert load_clip(ModelCache(), device="cpu").text_session is None


def test_clip_image_tower_on_onnx_runtime_matches_pytorch_plumbing(cue_video, with_tiny_clip, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from mcr.tools.clip import load_clip

    monkeypatch.setenv("MCR_CACHE", str(tmp_path / "cache"))
    clip = load_clip(ModelCache(), device="cpu")
    frames = Video(cue_video).frames("00:00:08-00:00:14", fps=1, max_pixels=224 * 126).images
    fast = clip.embed_images(frames)
    assert clip.image_session is not None
    assert [p.name.split("-")[:2] for p in (tmp_path / "cache" / "onnx").glob("clip-image-*.onnx")] == [
        ["clip", "image"]
    ]
    clip.image_session = None  # the PyTorch path
    slow = clip.embed_images(frames)
    assert fast.shape == slow.shape == (6, 32) and (fast * slow).sum(1).min() > 1 - 1e-5
    monkeypatch.setenv("MCR_ONNX", "0")
    plain = load_clip(ModelCache(), device="cpu")
    plain.embed_images(frames[:1])
    assert plain.image_session is None


def test_clip_missing_weights_are_named_at_once(cue_video, tmp_path, monkeypatch):
    from mcr.tools.clip import ClipUnavailable, load_clip

    monkeypatch.setenv("MCR_CLIP_PRETRAINED", str(tmp_path / "no_clip_weights.bin"))
    with pytest.raises(ClipUnavailable, match="no_clip_weights.bin not found"):
        load_clip(ModelCache())
    monkeypatch.delenv("MCR_CLIP_PRETRAINED")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ClipUnavailable, match="ViT-B-32 / laion2b_s34b_b79k are not on this machine"):
        load_clip(ModelCache())
    ctx = ToolContext(video=Video(cue_video), models=ModelCache())
    result = call(ctx, temporal_grounding, query="wifi password", k=1)
    assert not result.is_error and "clip" not in result.metadata["signals"]
    assert "MCR_CLIP_PRETRAINED" in result.metadata["unavailable"]["clip"]


def test_segment_box_and_point_plumbing(object_video, tiny_sam, tmp_path):
    from mcr.tools.segment import segment

    ctx = ToolContext(video=Video(object_video), work_dir=tmp_path / "work", models=ModelCache())
    result = call(ctx, segment, span="0-5", prompt="box 40,100,100,140")
    assert not result.is_error, result.text
    frames = result.metadata["frames"]
    assert len(frames) == 5 and result.metadata["prompt_kind"] == "box" and result.metadata["anchor"] == 0
    assert frames[0]["iou_prev"] is None and all(isinstance(f["iou_prev"], float) for f in frames[1:])
    assert all(0.0 <= f["area_frac"] <= 1.0 and f["area_px"] >= 0 for f in frames)
    overlay = Path(result.metadata["overlay"])
    assert overlay.parent == tmp_path / "work" and overlay.exists()
    from PIL import Image

    assert Image.open(overlay).size == (4 * 320, 2 * 240)  # 5 frames in a grid of 4 columns
    point = call(ctx, segment, span="1-3", prompt="0.3, 0.5", max_frames=2)
    assert not point.is_error and point.metadata["prompt_kind"] == "point" and len(point.metadata["frames"]) == 2


@pytest.mark.parametrize(
    "prompt, message",
    [
        ("box 100,100,50,50", "X1 > X0"),
        ("point 900,10", "outside the 320x240 frame"),
        ("box 1,2,3", "a point is 'point X,Y'"),
    ],
)
def test_segment_bad_prompts(object_video, tiny_sam, tmp_path, prompt, message):
    from mcr.tools.segment import segment

    ctx = ToolContext(video=Video(object_video), work_dir=tmp_path, models=ModelCache())
    result = call(ctx, segment, span="0-2", prompt=prompt)
    assert result.is_error and message in result.text


def test_segment_text_prompt_needs_clip_or_a_point(object_video, tiny_sam, tmp_path, monkeypatch):
    from mcr.tools.segment import segment

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ctx = ToolContext(video=Video(object_video), work_dir=tmp_path, models=ModelCache())
    result = call(ctx, segment, span="0-2", prompt="the white box")
    assert result.is_error and "segment needs a point or a box here" in result.text


def test_segment_text_prompt_with_clip_proposals_plumbing(object_video, tiny_sam, with_tiny_clip, tmp_path):
    from mcr.tools.segment import segment

    ctx = ToolContext(video=Video(object_video), work_dir=tmp_path, models=ModelCache())
    result = call(ctx, segment, span="0-4", prompt="the white box", max_frames=4)
    assert not result.is_error, result.text
    assert result.metadata["prompt_kind"] == "text" and isinstance(result.metadata["clip_score"], float)
    anchor = result.metadata["anchor"]
    frames = result.metadata["frames"]
    assert len(frames) == 4 and frames[anchor]["iou_prev"] is None  # tracked both ways from the best frame
    assert all(f["iou_prev"] is not None for i, f in enumerate(frames) if i != anchor)


def test_segment_without_a_checkpoint_is_a_clear_error(object_video, tmp_path, monkeypatch):
    from mcr.tools.segment import segment

    monkeypatch.setenv("MCR_SAM_CHECKPOINT", str(tmp_path / "sam_vit_b_missing.pth"))
    ctx = ToolContext(video=Video(object_video), work_dir=tmp_path, models=ModelCache())
    result = call(ctx, segment, span="0-2", prompt="point 60,120")
    assert result.is_error and "sam_vit_b_missing.pth not found" in result.text and "MCR_SAM_CHECKPOINT" in result.text
