"""``segment``: the mask of one object across the frames of a span, with segment-anything.

The object is given by a point, a box, or a text query. A text query needs CLIP: the
frame of the span that matches the text best is taken, boxes of several sizes are laid
over it, and the box whose crop CLIP finds most like the text prompts SAM. The mask
is then carried to the other frames by prompting SAM with the previous frame's box and
centre and keeping, of its candidate masks, the one that overlaps the previous mask
most (mask IoU tracking).

Weights: ``MCR_SAM_CHECKPOINT`` (a segment-anything checkpoint such as
``sam_vit_b_01ec64.pth``) and ``MCR_SAM_MODEL`` (``vit_b``, ``vit_l``, ``vit_h``; by
default read from the file name). Without ``MCR_SAM_CHECKPOINT`` the official checkpoint of
``MCR_SAM_MODEL`` (default ``vit_b``) is fetched on first use from the segment-anything
release URL (``MCR_SAM_URL`` names a mirror folder instead) into ``~/.cache/mcr``, kept only
if its SHA-256 starts with the hash in its published file name (``mcr-agent models pull sam``
fetches it ahead of time; ``HF_HUB_OFFLINE=1`` never fetches).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from mcr.types import TimeSpan, format_time

from .base import ToolContext, ToolError, ToolResult, ToolRetry, tool
from .stages import check_span

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything"
# the official checkpoints; the hex digits in each name begin the file's SHA-256
OFFICIAL = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"}
DEFAULT_CHECKPOINT = Path("~/.cache/mcr/sam_vit_b_01ec64.pth")
HOW_TO_GET = (
    "download a segment-anything checkpoint (e.g. sam_vit_b_01ec64.pth from the segment-anything "
    "repository's model links) and set MCR_SAM_CHECKPOINT=/path/to/it, or `mcr-agent models pull sam`"
)
_NUM = r"-?\d+(?:\.\d+)?"


def sam_spec() -> tuple[str, str]:
    """``(checkpoint path, model type)``."""
    model_type = os.environ.get("MCR_SAM_MODEL")
    chosen = os.environ.get("MCR_SAM_CHECKPOINT")
    if chosen:
        checkpoint = os.path.expanduser(chosen)
    else:
        name = OFFICIAL.get(model_type or "vit_b", OFFICIAL["vit_b"])
        checkpoint = os.path.expanduser(str(DEFAULT_CHECKPOINT.with_name(name)))
    if not model_type:
        found = re.search(r"vit_[bhl]", os.path.basename(checkpoint))
        model_type = found.group(0) if found else "vit_b"
    return checkpoint, model_type


def fetchable() -> bool:
    """The checkpoint is the official default, not here yet, and may be fetched (not offline)."""
    from mcr.models.hub import offline

    checkpoint, _ = sam_spec()
    return not os.environ.get("MCR_SAM_CHECKPOINT") and not os.path.isfile(checkpoint) and not offline()


def fetch_official(model_type: str = "vit_b") -> Path:
    """The official checkpoint of ``model_type`` in ``~/.cache/mcr``, fetched from the release
    URL (``MCR_SAM_URL``: a mirror) when it is not there, and kept only when its SHA-256 begins
    with the hex digits in its file name."""
    from mcr.models.hub import fetch_url

    name = OFFICIAL[model_type]
    base = (os.environ.get("MCR_SAM_URL") or SAM_URL).rstrip("/")
    digest = name.rsplit("_", 1)[-1].split(".")[0]
    return fetch_url(f"{base}/{name}", DEFAULT_CHECKPOINT.with_name(name).expanduser(), digest, "SAM checkpoint")


def fetch_checkpoint() -> str:
    """The checkpoint's path, fetching the official one first when it is the default and missing."""
    checkpoint, model_type = sam_spec()
    if fetchable():
        return str(fetch_official(model_type))
    return checkpoint


def unavailable_reason() -> str | None:
    """Why SAM cannot load here, found without importing it or asking the network (None: it may
    load; the official checkpoint is fetched on its first use)."""
    import importlib.util

    if importlib.util.find_spec("segment_anything") is None:
        return "segment-anything is not installed: `pip install segment-anything`"
    checkpoint, _ = sam_spec()
    if not os.path.isfile(checkpoint) and not fetchable():
        why = "not found" if os.environ.get("MCR_SAM_CHECKPOINT") else "not on this machine and HF_HUB_OFFLINE is set"
        return f"SAM checkpoint {checkpoint} {why}: {HOW_TO_GET}"
    return None


def left_out_reason() -> str | None:
    """Why the built-in tools leave ``segment`` out here: SAM cannot load, or its checkpoint is
    not on this machine yet. Offered then, a call would start a download of hundreds of MB in the
    middle of a run, or fail after the network's timeout where there is none; the checkpoint is
    fetched ahead instead (``mcr-agent models pull sam``). ``segment`` given to an Agent by
    itself still fetches it on first use."""
    reason = unavailable_reason()
    if reason is None and fetchable():
        reason = (
            f"the SAM checkpoint {sam_spec()[0]} is not here yet: fetch it with `mcr-agent models pull sam`, "
            "or set MCR_SAM_CHECKPOINT=/path/to/it"
        )
    return reason


