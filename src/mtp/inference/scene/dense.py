"""Outputs of the dense families (semantic segmentation, change detection) and of grid classification.

* segmentation: ``<name>_classes.tif`` uint8 class per pixel (255 = no-data), colour table and class names;
  with ``probs``: ``<name>_probs.tif``, one uint8 band per class = round(254 · softmax), 255 = no-data, band
  scale 1/254 (sigmoid for a one-class model).
* change detection: ``<name>_change.tif`` 0/1 (255 = no-data in either date), then ``<name>_change.geojson``
  (polygons of changed areas with ``area_m2``) traced from it at the end.
* classification: ``<name>_grid.tif`` one pixel per tile of ``tile`` x ``tile`` scene pixels: band 1 class (255 =
  no-data tile), band 2 score = round(254 · max softmax) (scale 1/254); ``<name>_grid.geojson`` one polygon per
  tile (the window the model saw) with ``class``, ``class_id``, ``score``, ``top5``.

Every handler receives the tiles of one tile row (:meth:`add`), then :meth:`finish_row`, and reports with
:meth:`checkpoint` what is safely on disk (for ``--resume``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.enums import Resampling

from mtp.inference.scene.geotiff import RowWriter, geotiff_profile
from mtp.inference.scene.grid import TileGrid
from mtp.inference.scene.predictors import TaskInfo
from mtp.inference.scene.reader import SceneGeometry
from mtp.inference.scene.stitch import RowStitcher
from mtp.inference.scene.vectors import GeoJSONWriter, pixel_to_crs

__all__ = ["ClassificationGridOutput", "DenseOutput", "PartSpec"]

NODATA = 255


@dataclass(frozen=True)
class PartSpec:
    """The steps (tile rows) ``[step_start, step_end)`` one process writes, their scene rows ``[y_start, y_end)``, the
    ``prefix`` of its files (``DIR/<name>`` for a single process) and whether it covers the whole scene."""

    step_start: int
    step_end: int
    y_start: int
    y_end: int
    prefix: Path
    whole: bool

    def geometry(self, scene: SceneGeometry) -> SceneGeometry:
        transform = scene.transform @ Affine.translation(0, self.y_start)
        return SceneGeometry(self.y_end - self.y_start, scene.width, transform, scene.crs)


class DenseOutput:
    """Segmentation / change-detection rasters for one part (see the module docstring)."""

    def __init__(self, info: TaskInfo, grid: TileGrid, scene: SceneGeometry, part: PartSpec, *, first_row: int,
                 durable_rows: int = 0, probs: bool = False, blend: str = "mean",
                 overviews: bool = True) -> None:  # fmt: skip
        self.info, self.grid, self.part = info, grid, part
        self.change = info.family == "change_detection"
        self.stitcher = RowStitcher(grid, first_row, blend)
        self._labels: np.ndarray | None = None
        self._probs: np.ndarray | None = None
        self._col: int | None = None
        geometry = part.geometry(scene)
        suffix = "_change.tif" if self.change else "_classes.tif"
        self.paths = {"change" if self.change else "classes": Path(f"{part.prefix}{suffix}")}
        resampling = Resampling.nearest if overviews and part.whole else None
        names = ["unchanged", "changed"] if self.change else list(info.class_names)
        colours = {i: tuple(c) for i, c in enumerate(info.palette[: len(names)])}
        self.writer = RowWriter(self.paths.get("classes", self.paths.get("change")), geotiff_profile(geometry, 1),
                                start_row=durable_rows, colormap=colours, class_names=names,
                                descriptions=["change" if self.change else "class"],
                                overview_resampling=resampling)  # fmt: skip
        self.prob_writer = None
        if probs and not self.change:
            self.paths["probs"] = Path(f"{part.prefix}_probs.tif")
            k = max(info.num_classes, 1)
            self.prob_writer = RowWriter(self.paths["probs"], geotiff_profile(geometry, k), start_row=durable_rows,
                                         descriptions=list(info.class_names), scales=[1 / 254] * k,
                                         overview_resampling=Resampling.average if resampling else None)  # fmt: skip

    def add(self, row: int, col: int, result: np.ndarray | None, valid: np.ndarray) -> None:
        """Tiles arrive in step order (column-major within a step): a new column releases the columns before it."""
        if self._labels is None:
            self._start_step()
        if col != self._col:
            self.stitcher.flush(col, self._consume)
            self._col = col
        if result is not None:
            self.stitcher.add(row, col, result, valid)

    def _start_step(self) -> None:
        g, step = self.grid, self.stitcher.step
        n = g.final_end(step) - g.final_start(step)
        self._labels = np.full((n, g.width), NODATA, np.uint8)
        k = max(self.info.num_classes, 1)
        self._probs = np.full((k, n, g.width), NODATA, np.uint8) if self.prob_writer is not None else None
        self._col = None

    def _consume(self, first: int, col: int, mean: np.ndarray | None, valid: np.ndarray) -> None:
        if mean is None:
            return
        labels, probs = self._labels[:, col : col + valid.shape[1]], self._probs
        if mean.shape[0] == 1:
            p = 1.0 / (1.0 + np.exp(-mean))
            labels[valid] = (p[0] > 0.5)[valid]
        else:
            labels[valid] = mean.argmax(0).astype(np.uint8)[valid]
            if probs is not None:
                p = np.exp(mean - mean.max(0, keepdims=True))
                p /= p.sum(0, keepdims=True)
        if probs is not None:
            probs[:, :, col : col + valid.shape[1]][:, valid] = np.rint(p[:, valid] * 254).astype(np.uint8)

    def finish_row(self) -> None:
        """End of a step: the remaining columns, then the step's final rows go to the files."""
        if self._labels is None:
            self._start_step()
        first = self.stitcher.finish_step(self._consume)
        labels, probs = self._labels, self._probs
        self._labels = self._probs = None
        rows = first - self.part.y_start
        if rows + labels.shape[0] <= 0:
            return  # a context step of the part before this one
        self.writer.write(rows, labels)
        if probs is not None:
            self.prob_writer.write(rows, probs)

    def checkpoint(self) -> dict:
        durable = self.writer.sync()
        if self.prob_writer is not None:
            durable = min(durable, self.prob_writer.sync())
        return {"durable_rows": durable}

    def close(self, interrupted: bool = False) -> None:
        self.writer.close(partial=interrupted)
        if self.prob_writer is not None:
            self.prob_writer.close(partial=interrupted)


