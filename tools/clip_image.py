"""The CLIP image tower on ONNX Runtime (see :mod:`mcr.onnxrun`): the same embeddings for
the index's frames, at a fraction of eager PyTorch's time on a CPU (ViT-B-32, two threads,
batches of 32: about 46 ms a frame against 125 ms, outputs equal to 3e-6). The graph is
exported once per weights, checked against PyTorch before it is used, and dropped for the
PyTorch path when anything fails (or with ``MCR_ONNX=0``, or ``MCR_ONNX_IMAGES=0`` for images only).

Once a graph is checked it is recorded (``clip-image-manifest.json`` beside the graphs: the
model spec, its weights file's size and time, and the image transform as plain settings, when
:func:`pixels` reproduces it exactly). A later process on a machine without a GPU then embeds
the index's frames with :class:`LightImages`: the graph, numpy and PIL, without importing
PyTorch or loading the model, which keeps an index build's memory under 2 GiB. New weights in
the same file (another size or time) make the record stale and the model is loaded again.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from mcr.onnxrun import BucketedGraphs, available, fingerprint

log = logging.getLogger("mcr.tools")


class ImageTower:
    """``tower(pixels)``: image embeddings (not normalised) of preprocessed ``(n, 3, s, s)`` pixels."""

    def __init__(self, net: Any, size: int) -> None:
        import torch

        class Visual(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.visual = net.visual

            def forward(self, pixels: torch.Tensor) -> torch.Tensor:
                return self.visual(pixels)

        def probe(side: int) -> dict:
            return {"pixels": torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))}

        self.size = size
        threads = max(1, min(4, os.cpu_count() or 1))
        self.graphs = BucketedGraphs(Visual(), "clip-image", fingerprint(net), probe, (size,), threads=threads)

    def __call__(self, pixels: Any) -> np.ndarray:
        return self.graphs.run({"pixels": pixels.cpu().numpy()}, self.size)


def image_session(net: Any, size: int, device: str) -> ImageTower | None:
    """The image tower on ONNX Runtime, exported (once) and checked now, or None."""
    if device != "cpu" or not available() or not hasattr(net, "visual") or os.environ.get("MCR_ONNX_IMAGES") == "0":
        return None
    try:
        tower = ImageTower(net, size)
        tower.graphs.session(size)
        return tower
    except Exception as exc:  # any failure leaves the PyTorch path, which always works
        log.info("CLIP image tower stays on PyTorch: %s: %s", type(exc).__name__, str(exc)[:200])
        return None


# ------------------------------------------------------------ without PyTorch

MANIFEST = "clip-image-manifest.json"
_PIL_FILTERS = {"bicubic": 3, "bilinear": 2, "nearest": 0, "lanczos": 1}  # PIL.Image.Resampling values


def plain_preprocess(preprocess: Any) -> dict | None:
    """open_clip's image transform as plain settings, when it is the usual resize of the shorter
    side, centre crop, to-tensor and normalise (None for anything else)."""
    steps = getattr(preprocess, "transforms", None)
    if not steps:
        return None
    out: dict = {}
    for step in steps:
        kind = type(step).__name__
        if kind == "Resize" and (isinstance(step.size, int) or len(step.size) == 1):
            interp = str(getattr(step.interpolation, "value", step.interpolation)).lower()
            if interp not in _PIL_FILTERS or getattr(step, "max_size", None):
                return None
            out["resize"], out["filter"] = int(step.size if isinstance(step.size, int) else step.size[0]), interp
        elif kind == "CenterCrop":
            h, w = step.size if len(step.size) == 2 else (step.size[0], step.size[0])
            if h != w:
                return None
            out["crop"] = int(h)
        elif kind == "Normalize":
            out["mean"], out["std"] = [float(x) for x in step.mean], [float(x) for x in step.std]
        elif kind not in ("MaybeConvertMode", "MaybeToTensor", "ToTensor", "function"):
            return None
    return out if {"resize", "filter", "crop", "mean", "std"} <= set(out) else None


def pixels(image: np.ndarray, p: dict) -> np.ndarray:
    """An RGB ``(H, W, 3)`` uint8 image as the ``(3, s, s)`` float32 input the settings ``p`` describe
    (the same PIL resize and the same arithmetic as open_clip's transform)."""
    from PIL import Image

    im = Image.fromarray(np.asarray(image)).convert("RGB")
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(p["resize"] * long / short)
    size = (p["resize"], new_long) if w <= h else (new_long, p["resize"])
    if size != (w, h):
        im = im.resize(size, _PIL_FILTERS[p["filter"]])
    c = p["crop"]
    top, left = int(round((im.size[1] - c) / 2.0)), int(round((im.size[0] - c) / 2.0))
    im = im.crop((left, top, left + c, top + c))
    arr = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
    mean, std = np.asarray(p["mean"], np.float32)[:, None, None], np.asarray(p["std"], np.float32)[:, None, None]
    return (arr - mean) / std


def file_stamp(path: str) -> list | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def record(spec: str, weights: str | None, tower: ImageTower, preprocess: Any) -> None:
    """Note the checked graph of the model ``spec`` (its weights file ``weights``), so a later
    process embeds frames without loading PyTorch; only when the transform is plain and gives the
    same pixels as :func:`pixels` on two probe images."""
    from PIL import Image

    from mcr.onnxrun import manifest_put

    p = plain_preprocess(preprocess)
    stamp = file_stamp(weights) if weights else None
    if p is None or stamp is None or p["crop"] != tower.size:
        return
    rng = np.random.default_rng(0)
    for shape in ((90, 160, 3), (200, 120, 3)):
        probe = rng.integers(0, 256, shape, dtype=np.uint8)
        want = preprocess(Image.fromarray(probe)).numpy()
        if want.shape != (3, tower.size, tower.size) or np.abs(want - pixels(probe, p)).max() > 1e-5:
            return
    graph = tower.graphs.path(tower.size)
    entry = {"weights": weights, "stamp": stamp, "graph": str(graph), "size": tower.size, "preprocess": p}
    manifest_put(MANIFEST, spec, entry)


class LightImages:
    """``embed_images`` of a recorded model on its graph, with numpy and PIL: no PyTorch."""

    def __init__(self, entry: dict) -> None:
        from mcr.onnxrun import open_session

        self.session = open_session(entry["graph"], max(1, min(4, os.cpu_count() or 1)))
        self.image_size, self.settings = int(entry["size"]), entry["preprocess"]

    def embed_images(self, images: Any) -> np.ndarray:
        batch = np.stack([pixels(im, self.settings) for im in images])
        out = self.session.run(None, {"pixels": batch})[0].astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


def light_images(spec: str) -> LightImages | None:
    """The recorded image tower of ``spec`` when its weights file is unchanged and its graph is
    here, on a machine without a GPU; else None (the caller loads the PyTorch model)."""
    from mcr.onnxrun import available, manifest_entry

    if not available() or os.environ.get("MCR_ONNX_IMAGES") == "0" or os.path.exists("/dev/nvidiactl"):
        return None
    entry = manifest_entry(MANIFEST, spec)
    if not entry or file_stamp(entry.get("weights") or "") != entry.get("stamp"):
        return None
    if not os.path.isfile(entry.get("graph", "")):
        return None
    try:
        return LightImages(entry)
    except Exception as exc:  # noqa: BLE001 - a graph that will not load: the PyTorch model
        log.info("CLIP image tower needs PyTorch: %s: %s", type(exc).__name__, str(exc)[:200])
        return None