def load_sam(models: Any, device: str = "auto") -> Any:
    """A ``SamPredictor`` over the configured checkpoint, loaded once per process."""
    reason = unavailable_reason()
    if reason:
        raise ToolError(reason)
    checkpoint, model_type = sam_spec()

    def load():
        import torch
        from segment_anything import SamPredictor, sam_model_registry

        from mcr.models import ModelNotAvailable

        try:
            fetch_checkpoint()
        except ModelNotAvailable as exc:
            raise ToolError(f"{exc}; or {HOW_TO_GET}") from None

        if model_type not in sam_model_registry:
            raise ToolError(f"unknown SAM model type {model_type!r}; one of {', '.join(sorted(sam_model_registry))}")
        dev = device if device not in ("auto", "", None) else ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            sam = sam_model_registry[model_type](checkpoint=checkpoint)
        except Exception as exc:
            raise ToolError(
                f"SAM checkpoint {checkpoint} cannot load as {model_type}: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        return SamPredictor(sam.to(dev).eval())

    return models.get(("sam", checkpoint, model_type, device), load)


def parse_prompt(prompt: str, width: int, height: int) -> tuple[str, Any]:
    """``("point", [[x, y]])``, ``("box", [x0, y0, x1, y1])`` or ``("text", prompt)``.

    Coordinates are pixels of the video's frame; values all within 0..1 are fractions of it."""
    text = prompt.strip()
    if not text:
        raise ToolRetry("the prompt is empty: give 'point X,Y', 'box X0,Y0,X1,Y1' or a short description")
    m = re.fullmatch(rf"(?:(point|box)\s*[:=]?\s*)?[\[(]?\s*({_NUM}(?:\s*[, ]\s*{_NUM})*)\s*[\])]?", text, re.I)
    if m is None:
        return "text", text
    values = [float(v) for v in re.findall(_NUM, m.group(2))]
    if len(values) not in (2, 4) or (m.group(1) and {"point": 2, "box": 4}[m.group(1).lower()] != len(values)):
        raise ToolRetry("a point is 'point X,Y' and a box is 'box X0,Y0,X1,Y1' (pixels of the frame)")
    if all(0.0 <= v <= 1.0 for v in values):
        values = [v * (width if i % 2 == 0 else height) for i, v in enumerate(values)]
    xs, ys = values[0::2], values[1::2]
    if any(not 0 <= x <= width for x in xs) or any(not 0 <= y <= height for y in ys):
        raise ToolRetry(f"the prompt lies outside the {width}x{height} frame")
    if len(values) == 2:
        return "point", np.array([values], dtype=np.float32)
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise ToolRetry("a box is X0,Y0,X1,Y1 with X1 > X0 and Y1 > Y0")
    return "box", np.array(values, dtype=np.float32)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def proposal_boxes(width: int, height: int) -> np.ndarray:
    """Boxes of three sizes laid over the frame with half-box strides."""
    boxes = []
    for frac in (0.25, 0.4, 0.6):
        bw, bh = width * frac, height * frac
        for y in np.arange(0, height - bh + 1, bh / 2):
            for x in np.arange(0, width - bw + 1, bw / 2):
                boxes.append((x, y, x + bw, y + bh))
    return np.array(boxes, dtype=np.float32)


def text_prompt(ctx: ToolContext, images: np.ndarray, query: str) -> tuple[int, np.ndarray, float]:
    """The frame that best matches ``query`` and the box in it whose crop matches best."""
    from .clip import ClipUnavailable, load_clip, unavailable_reason

    reason = unavailable_reason()
    try:
        if reason:
            raise ClipUnavailable(reason)
        clip = load_clip(ctx.models, device=ctx.device)
    except ClipUnavailable as exc:
        raise ToolRetry(
            f"segment needs a point or a box here: finding {query!r} by text needs CLIP weights ({exc}). "
            "Give the prompt as 'point X,Y' or 'box X0,Y0,X1,Y1' in pixels of the frame"
        ) from None
    qvec = clip.embed_texts([query])[0]
    anchor = int(np.argmax(clip.embed_images(list(images)) @ qvec))
    image = images[anchor]
    h, w = image.shape[:2]
    boxes = proposal_boxes(w, h)
    crops = [image[int(y0) : int(y1), int(x0) : int(x1)] for x0, y0, x1, y1 in boxes]
    scores = clip.embed_images(crops) @ qvec
    best = int(np.argmax(scores))
    return anchor, boxes[best], float(scores[best])


def track_masks(predictor: Any, images: np.ndarray, anchor: int, kind: str, value: np.ndarray) -> list[dict]:
    """Masks of the object in every frame, from ``anchor`` outwards."""
    out: list[dict | None] = [None] * len(images)
    predictor.set_image(images[anchor])
    if kind == "point":
        masks, scores, _ = predictor.predict(
            point_coords=value, point_labels=np.ones(len(value)), multimask_output=True
        )
    else:
        masks, scores, _ = predictor.predict(box=value, multimask_output=True)
    j = int(np.argmax(scores))
    out[anchor] = {"mask": masks[j], "score": float(scores[j]), "iou_prev": None, "lost": not masks[j].any()}
    for step in (1, -1):
        prev = out[anchor]["mask"]
        i = anchor + step
        while 0 <= i < len(images):
            box = mask_box(prev)
            if box is None:
                out[i] = {"mask": np.zeros_like(prev), "score": 0.0, "iou_prev": 0.0, "lost": True}
                i += step
                continue
            ys, xs = np.nonzero(prev)
            centre = np.array([[xs.mean(), ys.mean()]], dtype=np.float32)
            predictor.set_image(images[i])
            masks, scores, _ = predictor.predict(
                point_coords=centre, point_labels=np.ones(1), box=box, multimask_output=True
            )
            ious = [mask_iou(m, prev) for m in masks]
            j = int(np.argmax(ious))
            lost = ious[j] < 0.05 or not masks[j].any()
            out[i] = {"mask": masks[j], "score": float(scores[j]), "iou_prev": ious[j], "lost": lost}
            if not lost:
                prev = masks[j]
            i += step
    return out  # type: ignore[return-value]


def save_overlay(path: Path, images: np.ndarray, results: list[dict], times: list[float]) -> Path:
    """The frames with their masks tinted red and boxes drawn, in one grid image."""
    from PIL import Image, ImageDraw

    tiles = []
    for image, res, t in zip(images, results, times):
        tile = image.astype(np.float32).copy()
        mask = res["mask"]
        tile[mask] = 0.5 * tile[mask] + 0.5 * np.array([255, 0, 0], dtype=np.float32)
        pic = Image.fromarray(tile.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(pic)
        box = mask_box(mask)
        if box is not None:
            draw.rectangle([float(v) for v in box], outline=(255, 255, 0), width=2)
        draw.text((4, 4), format_time(t) + (" lost" if res["lost"] else ""), fill=(255, 255, 255))
        pic.thumbnail((320, 320))
        tiles.append(pic)
    cols = min(4, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    tw, th = tiles[0].size
    sheet = Image.new("RGB", (cols * tw, rows * th))
    for k, pic in enumerate(tiles):
        sheet.paste(pic, ((k % cols) * tw, (k // cols) * th))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


@tool
def segment(ctx: ToolContext, span: TimeSpan, prompt: str, fps: float = 1.0, max_frames: int = 8) -> ToolResult:
    """Outline one object in the frames of a span: per-frame boxes and areas, and a mask image.

    Args:
        span: The span to follow the object through, e.g. "00:00:10-00:00:18".
        prompt: The object: "point X,Y" or "box X0,Y0,X1,Y1" in pixels of the frame at the span's
            start, or a short description such as "the red car" (needs CLIP weights).
        fps: Frames per second to sample in the span.
        max_frames: At most this many frames (1-32).
    """
    video = ctx.require_video()
    window = check_span(video, span)
    if not 1 <= max_frames <= 32:
        raise ToolRetry("max_frames must be between 1 and 32")
    if fps <= 0:
        raise ToolRetry("fps must be above 0, e.g. 1.0")
    kind, value = parse_prompt(prompt, video.width, video.height)
    predictor = load_sam(ctx.models, ctx.device)
    frames = video.frames(window, fps=fps, max_frames=max_frames, max_pixels=1280 * 720)
    images = frames.images
    scale = images.shape[2] / video.width
    anchor, clip_score = 0, None
    if kind == "text":
        anchor, value, clip_score = text_prompt(ctx, images, value)
    else:
        value = value * scale
    results = track_masks(predictor, images, anchor, kind, value)
    out_path = Path(ctx.work_dir) / f"segment-{uuid.uuid4().hex[:8]}.png"
    save_overlay(out_path, images, results, frames.timestamps)
    per_frame, lines = [], []
    frame_area = images.shape[1] * images.shape[2]
    for t, res in zip(frames.timestamps, results):
        box = mask_box(res["mask"])
        area = int(res["mask"].sum())
        item = {
            "time": round(t, 3),
            "box": None if box is None else [round(float(v) / scale, 1) for v in box],
            "area_px": int(round(area / scale**2)),
            "area_frac": round(area / frame_area, 4),
            "score": round(res["score"], 3),
            "iou_prev": None if res["iou_prev"] is None else round(res["iou_prev"], 3),
            "lost": bool(res["lost"]),
        }
        per_frame.append(item)
        where = "no mask" if box is None else "box " + ",".join(f"{v:.0f}" for v in item["box"])
        lines.append(
            f"{format_time(t)}: {where}, area {item['area_frac']:.1%}" + (" (lost track)" if item["lost"] else "")
        )
    found = "text" if kind == "text" else kind
    head = (
        f"{prompt!r} ({found} prompt, anchored at {format_time(frames.timestamps[anchor])}) in {window}, "
        f"{len(images)} frames; masks drawn in {out_path}"
    )
    return ToolResult(
        head + ":\n" + "\n".join(lines),
        spans=[window],
        metadata={
            "frames": per_frame,
            "overlay": str(out_path),
            "anchor": anchor,
            "prompt_kind": kind,
            "clip_score": clip_score,
        },
    )
