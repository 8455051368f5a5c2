"""Blending per-tile logits into scene rows while streaming (semantic segmentation, change detection).

The official slide rule (mmseg ``slide_inference``, :func:`mtp.inference.segmentation.slide_inference`) sums the
logits of every window covering a pixel and divides by the number of windows. :class:`RowStitcher` does the same
without a scene-sized buffer: the width is cut into column blocks of ``block`` pixels, each holding the summed
logits of the scene rows that are not final yet. Tiles are added step by step (:mod:`mtp.inference.scene.grid`);
:meth:`RowStitcher.flush` hands over the averaged logits of the columns the step has passed and keeps, per block,
only the rows shared with the next step. Peak memory is about ``4 (K + 1) * (overlap * width + tile * (tile +
2 block))`` bytes for K classes (plus a step's extra height when its last row was snapped to the border): nearly
flat in the scene size (O(overlap x width)).

Optional weighting (``blend='gaussian' | 'cosine'``): each window's logits are multiplied by
:func:`~mtp.inference.scene.grid.blend_weights` and the sum is divided by the summed weights. With ``'mean'`` the
weights are all 1 and the division is by the exact window count, as the official rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtp.inference.scene.grid import TileGrid, blend_weights

__all__ = ["RowStitcher"]

#: consume(first scene row, first column, mean logits (K, n, c) float32 or None, valid (n, c) bool)
Consumer = Callable[[int, int, np.ndarray | None, np.ndarray], None]


@dataclass
class _Block:
    """Rows ``[y0, y0 + height)`` of the columns ``[x0, x1)``: logits sum (K, h, c), weight sum, validity."""

    y0: int
    sum: np.ndarray
    wsum: np.ndarray
    valid: np.ndarray

    @property
    def height(self) -> int:
        return self.wsum.shape[0]


class RowStitcher:
    """Streaming logits accumulator over the steps ``first_step, first_step + 1, ...`` of ``grid``.

    Args:
        grid: the tiling. first_step: the step to start at (a process band or a resume point).
        blend: 'mean' (official), 'gaussian' or 'cosine'. block: column block width in pixels.
    """

    def __init__(self, grid: TileGrid, first_step: int = 0, blend: str = "mean", block: int = 256) -> None:
        self.grid = grid
        self.weights = blend_weights(grid.tile, blend)
        self.block = block
        self.blocks: list[_Block | None] = [None] * -(-grid.width // block)
        self.step = first_step
        self.flushed = 0  # blocks already handed over in this step
        self.channels: int | None = None

    def _cols(self, j: int) -> tuple[int, int]:
        return j * self.block, min((j + 1) * self.block, self.grid.width)

    def _reserve(self, j: int, bottom: int) -> _Block:
        """Block ``j`` covering rows ``[final_start(step), bottom)`` at least."""
        top = self.grid.final_start(self.step)
        blk = self.blocks[j]
        if blk is not None and blk.y0 + blk.height >= bottom:
            return blk
        x0, x1 = self._cols(j)
        wdtype = np.uint16 if self.weights is None else np.float32
        new = _Block(top, np.zeros((self.channels, bottom - top, x1 - x0), np.float32),
                     np.zeros((bottom - top, x1 - x0), wdtype), np.zeros((bottom - top, x1 - x0), bool))  # fmt: skip
        if blk is not None:  # carry from the step above (it starts at this step's first final row)
            h = blk.height
            new.sum[:, :h], new.wsum[:h], new.valid[:h] = blk.sum, blk.wsum, blk.valid
        self.blocks[j] = new
        return new

    def add(self, row: int, col: int, logits: np.ndarray, valid: np.ndarray) -> None:
        """Add one tile of the current step: ``logits`` float32 (K, tile, tile), ``valid`` bool (tile, tile)."""
        t = self.grid.tile
        if logits.shape[-2:] != (t, t):
            raise ValueError(f"tile logits must be (K, {t}, {t}), got {logits.shape}")
        self.channels = self.channels or logits.shape[0]
        for j in range(col // self.block, (col + t - 1) // self.block + 1):
            x0, x1 = self._cols(j)
            a, b = max(col, x0), min(col + t, x1)
            blk = self._reserve(j, row + t)
            ys = slice(row - blk.y0, row - blk.y0 + t)
            part = logits[:, :, a - col : b - col]
            if self.weights is None:
                blk.sum[:, ys, a - x0 : b - x0] += part
                blk.wsum[ys, a - x0 : b - x0] += 1
            else:
                w = self.weights[:, a - col : b - col]
                blk.sum[:, ys, a - x0 : b - x0] += part * w
                blk.wsum[ys, a - x0 : b - x0] += w
            blk.valid[ys, a - x0 : b - x0] |= valid[:, a - col : b - col]

    def flush(self, x_end: int, consume: Consumer) -> None:
        """Hand over the final rows of every column block left of ``x_end`` (no later tile of this step reaches it),
        then keep only their rows below ``final_end(step)``."""
        g = self.grid
        top, end = g.final_start(self.step), g.final_end(self.step)
        n = end - top
        while self.flushed < len(self.blocks) and self._cols(self.flushed)[1] <= x_end:
            j = self.flushed
            x0, x1 = self._cols(j)
            blk = self.blocks[j]
            if blk is None or blk.y0 != top:  # nothing of this step reached these columns
                consume(top, x0, None, np.zeros((n, x1 - x0), bool))
            else:
                wsum = blk.wsum[:n]
                covered = wsum > 0
                mean = blk.sum[:, :n] / np.where(covered, wsum, 1).astype(np.float32)[None]
                consume(top, x0, mean, blk.valid[:n] & covered)
                rest = blk.height - n
                self.blocks[j] = (_Block(end, blk.sum[:, n:].copy(), blk.wsum[n:].copy(), blk.valid[n:].copy())
                                  if rest > 0 else None)  # fmt: skip
            self.flushed += 1

    def finish_step(self, consume: Consumer) -> int:
        """Hand over what is left of the current step (all columns) and move to the next; returns the first final
        scene row of the step."""
        top = self.grid.final_start(self.step)
        self.flush(self.grid.width, consume)
        self.step += 1
        self.flushed = 0
        return top
