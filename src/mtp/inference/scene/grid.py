"""Tiles of a scene: the official sliding-window rule, tile rows, row bands per process, blending weights.

Tile starts per axis follow :func:`mtp.inference.segmentation.slide_windows` (mmseg ``slide_inference``): with
stride ``s = tile - overlap``, ``n = max(size - tile + s - 1, 0) // s + 1`` windows, window ``i`` at ``i * s`` and the
last one snapped to the border, so every tile has the full tile size (scenes smaller than a tile are refused by
the caller). Tiles are visited row by row (a *tile row* = all tiles with the same start row), left to right.

Tiles are processed in *steps*: normally one tile row per step, left to right. With ``merge_snapped`` (the dense
families) the last two tile rows form one step when the last one was snapped to the border (it then overlaps the
row above by more than ``overlap``), and that step visits its tiles column by column (both rows of a column, then
the next column). After step ``s``, scene rows ``[final_start(s), final_end(s))`` receive no further tile: they are
*final* (``final_end(s)`` = the first row of step ``s + 1``, or the scene height); within a step, columns left of
the next tile column are final as soon as the step has passed them. This is what lets the stitcher keep only the
``overlap`` rows shared with the next step over the whole width, plus about one tile of columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mtp.inference.segmentation import slide_windows

__all__ = ["BLENDS", "TileGrid", "blend_weights", "split_rows"]

BLENDS = ("mean", "gaussian", "cosine")


@dataclass(frozen=True)
class TileGrid:
    """``height`` x ``width`` scene cut into ``tile`` x ``tile`` windows overlapping by ``overlap`` pixels."""

    height: int
    width: int
    tile: int
    overlap: int
    merge_snapped: bool = False

    def __post_init__(self) -> None:
        if self.tile <= 0:
            raise ValueError(f"tile must be positive, got {self.tile}")
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"overlap must be in [0, tile), got {self.overlap} for tile {self.tile}")
        if self.height < self.tile or self.width < self.tile:
            raise ValueError(f"the scene ({self.height} x {self.width} px) is smaller than one tile ({self.tile} px)")

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @cached_property
    def row_starts(self) -> tuple[int, ...]:
        return tuple(w[0] for w in slide_windows(self.height, 1, (self.tile, 1), (self.stride, 1)))

    @cached_property
    def col_starts(self) -> tuple[int, ...]:
        return tuple(w[2] for w in slide_windows(1, self.width, (1, self.tile), (1, self.stride)))

    @property
    def n_rows(self) -> int:
        """Tile rows."""
        return len(self.row_starts)

    @property
    def n_cols(self) -> int:
        return len(self.col_starts)

    @property
    def n_tiles(self) -> int:
        return self.n_rows * self.n_cols

    @cached_property
    def steps(self) -> tuple[tuple[int, ...], ...]:
        """Tile rows of each step (see the module docstring)."""
        rows = [(r,) for r in range(self.n_rows)]
        snapped = self.n_rows >= 2 and self.row_starts[-1] - self.row_starts[-2] < self.stride
        if self.merge_snapped and snapped:
            rows[-2:] = [(self.n_rows - 2, self.n_rows - 1)]
        return tuple(rows)

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    def step_tiles(self, s: int) -> list[tuple[int, int]]:
        """(row, col) top-left corners of the tiles of step ``s`` in visiting order (column-major in a step)."""
        return [(self.row_starts[r], x) for x in self.col_starts for r in self.steps[s]]

    def final_start(self, s: int) -> int:
        return 0 if s == 0 else self.row_starts[self.steps[s][0]]

    def final_end(self, s: int) -> int:
        return self.row_starts[self.steps[s + 1][0]] if s + 1 < self.n_steps else self.height

    def step_bottom(self, s: int) -> int:
        """The last scene row (exclusive) that the tiles of step ``s`` reach."""
        return self.row_starts[self.steps[s][-1]] + self.tile

    def context_step(self, s: int) -> int:
        """The first step whose tiles reach into the final rows of step ``s`` (``s`` itself when none above does):
        a run that starts writing at step ``s`` must start computing there."""
        y = self.final_start(s)
        return next(i for i in range(s + 1) if self.step_bottom(i) > y or i == s)

    def first_step_needing(self, scene_row: int) -> int:
        """The step whose final range contains ``scene_row`` (0 <= scene_row < height)."""
        for s in range(self.n_steps):
            if self.final_end(s) > scene_row:
                return s
        return self.n_steps - 1


def split_rows(n_rows: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous, nearly equal ``[start, end)`` bands of steps for ``parts`` processes (empty bands allowed)."""
    base, extra = divmod(n_rows, parts)
    bands, start = [], 0
    for p in range(parts):
        end = start + base + (1 if p < extra else 0)
        bands.append((start, end))
        start = end
    return bands


def blend_weights(tile: int, kind: str = "mean") -> np.ndarray | None:
    """(tile, tile) float32 blending weights, or None for ``'mean'`` (the official rule: every window weight 1).

    ``'gaussian'``: exp(-d² / (2 σ²)) with σ = tile / 8 around the centre (nnU-Net), floored at 1e-3 so that a pixel
    covered by one window only keeps that window's value; ``'cosine'``: a separable Hann window sin²(π (i + ½) / tile),
    floored likewise.
    """
    if kind == "mean":
        return None
    i = np.arange(tile, dtype=np.float64) + 0.5
    if kind == "gaussian":
        sigma = tile / 8
        profile = np.exp(-((i - tile / 2) ** 2) / (2 * sigma**2))
    elif kind == "cosine":
        profile = np.sin(math.pi * i / tile) ** 2
    else:
        raise ValueError(f"blend must be one of {BLENDS}, got {kind!r}")
    weights = np.outer(profile, profile)
    return np.maximum(weights / weights.max(), 1e-3).astype(np.float32)
