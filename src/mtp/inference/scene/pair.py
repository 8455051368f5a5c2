"""A co-registered pair of scene rasters for change detection, and :func:`open_scene` (one raster or a pair).

The output grid of a pair is the part of raster A that raster B overlaps. B is read through the same windows when
both share the pixel grid (same pixel size, origins a whole number of pixels apart), else through a ``WarpedVRT``
onto A's grid (bilinear). A pair in two CRSs, or without a common extent, is refused with both file names.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds

from mtp.inference.scene.bands import BandScaling, ScaleRule
from mtp.inference.scene.reader import AUTO, SceneGeometry, SceneInputError, SceneRaster, SingleScene

__all__ = ["ScenePair", "open_scene"]

log = logging.getLogger(__name__)


class ScenePair:
    """Two co-registered rasters (change detection): the output grid is the part of A that B overlaps.

    Refuses a pair without the same CRS (or with one CRS missing) or without an overlap, naming both files.
    Model input: normalised A (3 channels) then B (3 channels); a pixel is valid when it is valid in both.
    """

    channels = 6

    def __init__(self, a: SceneRaster, b: SceneRaster) -> None:
        self.a, self.b = a, b
        if (a.crs is None) != (b.crs is None) or (a.crs is not None and a.crs != b.crs):
            raise SceneInputError(
                f"{a.path} and {b.path} are not in the same CRS ({a.crs} vs {b.crs}): reproject one onto the other "
                "first (e.g. gdalwarp -t_srs)"
            )
        bounds_b = rasterio.transform.array_bounds(b.height, b.width, b.transform)
        win = from_bounds(*bounds_b, transform=a.transform).round_offsets().round_lengths()
        win = win.intersection(Window(0, 0, a.width, a.height)) if _overlaps(win, a) else None
        if win is None or win.width < 1 or win.height < 1:
            raise SceneInputError(f"{a.path} and {b.path} do not overlap: the change pair must share an extent")
        self.offset = (int(win.row_off), int(win.col_off))
        transform = a.transform @ Affine.translation(win.col_off, win.row_off)
        self.geometry = SceneGeometry(int(win.height), int(win.width), transform, a.crs)
        same_grid = b.transform.almost_equals(transform) or _same_grid(a.transform, b.transform)
        self.b_offset = None
        if same_grid:
            inv = ~b.transform
            col, row = inv @ (transform.c, transform.f)
            self.b_offset = (round(row), round(col))
        else:
            log.warning("%s is not on the pixel grid of %s: it is resampled (bilinear) onto it", b.path, a.path)
        self.name = a.path.stem
        self.paths = (a.path, b.path)
        self._local = threading.local()

    def _b_vrt(self):
        vrt = getattr(self._local, "vrt", None)
        if vrt is None:
            src = self.b._dataset()
            vrt = WarpedVRT(src, crs=self.a.crs or src.crs, transform=self.geometry.transform,
                            width=self.geometry.width, height=self.geometry.height,
                            resampling=Resampling.bilinear)  # fmt: skip
            self._local.vrt = vrt
        return vrt

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        ra, ca = row + self.offset[0], col + self.offset[1]
        image_a, valid_a = self.a.read(Window(ca, ra, width, height))
        if self.b_offset is not None:
            image_b, valid_b = self.b.read(Window(col + self.b_offset[1], row + self.b_offset[0], width, height))
        else:
            image_b, valid_b = self.b.read(Window(col, row, width, height), dataset=self._b_vrt())
        valid = valid_a & valid_b
        image = np.concatenate([image_a, image_b])
        if not valid.all():
            image[:, ~valid] = 0.0
        return image, valid

    def describe(self) -> dict:
        return {"a": self.a.describe(), "b": self.b.describe()}

    def scaling(self) -> dict:
        return {"a": self.a.scaling.to_json(), "b": self.b.scaling.to_json()}

    def close(self) -> None:
        self.a.close()
        self.b.close()


def _overlaps(win: Window, raster: SceneRaster) -> bool:
    return win.col_off < raster.width and win.row_off < raster.height and win.col_off + win.width > 0 and (
        win.row_off + win.height > 0)  # fmt: skip


def _same_grid(ta: Affine, tb: Affine) -> bool:
    """Same pixel size and rotation, origins an integer number of pixels apart."""
    if not all(abs(x - y) <= 1e-9 * max(1.0, abs(x)) for x, y in zip(ta[:2] + ta[3:5], tb[:2] + tb[3:5], strict=True)):
        return False
    col, row = ~ta @ (tb.c, tb.f)
    return abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6


def open_scene(input_a: str | Path, input_b: str | Path | None = None, *, bands: tuple[int, ...] | None = None,
               scale: ScaleRule = AUTO, nodata: float | None = None,
               scaling: dict | None = None) -> SingleScene | ScenePair:  # fmt: skip
    """Open one scene (``input_b`` None) or a change pair. ``scaling``: resolved mappings from a resume state
    (``{"a": BandScaling json, "b": ...}``)."""
    resolved = {k: BandScaling.from_json(v) for k, v in (scaling or {}).items()}
    a = SceneRaster(input_a, bands, scale, nodata, resolved.get("a"))
    if input_b is None:
        return SingleScene(a)
    return ScenePair(a, SceneRaster(input_b, bands, scale, nodata, resolved.get("b")))
