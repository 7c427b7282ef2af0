"""Which sampled frames show something new: a cheap test before an expensive reader.

A frame is averaged down to a grid of grey cells; it counts as changed when any cell moved
by more than ``threshold`` grey levels since the last frame let through. Averaging over a
cell smooths away compression noise, while a caption, a slide or a moving object changes
the cells it covers by far more, so only frames that look the same are passed over. The
first frame always counts, and so does any frame the caller marks (a shot's first).
"""

from __future__ import annotations

import numpy as np

GRID = (18, 32)  # rows, columns
THRESHOLD = 3.0  # grey levels a cell may move and still look the same


def thumbnail(image: np.ndarray, grid: tuple[int, int] = GRID) -> np.ndarray:
    """``image`` (H, W, 3) uint8 as a ``grid`` of mean grey levels, float32."""
    grey = np.asarray(image, dtype=np.float32).mean(axis=2) if image.ndim == 3 else np.asarray(image, np.float32)
    rows, cols = min(grid[0], grey.shape[0]), min(grid[1], grey.shape[1])
    h, w = grey.shape[0] // rows * rows, grey.shape[1] // cols * cols
    return grey[:h, :w].reshape(rows, h // rows, cols, w // cols).mean(axis=(1, 3))


class ChangeGate:
    """``gate.changed(image)``: does this frame differ from the last one let through?"""

    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self._last: np.ndarray | None = None
        self.seen = self.passed = 0

    def changed(self, image: np.ndarray, force: bool = False) -> bool:
        thumb = thumbnail(image)
        self.seen += 1
        if force or self._last is None or self._last.shape != thumb.shape:
            new = True
        else:
            new = float(np.abs(thumb - self._last).max()) > self.threshold
        if new:
            self._last = thumb
            self.passed += 1
        return new
