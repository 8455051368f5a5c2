"""Band selection and radiometric scaling of scene rasters for the models (the rule ``mtp predict-scene`` uses).

The MTP models take 3-band RGB on the 0–255 scale (then normalised with the ImageNet statistics, see
docs/CONVENTIONS.md). A scene GeoTIFF can have more bands, another order and another data type; this module
turns its pixels into that domain. The default for non-uint8 data is the dataset readers' rule (the 2nd–98th
percentile stretch of :mod:`mtp.data.datasets.raster_rule`, whose :func:`band_ranges` computes it here too), so a
model sees a scene the way it saw its training tiles; the scene adds Sentinel-2 and fixed-range options.

**Bands** (``--bands``): 1-based band indices in the order the model sees them, e.g. ``3,2,1`` for a
B, G, R[, NIR] file (Sentinel-2 B2, B3, B4, B8 stacks). Default: bands 1, 2, 3 when the file has at least three
(an alpha band is never chosen by default), band 1 three times for a single-band (grey) file. A file with two
bands needs an explicit ``--bands``.

**Scaling** (``--scale``), applied per selected band, result clipped to [0, 255] (float32):

===================== =====================================================================================
``auto`` (default)    ``none`` for uint8 data, ``percentile:2,98`` for every other data type.
``none``              values are used as they are (they must already be on the 0–255 scale).
``percentile:LO,HI``  per band: the LO-th / HI-th percentiles of the valid pixels map to 0 / 255. They are
                      computed once per scene from a decimated read (at most ``STATS_SIZE`` pixels on the long
                      side, nearest neighbour; GDAL reads it block by block) so that every tile uses the same
                      mapping.
``s2``                Sentinel-2 L1C/L2A digital numbers (reflectance × 10000): 0 → 0 and 3000 (reflectance
                      0.3) → 255, the usual true-colour rendering.
``range:LO,HI``       fixed: LO → 0 and HI → 255 for every band (e.g. ``range:0,4095`` for 12-bit data).
===================== =====================================================================================

**No-data**: a pixel is no-data when it is masked in *every* selected band: GDAL's per-band masks, which come
from the file's ``nodata`` value, an internal/sidecar mask or an alpha band; ``--nodata V`` overrides the
value. No-data pixels are excluded from the percentile statistics.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtp.data.datasets.raster_rule import RasterRule, band_ranges

__all__ = ["STATS_SIZE", "BandScaling", "ScaleRule", "default_bands", "parse_bands", "parse_scale"]

#: Longest side of the decimated read used for percentile statistics.
STATS_SIZE = 1024
_S2_WHITE = 3000.0


@dataclass(frozen=True)
class ScaleRule:
    """A parsed ``--scale`` value: ``kind`` in {'auto', 'none', 'percentile', 's2', 'range'} and its two numbers
    (percentiles for 'percentile', data values for 'range')."""

    kind: str
    low: float = 0.0
    high: float = 255.0

    def __str__(self) -> str:
        return self.kind if self.kind in ("auto", "none", "s2") else f"{self.kind}:{self.low:g},{self.high:g}"


def parse_scale(text: str) -> ScaleRule:
    """``'auto' | 'none' | 's2' | 'percentile[:LO,HI]' | 'range:LO,HI'`` -> :class:`ScaleRule` (else ValueError)."""
    text = text.strip().lower()
    if text in ("auto", "none", "s2"):
        return ScaleRule(text)
    match = re.fullmatch(r"(percentile|range)(?::\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+))?", text)
    if not match or (match.group(1) == "range" and match.group(2) is None):
        raise ValueError(f"--scale {text!r}: use auto, none, s2, percentile[:LO,HI] or range:LO,HI")
    kind = match.group(1)
    low, high = (2.0, 98.0) if match.group(2) is None else (float(match.group(2)), float(match.group(3)))
    if not high > low:
        raise ValueError(f"--scale {text!r}: the high value must be greater than the low value")
    if kind == "percentile" and not (0 <= low < high <= 100):
        raise ValueError(f"--scale {text!r}: percentiles must satisfy 0 <= LO < HI <= 100")
    return ScaleRule(kind, low, high)


def parse_bands(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``'3,2,1'`` (or a sequence) -> (3, 2, 1); None stays None (the default choice)."""
    if text is None:
        return None
    if isinstance(text, str):
        try:
            bands = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
        except ValueError:
            raise ValueError(f"--bands {text!r}: expected 1-based band numbers such as 3,2,1") from None
    else:
        bands = tuple(int(b) for b in text)
    if not bands:
        raise ValueError("--bands: no band given")
    return bands


