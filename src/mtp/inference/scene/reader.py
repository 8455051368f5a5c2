"""Windowed reading of scene rasters with rasterio (a change-detection pair: :mod:`mtp.inference.scene.pair`).

Nothing here reads a whole raster: :meth:`SceneRaster.read` returns one window, already band-selected, scaled
(:mod:`mtp.inference.scene.bands`) and normalised for the models (float32 (C, h, w), ImageNet statistics on the
0–255 scale, docs/CONVENTIONS.md), with a boolean (h, w) validity mask. No-data pixels are set to 0 after
normalisation (the mean colour, the official padding value). Each thread gets its own rasterio handle (GDAL
handles are not thread-safe), so a pool of reader threads can prefetch tiles while the model runs.

Coordinates: windows are ``(row, col, height, width)`` in the pixels of the *scene*, i.e. the output grid. For a
single raster that is the raster itself; for a pair it is the part of raster A that B overlaps (B is read through
the same windows when both share the pixel grid, else through a ``WarpedVRT`` onto A's grid, bilinear).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from mtp.inference.outputs import IMAGENET_MEAN, IMAGENET_STD
from mtp.inference.scene.bands import STATS_SIZE, BandScaling, ScaleRule, default_bands

__all__ = ["SceneGeometry", "SceneInputError", "SceneRaster", "SingleScene", "normalise"]

log = logging.getLogger(__name__)

# A bounded GDAL block cache (MB) keeps peak memory independent of the scene size (GDAL's default is 5 % of RAM).
os.environ.setdefault("GDAL_CACHEMAX", "32")


AUTO = ScaleRule("auto")


class SceneInputError(ValueError):
    """A scene input cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class SceneGeometry:
    """The output grid: ``height`` x ``width`` pixels, ``transform`` (pixel corner -> CRS, rasterio convention),
    ``crs`` (None: pixel coordinates)."""

    height: int
    width: int
    transform: Affine
    crs: rasterio.crs.CRS | None

    @property
    def pixel_area_m2(self) -> float | None:
        """Area of one pixel in m² for a projected CRS in linear units; None otherwise."""
        if self.crs is None or not self.crs.is_projected:
            return None
        factor = self.crs.linear_units_factor[1]
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d) * factor**2


def _open(path: Path):
    try:
        with warnings.catch_warnings():  # a raster without georeferencing is reported once, by SceneRaster
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as err:
        raise SceneInputError(f"{path}: cannot read the raster ({err})") from None


