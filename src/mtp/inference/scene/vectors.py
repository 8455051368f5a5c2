"""Vector outputs in the scene CRS: a streamed GeoJSON writer, pixel -> CRS coordinates, areas in m².

GeoJSON files are FeatureCollections with one feature per line, written as the features become final, so a
scene with millions of objects never sits in memory and an interrupted run leaves a valid file (the closing
``]}`` is written by :meth:`GeoJSONWriter.close`; a resumed run truncates to the last checkpoint and appends).
Coordinates are in the scene CRS, named by a ``crs`` member (the GeoJSON 2008 form that GDAL and QGIS read); a
scene without a CRS gets pixel coordinates (x = column, y = row) and ``"crs": null``.

Pixel conventions: detector outputs have pixel centres at integer coordinates (docs/CONVENTIONS.md), so a point
(x, y) maps to ``transform @ (x + 0.5, y + 0.5)``; polygons traced from rasters use pixel edges
(``transform @ (col, row)``) and need no shift.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom

__all__ = ["GeoJSONWriter", "area_m2", "crs_member", "pixel_to_crs"]

_EQUAL_AREA = CRS.from_epsg(6933)  # WGS 84 / NSIDC EASE-Grid 2.0 Global (equal area, metres)


def pixel_to_crs(transform: Affine, xy: np.ndarray, *, centres: bool = True) -> np.ndarray:
    """(..., 2) pixel coordinates -> (..., 2) CRS coordinates (``centres``: detector frame, +0.5)."""
    xy = np.asarray(xy, np.float64)
    shift = 0.5 if centres else 0.0
    col, row = xy[..., 0] + shift, xy[..., 1] + shift
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    return np.stack([a * col + b * row + c, d * col + e * row + f], axis=-1)


def crs_member(crs: CRS | None) -> dict | None:
    """The GeoJSON ``crs`` member for ``crs`` (EPSG URN when there is a code, else the WKT)."""
    if crs is None:
        return None
    epsg = crs.to_epsg()
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def area_m2(geometry: dict, crs: CRS | None) -> float | None:
    """Area of a GeoJSON (Multi)Polygon in m²: planar in a projected CRS (linear units converted), through an
    equal-area projection (EPSG:6933) in a geographic CRS; None without a CRS."""
    from shapely.geometry import shape

    if crs is None:
        return None
    if crs.is_projected:
        return float(shape(geometry).area) * crs.linear_units_factor[1] ** 2
    return float(shape(transform_geom(crs, _EQUAL_AREA, geometry)).area)


def _round(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_round(v, digits) for v in value]
    return value


class GeoJSONWriter:
    """Streamed FeatureCollection (see the module docstring).

    Args:
        path: output file. crs: scene CRS (None: pixel coordinates). name: the collection's ``name``.
        resume: ``(byte offset, feature count)`` of a checkpoint to truncate to and continue from.
        digits: decimals kept in coordinates (3: millimetres in a metric CRS; use more for degrees).
    """

    def __init__(self, path: str | Path, crs: CRS | None, name: str, *, resume: tuple[int, int] | None = None,
                 digits: int | None = None) -> None:  # fmt: skip
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.digits = digits if digits is not None else (3 if crs is None or crs.is_projected else 9)
        if resume is not None and self.path.is_file():
            self._file = self.path.open("r+b")
            self._file.truncate(resume[0])
            self._file.seek(resume[0])
            self.count = resume[1]
        else:
            self._file = self.path.open("wb")
            header = {"type": "FeatureCollection", "name": name, "crs": crs_member(crs)}
            self._file.write((json.dumps(header)[:-1] + ', "features": [\n').encode())
            self.count = 0
        self.closed = False

    def add(self, geometry: dict, properties: dict) -> None:
        geometry = {"type": geometry["type"], "coordinates": _round(geometry["coordinates"], self.digits)}
        feature = {"type": "Feature", "properties": properties, "geometry": geometry}
        self.add_raw(json.dumps(feature, separators=(",", ":"), allow_nan=False))

    def add_raw(self, text: str) -> None:
        """Append one feature already serialised as single-line JSON."""
        self._file.write(((",\n" if self.count else "") + text).encode())
        self.count += 1

    def checkpoint(self) -> tuple[int, int]:
        """Flush to the OS; ``(byte offset, feature count)`` to resume from."""
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell(), self.count

    def close(self) -> None:
        if self.closed:
            return
        self._file.write(b"\n]}\n")
        self._file.close()
        self.closed = True


def read_features(path: str | Path, offset: int) -> list[dict]:
    """The features of a (possibly unterminated) file written by :class:`GeoJSONWriter`, up to byte ``offset``."""
    with Path(path).open("rb") as f:
        text = f.read(offset).decode()
    lines = text.split("\n")[1:]
    return [json.loads(line.rstrip(",")) for line in lines if line.strip().startswith("{")]
