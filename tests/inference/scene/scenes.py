"""Small GeoTIFF scenes with known bright objects for the oracle tests (UTM 33N, 0.5 m pixels, no-data corner)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine

ORIGIN = (399960.0, 5100000.0)
PIXEL = 0.5
TRANSFORM = Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1])


@dataclass
class KnownObject:
    """A filled rotated rectangle: centre (x, y) in pixels (pixel centres at integers), size, angle in degrees."""

    cx: float
    cy: float
    w: float
    h: float
    angle: float

    def polygon(self) -> np.ndarray:
        return cv2.boxPoints(((self.cx, self.cy), (self.w, self.h), self.angle))

    def crs_centre(self) -> tuple[float, float]:
        return TRANSFORM @ (self.cx + 0.5, self.cy + 0.5)


#: Objects of the default 256 x 224 scene: the first lies across the tile border at x = 64..80 (tile 64, overlap 16
#: -> tiles at 0, 48, 96, ...), the second inside one tile, the third across a row border.
OBJECTS = (KnownObject(70.0, 100.0, 12.0, 8.0, 30.0), KnownObject(150.0, 150.0, 10.0, 6.0, 0.0),
           KnownObject(200.0, 47.0, 8.0, 14.0, -20.0))  # fmt: skip


def write_scene(path: Path, *, height: int = 224, width: int = 256, objects=OBJECTS, crs: str | None = "EPSG:32633",
                nodata_corner: int = 130, background: int = 60, dtype: str = "uint8", count: int = 3,
                shift: tuple[int, int] = (0, 0), transform: Affine | None = None) -> Path:  # fmt: skip
    """Dark ground with bright (250) objects; no-data (0) triangle of legs ``nodata_corner`` at the top-left."""
    image = np.full((height, width), background, np.uint8)
    for obj in objects:
        poly = obj.polygon() - np.array(shift, np.float32)
        cv2.fillPoly(image, [np.round(poly).astype(np.int32)], 250)
    yy, xx = np.mgrid[:height, :width]
    nodata = xx + yy < nodata_corner
    image[nodata] = 0
    data = np.repeat(image[None], count, axis=0)
    if dtype == "uint16":
        data = data.astype(np.uint16) * 10
    transform = transform or TRANSFORM @ Affine.translation(*shift)
    profile = {"driver": "GTiff", "height": height, "width": width, "count": count, "dtype": dtype, "crs": crs,
               "transform": transform, "nodata": 0, "tiled": True, "blockxsize": 128, "blockysize": 128}  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path
