"""Which sampled frames show something new: a cheap test before an expensive reader.

A frame is averaged down to a 32 x 18 grid of grey cells (means, not single pixels: thin
text strokes fall between sampled pixels); it counts as changed when any cell moved by more
than ``threshold`` (0-1 grey) since the last frame let through. Averaging over a cell
smooths away compression noise, while a caption, a slide or a moving object changes the
cells it covers by far more, so only frames that look the same are passed over. The first
frame always counts, and so does any frame the caller forces.
"""

from __future__ import annotations

import numpy as np

GRID = (18, 32)  # rows, columns


def thumbnail(image: np.ndarray, grid: tuple[int, int] = GRID) -> np.ndarray:
    """The grey mean of each cell of ``grid`` over ``image`` (H, W, 3) uint8, in 0-1."""
    h, w = image.shape[:2]
    ys, xs = np.arange(grid[0]) * h // grid[0], np.arange(grid[1]) * w // grid[1]
    grey = image.mean(axis=2, dtype=np.float32) if image.ndim == 3 else image.astype(np.float32)
    sums = np.add.reduceat(np.add.reduceat(grey, ys, axis=0), xs, axis=1)
    cells = np.maximum(np.outer(np.diff(np.append(ys, h)), np.diff(np.append(xs, w))), 1)  # 1 in a tiny frame
    return sums / cells / 255.0


class ChangeGate:
    """``gate.changed(image)``: does this frame differ from the last one let through by more
    than ``threshold`` in some cell? ``seen`` and ``passed`` count the frames, ``forced`` those
    let through only because the caller forced them."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._last: np.ndarray | None = None
        self.seen = self.passed = self.forced = 0

    def changed(self, image: np.ndarray, force: bool = False) -> bool:
        thumb = thumbnail(image)
        self.seen += 1
        new = self._last is None or self._last.shape != thumb.shape
        if not new:
            new = float(np.abs(thumb - self._last).max()) >= self.threshold
        if force and not new:
            self.forced += 1
            new = True
        if new:
            self._last = thumb
            self.passed += 1
        return new