class SceneRaster:
    """One input raster: validation, band choice, scaling and windowed reads (see the module docstring).

    Args:
        path: GeoTIFF (or any GDAL raster). bands: 1-based bands in model order (None: :func:`default_bands`).
        scale: :class:`ScaleRule`; ``scaling``: an already resolved :class:`BandScaling` (resume) instead.
        nodata: overrides the file's no-data value.
    """

    def __init__(self, path: str | Path, bands: tuple[int, ...] | None = None, scale: ScaleRule = AUTO,
                 nodata: float | None = None, scaling: BandScaling | None = None) -> None:  # fmt: skip
        self.path = Path(path)
        if not self.path.is_file():
            raise SceneInputError(f"{self.path}: file not found")
        self._local = threading.local()
        self._handles: list = []
        self._lock = threading.Lock()
        ds = self._dataset()
        self.width, self.height, self.count = ds.width, ds.height, ds.count
        self.crs = ds.crs
        self.transform = ds.transform
        self.dtype = ds.dtypes[0]
        if any(np.dtype(d).kind == "c" for d in ds.dtypes):
            raise SceneInputError(f"{self.path}: complex-valued rasters are not supported")
        alpha = [i + 1 for i, c in enumerate(ds.colorinterp) if c == ColorInterp.alpha]
        try:
            self.bands = bands if bands is not None else default_bands(self.count, alpha)
        except ValueError as err:
            raise SceneInputError(f"{self.path}: {err}") from None
        bad = [b for b in self.bands if not 1 <= b <= self.count]
        if bad:
            raise SceneInputError(f"{self.path}: band(s) {bad} out of range: the file has {self.count} band(s)")
        if len(self.bands) != 3:
            raise SceneInputError(f"{self.path}: --bands must name 3 bands (R, G, B for the model), got {self.bands}")
        self.nodata = nodata if nodata is not None else ds.nodata
        self._override = nodata is not None
        flags = [ds.mask_flag_enums[b - 1] for b in self.bands]
        self._file_masks = not self._override and not all(f == [MaskFlags.all_valid] for f in flags)
        if self.crs is None:
            log.warning("%s has no CRS: outputs are georeferenced in pixel coordinates", self.path)
        self.scaling = scaling or BandScaling.resolve(scale, self.dtype, 3, self._stats_sample() if
                                                      scale.kind in ("percentile", "auto") and self.dtype != "uint8"
                                                      else None)  # fmt: skip
        log.info("%s: %d x %d px, %d band(s) %s, bands %s, scaling %s", self.path, self.width, self.height,
                 self.count, self.dtype, ",".join(map(str, self.bands)), self.scaling.rule)  # fmt: skip

    # -- handles -------------------------------------------------------------------------------------------------
    def _dataset(self):
        ds = getattr(self._local, "ds", None)
        if ds is None:
            ds = _open(self.path)
            self._local.ds = ds
            with self._lock:
                self._handles.append(ds)
        return ds

    def close(self) -> None:
        with self._lock:
            for ds in self._handles:
                ds.close()
            self._handles.clear()
        self._local = threading.local()

    # -- reading -------------------------------------------------------------------------------------------------
    def _valid_from(self, data: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        if masks is not None:
            valid = (masks != 0).any(axis=0)
        elif self._override and not np.isnan(self.nodata):
            valid = (data != self.nodata).any(axis=0)
        else:
            valid = np.ones(data.shape[1:], bool)
        if data.dtype.kind == "f":
            valid &= np.isfinite(data).all(axis=0)
        return valid

    def read_raw(self, window: Window, dataset=None) -> tuple[np.ndarray, np.ndarray]:
        """Selected bands of ``window`` as stored ((3, h, w), file dtype) and validity (h, w) bool."""
        ds = dataset or self._dataset()
        try:
            data = ds.read(indexes=list(self.bands), window=window)
            masks = ds.read_masks(indexes=list(self.bands), window=window) if self._file_masks else None
        except RasterioError as err:
            raise SceneInputError(f"{self.path}: read error in window {window} ({err})") from None
        return data, self._valid_from(data, masks)

    def read(self, window: Window, dataset=None) -> tuple[np.ndarray, np.ndarray]:
        """Normalised float32 (3, h, w) model input (0 at no-data) and validity (h, w) bool."""
        data, valid = self.read_raw(window, dataset)
        return normalise(self.scaling.apply(data), valid), valid

    def _stats_sample(self) -> np.ma.MaskedArray:
        ds = self._dataset()
        factor = max(self.width, self.height) / STATS_SIZE
        shape = (3, max(1, round(self.height / max(factor, 1))), max(1, round(self.width / max(factor, 1))))
        data = ds.read(indexes=list(self.bands), out_shape=shape, resampling=Resampling.nearest)
        masks = ds.read_masks(indexes=list(self.bands), out_shape=shape, resampling=Resampling.nearest) if (
            self._file_masks) else None  # fmt: skip
        valid = self._valid_from(data, masks)
        return np.ma.MaskedArray(data, mask=np.broadcast_to(~valid, data.shape))

    def describe(self) -> dict:
        """What identifies this input for a resume (path, size, modification time, bands, no-data value)."""
        stat = self.path.stat()
        return {"path": str(self.path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "bands": list(self.bands), "nodata": self.nodata}  # fmt: skip


def normalise(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(3, h, w) float32 on 0–255 -> normalised in place; pixels outside ``valid`` become 0."""
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    data -= mean
    data /= std
    if not valid.all():
        data[:, ~valid] = 0.0
    return data


class SingleScene:
    """A scene made of one raster: the output grid is the raster's grid."""

    channels = 3

    def __init__(self, raster: SceneRaster) -> None:
        self.raster = raster
        self.geometry = SceneGeometry(raster.height, raster.width, raster.transform, raster.crs)
        self.name = raster.path.stem
        self.paths = (raster.path,)

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        return self.raster.read(Window(col, row, width, height))

    def describe(self) -> dict:
        return {"a": self.raster.describe()}

    def scaling(self) -> dict:
        return {"a": self.raster.scaling.to_json()}

    def close(self) -> None:
        self.raster.close()
