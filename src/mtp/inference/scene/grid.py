"""Tiles of a scene: the official sliding-window rule, tile rows, row bands per process, blending weights.

Tile starts per axis follow :func:`mtp.inference.segmentation.slide_windows` (mmseg ``slide_inference``): with
stride ``s = tile - overlap``, ``n = max(size - tile + s - 1, 0) // s + 1`` windows, window ``i`` at ``i * s`` and the
last one snapped to the border, so every tile has the full tile size (scenes smaller than a tile are refused by
the caller). Tiles are visited row by row (a *tile row* = all tiles with the same start row), left to right.

After tile row ``r`` has been added, scene rows ``[final_start(r), final_end(r))`` receive no further tile: they are
*final* (``final_end(r)`` = the start row of tile row ``r + 1``, or the scene height). This is what lets the
stitcher keep only one tile row of logits in memory.
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
        return len(self.row_starts)

    @property
    def n_cols(self) -> int:
        return len(self.col_starts)

    @property
    def n_tiles(self) -> int:
        return self.n_rows * self.n_cols

    def row_tiles(self, r: int) -> list[tuple[int, int]]:
        """(row, col) top-left corners of tile row ``r``, left to right."""
        y = self.row_starts[r]
        return [(y, x) for x in self.col_starts]

    def final_start(self, r: int) -> int:
        return 0 if r == 0 else self.row_starts[r]

    def final_end(self, r: int) -> int:
        return self.row_starts[r + 1] if r + 1 < self.n_rows else self.height

    def context_row(self, r: int) -> int:
        """The first tile row that reaches into the rows of tile row ``r`` (``r`` itself when none above does): a
        run that starts writing at tile row ``r`` must start computing there."""
        y = self.row_starts[r]
        return next(i for i in range(r + 1) if self.row_starts[i] + self.tile > y or i == r)

    def first_row_needing(self, scene_row: int) -> int:
        """The tile row whose final range contains ``scene_row`` (0 <= scene_row < height)."""
        for r in range(self.n_rows):
            if self.final_end(r) > scene_row:
                return r
        return self.n_rows - 1


def split_rows(n_rows: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous, nearly equal ``[start, end)`` bands of tile rows for ``parts`` processes (empty bands allowed)."""
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
