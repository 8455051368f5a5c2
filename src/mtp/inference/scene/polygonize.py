"""Polygons of a class raster, streamed: bands of rows traced with rasterio, pieces joined across band borders.

:func:`polygonize_raster` reads the raster ``band_rows`` rows at a time, traces the 4-connected regions of
``value`` (``rasterio.features.shapes``) in *pixel* coordinates (integers, so pieces of one region meet exactly
at a band border), unions the pieces that share a border segment (shapely; regions touching at a corner only
stay apart, as 4-connectivity wants), and writes every finished region to a :class:`GeoJSONWriter` in the raster
CRS with its area in m² (``area_m2``; null without a CRS) and in pixels (``area_px``). Memory: one band of rows
plus the regions still open at its bottom edge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.features import shapes
from rasterio.windows import Window
from shapely import union_all
from shapely.affinity import affine_transform
from shapely.geometry import mapping, shape

from mtp.inference.scene.vectors import GeoJSONWriter, area_m2

__all__ = ["polygonize_raster"]


def _parts(geom) -> list:
    return list(geom.geoms) if geom.geom_type in ("MultiPolygon", "GeometryCollection") else [geom]


def polygonize_raster(raster: str | Path, out: str | Path, *, value: int = 1, band_rows: int = 1024,
                      name: str | None = None, min_pixels: int = 1) -> int:  # fmt: skip
    """Trace the regions of ``value`` in band 1 of ``raster`` into the GeoJSON file ``out``; returns their number.
    Regions smaller than ``min_pixels`` are left out."""
    with rasterio.open(raster) as ds:
        height, width, transform, crs = ds.height, ds.width, ds.transform, ds.crs
        writer = GeoJSONWriter(out, crs, name or Path(out).stem)
        coeffs = [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
        open_polys: list = []

        def emit(poly) -> None:
            area_px = float(poly.area)
            if area_px < min_pixels:
                return
            geom = mapping(affine_transform(poly, coeffs))
            writer.add(geom, {"id": writer.count, "class": "changed", "area_m2": area_m2(geom, crs) if crs else None,
                              "area_px": area_px})  # fmt: skip

        for y0 in range(0, height, band_rows):
            y1 = min(y0 + band_rows, height)
            data = ds.read(1, window=Window(0, y0, width, y1 - y0))
            mask = data == value
            traced = shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=Affine.translation(0, y0))
            new = [shape(g) for g, v in traced if v == 1] if mask.any() else []
            at_top = [p for p in new if p.bounds[1] <= y0 and y0 > 0]
            inside = [p for p in new if not (p.bounds[1] <= y0 and y0 > 0)]
            if open_polys and at_top:
                joined = _parts(union_all(open_polys + at_top))
            else:
                for p in open_polys:
                    emit(p)
                joined = at_top
            open_polys = []
            for p in joined + inside:
                if p.bounds[3] >= y1 and y1 < height:
                    open_polys.append(p)
                else:
                    emit(p)
        for p in open_polys:
            emit(p)
        writer.close()
        return writer.count
