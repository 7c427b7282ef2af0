"""The CLIP image tower on ONNX Runtime (see :mod:`mcr.onnxrun`): the same embeddings for
the index's frames, at a fraction of eager PyTorch's time on a CPU (ViT-B-32, two threads,
batches of 32: about 46 ms a frame against 125 ms, outputs equal to 3e-6). The graph is
exported once per weights, checked against PyTorch before it is used, and dropped for the
PyTorch path when anything fails (or with ``MCR_ONNX=0``, or ``MCR_ONNX_IMAGES=0`` for images only).
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