class ClassificationGridOutput:
    """Grid classification for one part (see the module docstring); one grid row per tile row (= step: a
    classification grid never merges rows)."""

    def __init__(self, info: TaskInfo, grid: TileGrid, scene: SceneGeometry, part: PartSpec, *,
                 durable_rows: int = 0, geojson_resume: tuple[int, int] | None = None,
                 overviews: bool = True) -> None:  # fmt: skip
        self.info, self.grid, self.part, self.scene = info, grid, part, scene
        t = grid.tile
        transform = scene.transform @ Affine.translation(0, grid.row_starts[part.step_start]) @ Affine.scale(t, t)
        cells = SceneGeometry(part.step_end - part.step_start, grid.n_cols, transform, scene.crs)
        self.paths = {"grid": Path(f"{part.prefix}_grid.tif"), "grid_geojson": Path(f"{part.prefix}_grid.geojson")}
        profile = geotiff_profile(cells, 2) | {"blockxsize": 16, "blockysize": 16}
        colours = {i: tuple(c) for i, c in enumerate(info.palette[: info.num_classes])}
        self.writer = RowWriter(self.paths["grid"], profile, start_row=durable_rows, colormap=colours,
                                class_names=list(info.class_names), descriptions=["class", "score"],
                                scales=[1.0, 1 / 254], tags={"tile_pixels": t},
                                overview_resampling=Resampling.nearest if overviews and part.whole else None,
                                )  # fmt: skip
        self.features = GeoJSONWriter(self.paths["grid_geojson"], scene.crs, Path(self.paths["grid_geojson"]).stem,
                                      resume=geojson_resume)  # fmt: skip
        self.row_values = np.full((2, 1, grid.n_cols), NODATA, np.uint8)
        self.offsets: dict[int, tuple[int, int]] = {durable_rows: self.features.checkpoint()}
        self.current_row = part.step_start + durable_rows

    def add(self, row: int, col: int, result: np.ndarray | None, valid: np.ndarray) -> None:
        if result is None:
            return
        j = self.grid.col_starts.index(col)
        cls = int(result.argmax())
        score = float(result[cls])
        self.row_values[:, 0, j] = (cls, round(score * 254))
        t = self.grid.tile
        ring = np.array([[col, row], [col + t, row], [col + t, row + t], [col, row + t], [col, row]], np.float64)
        coords = pixel_to_crs(self.scene.transform, ring, centres=False).tolist()
        top = np.argsort(-result, kind="stable")[:5]
        self.features.add({"type": "Polygon", "coordinates": [coords]}, {
            "class": self.info.class_names[cls], "class_id": cls, "score": round(score, 5),
            "top5": [self.info.class_names[i] for i in top], "pixel_window": [col, row, t, t],
            "valid_fraction": round(float(valid.mean()), 4)})  # fmt: skip

    def finish_row(self) -> None:
        self.writer.write(self.current_row - self.part.step_start, self.row_values)
        self.current_row += 1
        self.row_values = np.full((2, 1, self.grid.n_cols), NODATA, np.uint8)
        self.offsets[self.current_row - self.part.step_start] = self.features.checkpoint()

    def checkpoint(self) -> dict:
        durable = self.writer.sync()
        return {"durable_rows": durable, "geojson": list(self.offsets[durable])}

    def close(self, interrupted: bool = False) -> None:
        self.writer.close(partial=interrupted)
        self.features.close()
