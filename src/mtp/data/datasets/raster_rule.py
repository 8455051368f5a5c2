"""The raster rule: how pixel values of any data type become uint8 (the rule itself is documented in
:mod:`mtp.data.datasets.rasters`, which reads files with it, and in docs/DATASETS.md).

:class:`RasterRule` holds the choices; :func:`valid_pixels` (nodata and NaN / Inf), :func:`band_ranges` (the
stretch) and :func:`scale_bands` (the conversion) apply them to (C, H, W) arrays — whole images or the windows of a
large scene, which should share ``ranges`` computed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["DEFAULT_RULE", "RasterRule", "band_ranges", "scale_bands", "valid_pixels"]

_MAX_STAT_PIXELS = 1 << 20  # percentiles from at most ~1M pixels per band (a regular subsample)


@dataclass(frozen=True)
class RasterRule:
    """How an image file becomes uint8 RGB (module docstring). YAML: ``raster: {scaling: fixed, max_value: 4095}``.

    Args:
        scaling: 'percentile' | 'fixed' | 'refuse', for every data type other than uint8.
        percentiles: (low, high) in [0, 100] for 'percentile'.
        max_value: the value shown as 255 with 'fixed' (None: the type's maximum; 1.0 for floats).
        rgb_bands: 1-based band numbers shown as R, G, B for files with 2 or more than 3 colour bands.
        decoder: 'pil' | 'cv2' for 8-bit RGB PNG / JPEG.
    """

    scaling: Literal["percentile", "fixed", "refuse"] = "percentile"
    percentiles: tuple[float, float] = (2.0, 98.0)
    max_value: float | None = None
    rgb_bands: tuple[int, int, int] | None = None
    decoder: Literal["pil", "cv2"] = "pil"

    def __post_init__(self) -> None:
        if self.scaling not in ("percentile", "fixed", "refuse"):
            raise ValueError(f"scaling must be 'percentile', 'fixed' or 'refuse', got {self.scaling!r}")
        lo, hi = (float(v) for v in self.percentiles)
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {tuple(self.percentiles)}")
        object.__setattr__(self, "percentiles", (lo, hi))
        if self.max_value is not None and not (np.isfinite(self.max_value) and self.max_value > 0):
            raise ValueError(f"max_value must be a positive number, got {self.max_value}")
        if self.rgb_bands is not None:
            bands = tuple(int(b) for b in self.rgb_bands)
            if len(bands) != 3 or min(bands) < 1:
                raise ValueError(f"rgb_bands must be three 1-based band numbers, got {self.rgb_bands}")
            object.__setattr__(self, "rgb_bands", bands)
        if self.decoder not in ("pil", "cv2"):
            raise ValueError(f"decoder must be 'pil' or 'cv2', got {self.decoder!r}")


DEFAULT_RULE = RasterRule()


def valid_pixels(bands: np.ndarray, nodata: float | None, path: str | Path) -> np.ndarray | None:
    """(C, H, W) bool of the valid pixels of ``bands`` (C, H, W) (None: all valid): those not equal to ``nodata``;
    ``ValueError`` naming ``path`` for NaN / Inf values unless NaN is the declared nodata (module docstring)."""
    valid = None
    if nodata is not None:
        valid = ~np.isnan(bands) if np.isnan(nodata) else bands != nodata
    if np.issubdtype(bands.dtype, np.floating):
        bad = ~np.isfinite(bands) if valid is None else ~np.isfinite(bands) & valid
        if bad.any():
            n_nan = int(np.isnan(bands[bad]).sum())
            raise ValueError(f"{path}: {n_nan} NaN and {int(bad.sum()) - n_nan} infinite pixel value(s) (nodata "
                             f"declared: {nodata}); fix the file or declare NaN as its nodata value")  # fmt: skip
    return valid


def band_ranges(bands: np.ndarray, rule: RasterRule, valid: np.ndarray | None = None) -> np.ndarray:
    """(C, 2) float64 [low, high] per band that map to 0 and 255 under ``rule`` (module docstring)."""
    out = np.zeros((bands.shape[0], 2))
    for c, band in enumerate(bands):
        if rule.scaling == "fixed":
            if rule.max_value is not None:
                top = rule.max_value
            else:
                top = np.iinfo(band.dtype).max if np.issubdtype(band.dtype, np.integer) else 1.0
            out[c] = (0.0, float(top))
            continue
        values = band[valid[c]] if valid is not None else band.reshape(-1)
        if values.size > _MAX_STAT_PIXELS:
            values = values[:: values.size // _MAX_STAT_PIXELS + 1]
        if values.size == 0:
            continue
        lo, hi = np.percentile(values.astype(np.float64), rule.percentiles)
        if hi <= lo:
            lo, hi = float(values.min()), float(values.max())
        out[c] = (lo, hi)
    return out


def scale_bands(bands: np.ndarray, rule: RasterRule = DEFAULT_RULE, *, valid: np.ndarray | None = None,
                ranges: np.ndarray | None = None, path: str | Path = "<array>") -> np.ndarray:  # fmt: skip
    """(C, H, W) array of any dtype → uint8 (C, H, W) under ``rule``; uint8 is returned as is. ``valid`` (C, H, W)
    bool marks nodata as False (→ 0); ``ranges`` (C, 2) fixes the stretch (default :func:`band_ranges`)."""
    if bands.dtype == np.uint8:
        return bands
    if rule.scaling == "refuse":
        raise ValueError(f"{path}: {bands.dtype} pixels and scaling='refuse' (only 8-bit images accepted)")
    ranges = band_ranges(bands, rule, valid) if ranges is None else np.asarray(ranges, np.float64)
    lo, hi = ranges[:, 0, None, None], ranges[:, 1, None, None]
    span = np.where(hi > lo, hi - lo, np.inf)
    scaled = np.clip((bands.astype(np.float64) - lo) / span, 0.0, 1.0) * 255.0
    if valid is not None:
        scaled[~valid] = 0.0
    return np.rint(np.nan_to_num(scaled, nan=0.0)).astype(np.uint8)
