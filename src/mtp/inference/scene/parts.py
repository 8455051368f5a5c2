"""The last steps of a scene run: derived outputs, and joining the parts written by several processes.

:func:`finish_outputs` runs once the main outputs of the whole scene exist: change polygons from
``<name>_change.tif`` (:func:`~mtp.inference.scene.polygonize.polygonize_raster`) and the pixel-coordinate
detection files from ``<name>_objects.geojson`` (:func:`~mtp.inference.scene.objects.write_pixel_files`).

:func:`finalize_parts` joins the files of ``num_parts`` processes (``DIR/.parts/<name>.part<i>*``): rasters are
copied band of rows by band of rows into the final file (then overviews), GeoJSON features are concatenated, and
the detections a part could not decide alone (near the border between two parts) go through one more
class-wise NMS. The ``.parts`` folder is removed afterwards.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from mtp.inference.scene.geotiff import RowWriter
from mtp.inference.scene.objects import merge_deferred, write_pixel_files
from mtp.inference.scene.polygonize import polygonize_raster
from mtp.inference.scene.predictors import TaskInfo
from mtp.inference.scene.reader import SceneGeometry
from mtp.inference.scene.vectors import GeoJSONWriter

__all__ = ["finalize_parts", "finish_outputs", "output_paths"]

log = logging.getLogger(__name__)

SUFFIXES = {
    "segmentation": {"classes": "_classes.tif", "probs": "_probs.tif"},
    "change_detection": {"change": "_change.tif", "change_geojson": "_change.geojson"},
    "rotated_detection": {"objects": "_objects.geojson", "task1": "_task1"},
    "detection": {"objects": "_objects.geojson", "coco": "_coco.json"},
    "classification": {"grid": "_grid.tif", "grid_geojson": "_grid.geojson"},
}


def output_paths(family: str, prefix: Path) -> dict[str, Path]:
    """Every output a run of ``family`` may write under ``prefix`` (``DIR/<name>``)."""
    return {kind: Path(f"{prefix}{suffix}") for kind, suffix in SUFFIXES[family].items()}


def finish_outputs(info: TaskInfo, prefix: Path, geometry: SceneGeometry, name: str) -> dict[str, Path]:
    """Derived outputs of a complete scene (see the module docstring)."""
    paths = output_paths(info.family, prefix)
    if info.family == "change_detection":
        n = polygonize_raster(paths["change"], paths["change_geojson"], value=1, name=f"{name}_change")
        log.info("%d changed areas traced into %s", n, paths["change_geojson"])
        return {"change_geojson": paths["change_geojson"]}
    if info.family in ("rotated_detection", "detection"):
        return write_pixel_files(paths["objects"], prefix, info, geometry, name)
    return {}


def _copy_rasters(parts: list[Path], final: Path, resampling: Resampling | None, rows_per_read: int = 512) -> None:
    with rasterio.open(parts[0]) as first:
        profile = first.profile
        tags, band1_tags = first.tags(), first.tags(1)
        colormap = first.colormap(1) if first.count >= 1 and _has_colormap(first) else None
        descriptions, scales = first.descriptions, first.scales
        transform = first.transform
    height = 0
    for p in parts:
        with rasterio.open(p) as ds:
            height += ds.height
    profile = dict(profile) | {"height": height, "transform": transform}
    names = json.loads(band1_tags["class_names"]) if "class_names" in band1_tags else None
    writer = RowWriter(final, profile, colormap={k: v[:3] for k, v in colormap.items()} if colormap else None,
                       class_names=names, descriptions=[d or "" for d in descriptions], scales=scales,
                       tags={k: v for k, v in tags.items() if not k.startswith("CLASS_")},
                       overview_resampling=resampling)  # fmt: skip
    row = 0
    try:
        for p in parts:
            with rasterio.open(p) as ds:
                for y0 in range(0, ds.height, rows_per_read):
                    data = ds.read(window=Window(0, y0, ds.width, min(rows_per_read, ds.height - y0)))
                    writer.write(row + y0, data)
                row += ds.height
    finally:
        writer.close()


def _has_colormap(ds) -> bool:
    try:
        ds.colormap(1)
        return True
    except ValueError:
        return False


def _concat_geojson(parts: list[Path], final: Path, crs, name: str) -> GeoJSONWriter:
    writer = GeoJSONWriter(final, crs, name)
    for p in parts:
        with p.open() as f:
            for line in f:
                text = line.strip().rstrip(",")
                if text.startswith('{"type":"Feature"'):
                    writer.add_raw(text)
    return writer


def finalize_parts(info: TaskInfo, out_dir: Path, name: str, num_parts: int, geometry: SceneGeometry, *,
                   merge_iou: float = 0.1, overviews: bool = True) -> dict[str, Path]:  # fmt: skip
    """Join the part files of a multi-process run into ``DIR/<name>_*`` (see the module docstring)."""
    parts_dir = out_dir / ".parts"
    prefixes = [parts_dir / f"{name}.part{i}" for i in range(num_parts)]
    final_prefix = out_dir / name
    paths = output_paths(info.family, final_prefix)
    done: dict[str, Path] = {}
    for kind in ("classes", "probs", "change", "grid"):
        if kind not in paths:
            continue
        pieces = [Path(f"{p}{SUFFIXES[info.family][kind]}") for p in prefixes]
        pieces = [p for p in pieces if p.is_file()]
        if not pieces:
            continue
        resampling = (Resampling.average if kind == "probs" else Resampling.nearest) if overviews else None
        _copy_rasters(pieces, paths[kind], resampling)
        done[kind] = paths[kind]
    if info.family == "classification":
        pieces = [Path(f"{p}_grid.geojson") for p in prefixes]
        _concat_geojson([p for p in pieces if p.is_file()], paths["grid_geojson"], geometry.crs,
                        f"{name}_grid").close()  # fmt: skip
        done["grid_geojson"] = paths["grid_geojson"]
    if info.family in ("rotated_detection", "detection"):
        pieces = [Path(f"{p}_objects.geojson") for p in prefixes]
        writer = _concat_geojson([p for p in pieces if p.is_file()], paths["objects"], geometry.crs, f"{name}_objects")
        deferred = [Path(f"{p}_deferred.json") for p in prefixes]
        merge_deferred(writer, [p for p in deferred if p.is_file()], info, geometry, merge_iou)
        writer.close()
        done["objects"] = paths["objects"]
    done.update(finish_outputs(info, final_prefix, geometry, name))
    shutil.rmtree(parts_dir, ignore_errors=True)
    return done
