"""Blending per-tile logits into scene rows with a rolling buffer of one tile row (segmentation, change detection).

The official slide rule (mmseg ``slide_inference``, :func:`mtp.inference.segmentation.slide_inference`) sums the
logits of every window covering a pixel and divides by the number of windows. :class:`RowStitcher` does the same
with a buffer of ``tile`` scene rows only: tiles of row ``r`` are added at their offsets, then
:meth:`RowStitcher.finish_row` returns the averaged logits of the rows that are final (see
:mod:`mtp.inference.scene.grid`) and shifts the buffer so that the overlap carries over to row ``r + 1``.
Peak memory is ``(K + 2) * tile * width * 4`` bytes, independent of the scene height.

Optional weighting (``blend='gaussian' | 'cosine'``): each window's logits are multiplied by
:func:`~mtp.inference.scene.grid.blend_weights` and the sum is divided by the summed weights. With ``'mean'`` the
weights are all 1 and the division is by the exact window count, as the official rule.
"""

from __future__ import annotations

import numpy as np

from mtp.inference.scene.grid import TileGrid, blend_weights

__all__ = ["RowStitcher"]


class RowStitcher:
    """Rolling logits buffer over the tile rows ``first_row, first_row + 1, ...`` of ``grid``.

    Args:
        grid: the tiling. first_row: the tile row the buffer starts at (a process band or a resume point).
        blend: 'mean' (official), 'gaussian' or 'cosine'.
    """

    def __init__(self, grid: TileGrid, first_row: int = 0, blend: str = "mean") -> None:
        self.grid = grid
        self.weights = blend_weights(grid.tile, blend)
        self.row = first_row
        self.base = grid.row_starts[first_row]
        self.sum: np.ndarray | None = None  # (K, tile, width), allocated at the first tile
        self.wsum = np.zeros((grid.tile, grid.width), np.float32)
        self.valid = np.zeros((grid.tile, grid.width), bool)

    def add(self, row: int, col: int, logits: np.ndarray, valid: np.ndarray) -> None:
        """Add one tile of tile row ``self.row``: ``logits`` float32 (K, tile, tile), ``valid`` bool (tile, tile)."""
        t = self.grid.tile
        if logits.shape[-2:] != (t, t):
            raise ValueError(f"tile logits must be (K, {t}, {t}), got {logits.shape}")
        if self.sum is None:
            self.sum = np.zeros((logits.shape[0], t, self.grid.width), np.float32)
        y = row - self.base
        region = self.sum[:, y : y + t, col : col + t]
        if self.weights is None:
            region += logits
            self.wsum[y : y + t, col : col + t] += 1.0
        else:
            region += logits * self.weights
            self.wsum[y : y + t, col : col + t] += self.weights
        self.valid[y : y + t, col : col + t] |= valid

    def finish_row(self) -> tuple[int, np.ndarray | None, np.ndarray]:
        """Close tile row ``self.row``: ``(first scene row, mean logits (K, n, width) float32 or None when no tile
        of the rows was run, valid (n, width) bool)`` for the ``n`` rows that became final; then shift."""
        g, r = self.grid, self.row
        start, end = g.final_start(r) - self.base, g.final_end(r) - self.base
        covered = self.wsum[start:end] > 0
        valid = self.valid[start:end] & covered
        mean = None
        if self.sum is not None:
            mean = self.sum[:, start:end] / np.where(covered, self.wsum[start:end], 1.0)[None]
        first = g.final_start(r)
        self._shift(end)
        self.row += 1
        return first, mean, valid

    def _shift(self, n: int) -> None:
        """Drop the first ``n`` buffer rows; the rest move to the top, new rows are zero."""
        keep = self.grid.tile - n
        arrays = [a for a in (self.wsum, self.valid) if a is not None]
        for a in arrays:
            a[:keep] = a[n:].copy()
            a[keep:] = 0
        if self.sum is not None:
            self.sum[:, :keep] = self.sum[:, n:].copy()
            self.sum[:, keep:] = 0
        self.base += n
