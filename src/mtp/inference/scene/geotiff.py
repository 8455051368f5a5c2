"""Incremental GeoTIFF output: rows appended top to bottom, tiled + deflate, colour table, class names, overviews.

:class:`RowWriter` takes full-width rows in increasing order and writes them to the file one *block row*
(``block`` rows, 512 by default) at a time from a background thread, so compression overlaps the model and no
block is written twice in an uninterrupted run. ``durable_rows`` is the number of rows that are on disk
(block-aligned); a resumed run reopens the file in update mode and continues from there. Files are
COG-friendly: internally tiled, deflate-compressed, with internal overviews built at the end (nearest for
class rasters).

Class names are embedded as GDAL metadata (``class_names`` JSON on band 1, ``CLASS_<i>=name``) and written as
GDAL category names in the ``.aux.xml`` side file, which QGIS and ``gdalinfo`` show.
"""

from __future__ import annotations

import json
import logging
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from mtp.inference.scene.reader import SceneGeometry

__all__ = ["RowWriter", "geotiff_profile", "write_category_names"]

log = logging.getLogger(__name__)


def geotiff_profile(geometry: SceneGeometry, count: int, dtype: str = "uint8", nodata: float | None = 255,
                    block: int = 512) -> dict:  # fmt: skip
    """Creation options of a tiled, deflate-compressed GeoTIFF on the scene grid."""
    block = 256 if min(geometry.height, geometry.width) < 1024 else block
    return {
        "driver": "GTiff", "height": geometry.height, "width": geometry.width, "count": count, "dtype": dtype,
        "crs": geometry.crs, "transform": geometry.transform, "nodata": nodata, "tiled": True,
        "blockxsize": block, "blockysize": block, "compress": "deflate", "zlevel": 6, "interleave": "band",
        "BIGTIFF": "IF_SAFER",
    }  # fmt: skip


def write_category_names(path: Path, names: Sequence[str], band: int = 1) -> None:
    """Write GDAL category names for ``band`` into ``<path>.aux.xml`` (kept apart from GDAL's other PAM items)."""
    aux = Path(f"{path}.aux.xml")
    root = ET.Element("PAMDataset")
    pam_band = ET.SubElement(root, "PAMRasterBand", band=str(band))
    cats = ET.SubElement(pam_band, "CategoryNames")
    for name in names:
        ET.SubElement(cats, "Category").text = str(name)
    ET.ElementTree(root).write(aux, encoding="utf-8")


class RowWriter:
    """Append-only, block-row buffered GeoTIFF writer (see the module docstring).

    Args:
        path: output file. profile: :func:`geotiff_profile`. start_row: rows already on disk (resume: the file is
            opened in update mode), else 0 and the file is created.
        colormap: {value: (r, g, b)} for band 1. class_names: embedded + category names. descriptions: per band.
        scales: per-band scale factors (e.g. 1/254 for probabilities stored as uint8).
        overview_resampling: resampling for the overviews built at :meth:`close` (None: no overviews).
    """

    def __init__(self, path: str | Path, profile: dict, *, start_row: int = 0,
                 colormap: dict[int, tuple[int, int, int]] | None = None, class_names: Sequence[str] | None = None,
                 descriptions: Sequence[str] | None = None, scales: Sequence[float] | None = None,
                 tags: dict | None = None,
                 overview_resampling: Resampling | None = Resampling.nearest) -> None:  # fmt: skip
        self.path = Path(path)
        self.profile = profile
        self.height, self.width, self.count = profile["height"], profile["width"], profile["count"]
        self.block = profile["blockysize"]
        self.class_names = list(class_names) if class_names else None
        self.overview_resampling = overview_resampling
        self.next_row = start_row  # next row expected in the staging buffer
        self.durable_rows = start_row
        self._staged: list[np.ndarray] = []
        self._staged_from = start_row
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"write-{self.path.stem}")
        self._pending: list[Future] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        extra = {"colormap": colormap, "descriptions": descriptions, "scales": scales, "tags": tags}
        self._ds = self._pool.submit(self._open, start_row > 0, extra).result()

    def _open(self, update: bool, extra: dict):
        if update:
            return rasterio.open(self.path, "r+")
        with warnings.catch_warnings():  # a scene without CRS keeps its pixel grid (identity transform)
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(self.path, "w", **self.profile)
        if extra["colormap"]:
            ds.write_colormap(1, {int(k): (*tuple(v), 255) for k, v in extra["colormap"].items()})
        for i, text in enumerate(extra["descriptions"] or [], start=1):
            ds.set_band_description(i, text)
        if extra["scales"]:
            ds.scales = tuple(extra["scales"])
        if self.class_names:
            ds.update_tags(1, class_names=json.dumps(self.class_names))
            ds.update_tags(**{f"CLASS_{i}": n for i, n in enumerate(self.class_names)})
        if extra["tags"]:
            ds.update_tags(**{k: str(v) for k, v in extra["tags"].items()})
        return ds

    def write(self, row: int, data: np.ndarray) -> None:
        """Rows ``[row, row + n)`` of all bands, ``data`` (count, n, width) in the file dtype. Rows before
        :attr:`next_row` (recomputed after a resume) are dropped; a gap is an error."""
        if data.ndim == 2:
            data = data[None]
        n = data.shape[1]
        if row > self.next_row:
            raise ValueError(f"{self.path}: rows {self.next_row}..{row} were skipped")
        if row + n <= self.next_row:
            return
        data = data[:, self.next_row - row :]
        self._staged.append(np.ascontiguousarray(data))
        self.next_row += data.shape[1]
        staged = self.next_row - self._staged_from
        full = (staged // self.block) * self.block if self.next_row < self.height else staged
        if full:
            self._emit(full)

    def _emit(self, n: int) -> None:
        block = np.concatenate(self._staged, axis=1) if len(self._staged) > 1 else self._staged[0]
        out, rest = block[:, :n], block[:, n:]
        self._staged = [rest] if rest.shape[1] else []
        start = self._staged_from
        self._staged_from += n
        self._wait(max_pending=1)
        self._pending.append(self._pool.submit(self._write_rows, start, out))
        self.durable_rows = start + n  # once the pending writes are done (checked by sync())

    def _write_rows(self, start: int, data: np.ndarray) -> None:
        self._ds.write(data, window=((start, start + data.shape[1]), (0, self.width)))

    def _wait(self, max_pending: int = 0) -> None:
        while len(self._pending) > max_pending:
            self._pending.pop(0).result()

    def sync(self) -> int:
        """Wait for the queued writes; returns :attr:`durable_rows` (block-aligned rows handed to GDAL)."""
        self._wait()
        return self.durable_rows

    def close(self, *, partial: bool = False) -> None:
        """Write the staged rows, build overviews (complete files only) and close the file."""
        try:
            if self._staged:
                self._emit(self.next_row - self._staged_from)
            self._wait()
            complete = self.next_row >= self.height and not partial
            self._pool.submit(self._finish, complete).result()
        finally:
            self._pool.shutdown()
        if self.class_names:
            write_category_names(self.path, self.class_names)

    def _finish(self, complete: bool) -> None:
        if complete and self.overview_resampling is not None:
            factors, size = [], max(self.height, self.width)
            while size // (2 ** (len(factors) + 1)) >= 256:
                factors.append(2 ** (len(factors) + 1))
            if factors:
                self._ds.build_overviews(factors, self.overview_resampling)
                self._ds.update_tags(ns="rio_overview", resampling=self.overview_resampling.name)
        self._ds.close()
