"""Blending per-tile logits into scene rows with a rolling buffer of one tile row (segmentation, change detection).

The official slide rule (mmseg ``slide_inference``, :func:`mtp.inference.segmentation.slide_inference`) sums the
logits of every window covering a pixel and divides by the number of windows. :class:`RowStitcher` does the same
with a buffer of ``tile`` scene rows only: tiles of row ``r`` are added at their offsets, then
:meth:`RowStitcher.finish_row` returns the averaged logits of the rows that are final (see
:mod:`mtp.inference.scene.grid`) and shifts the buffer so that the overlap carries over to row ``r + 1``.
Peak memory is about ``(4 K + 3) * tile * width`` bytes, independent of the scene height.

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
        # window counts (exact small integers) for the official mean, summed weights otherwise
        self.wsum = np.zeros((grid.tile, grid.width), np.uint16 if self.weights is None else np.float32)
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
            self.wsum[y : y + t, col : col + t] += 1
        else:
            region += logits * self.weights
            self.wsum[y : y + t, col : col + t] += self.weights
        self.valid[y : y + t, col : col + t] |= valid

    def finish_row(self, consume, chunk: int = 2048) -> int:
        """Close tile row ``self.row``: call ``consume(first_row, col, mean, valid)`` for each block of at most
        ``chunk`` columns of the ``n`` rows that became final (``mean``: averaged logits (K, n, c) float32, or None
        when no tile reached them; ``valid``: (n, c) bool), then shift the buffer. Returns the first final row."""
        g, r = self.grid, self.row
        start, end = g.final_start(r) - self.base, g.final_end(r) - self.base
        first = g.final_start(r)
        for c0 in range(0, g.width, chunk):
            cols = slice(c0, min(c0 + chunk, g.width))
            wsum = self.wsum[start:end, cols]
            covered = wsum > 0
            valid = self.valid[start:end, cols] & covered
            mean = None
            if self.sum is not None:
                mean = self.sum[:, start:end, cols] / np.where(covered, wsum, 1).astype(np.float32)[None]
            consume(first, c0, mean, valid)
        self._shift(end)
        self.row += 1
        return first

    def _shift(self, n: int) -> None:
        """Drop the first ``n`` buffer rows; the rest move up (row by row: no full-size temporary), new rows are 0."""
        keep = self.grid.tile - n
        for a in (self.wsum, self.valid) if self.sum is None else (self.wsum, self.valid, self.sum):
            rows = a if a.ndim == 2 else a.transpose(1, 0, 2)  # (rows, ...) view
            for i in range(keep):
                rows[i] = rows[n + i]
            rows[keep:] = 0
        self.base += n