def default_bands(count: int, alpha_bands: Sequence[int] = ()) -> tuple[int, ...]:
    """Default 1-based bands for a file with ``count`` bands (alpha bands excluded): (1, 2, 3) or (1, 1, 1)."""
    colour = [b for b in range(1, count + 1) if b not in set(alpha_bands)]
    if len(colour) >= 3:
        return tuple(colour[:3])
    if len(colour) == 1:
        return (colour[0],) * 3
    raise ValueError(f"the file has {len(colour)} colour bands: choose three with --bands (e.g. --bands 1,2,2)")


@dataclass(frozen=True)
class BandScaling:
    """The resolved per-band linear mapping ``out = clip((x - offset) * gain, 0, 255)`` (one entry per selected band).

    ``rule`` is the :class:`ScaleRule` it came from, ``description`` a readable summary for logs and the resume
    fingerprint.
    """

    rule: str
    offsets: tuple[float, ...]
    gains: tuple[float, ...]

    @property
    def identity(self) -> bool:
        return all(o == 0.0 for o in self.offsets) and all(g == 1.0 for g in self.gains)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """(C, h, w) raw values -> float32 (C, h, w) on the 0–255 scale."""
        out = data.astype(np.float32, copy=True)
        if self.identity and data.dtype == np.uint8:
            return out
        offsets = np.asarray(self.offsets, np.float32)[:, None, None]
        gains = np.asarray(self.gains, np.float32)[:, None, None]
        out -= offsets
        out *= gains
        return np.clip(out, 0.0, 255.0, out=out)

    def to_json(self) -> dict:
        return {"rule": self.rule, "offsets": list(self.offsets), "gains": list(self.gains)}

    @classmethod
    def from_json(cls, data: dict) -> BandScaling:
        return cls(str(data["rule"]), tuple(float(v) for v in data["offsets"]), tuple(float(v) for v in data["gains"]))

    @classmethod
    def resolve(cls, rule: ScaleRule, dtype: str, n_bands: int, sample: np.ma.MaskedArray | None = None) -> BandScaling:
        """The mapping for ``rule`` on data of ``dtype``; ``sample`` (C, h, w) masked array of valid pixels is
        needed for percentiles (:func:`resolve` callers read it with :data:`STATS_SIZE`)."""
        kind = rule.kind
        if kind == "auto":
            rule = ScaleRule("none") if dtype == "uint8" else ScaleRule("percentile", 2, 98)
            kind = rule.kind
        if kind == "none":
            return cls(str(rule), (0.0,) * n_bands, (1.0,) * n_bands)
        if kind == "s2":
            return cls(str(rule), (0.0,) * n_bands, (255.0 / _S2_WHITE,) * n_bands)
        if kind == "range":
            return cls(str(rule), (rule.low,) * n_bands, (255.0 / (rule.high - rule.low),) * n_bands)
        if sample is None:
            raise ValueError("percentile scaling needs a sample of the scene")
        data, valid = np.ma.getdata(sample), ~np.ma.getmaskarray(sample)
        ranges = band_ranges(data[:n_bands], RasterRule("percentile", (rule.low, rule.high)), valid[:n_bands])
        offsets, gains = [], []
        for lo, hi in ranges.tolist():
            if not hi > lo:
                hi = lo + 1.0
            offsets.append(lo)
            gains.append(255.0 / (hi - lo))
        return cls(str(rule), tuple(offsets), tuple(gains))
