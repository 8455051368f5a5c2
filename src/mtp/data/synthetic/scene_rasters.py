"""Large synthetic GeoTIFF scenes with a CRS, no-data areas and known objects, written block by block.

A scene is a mosaic of generator scenes (:class:`~mtp.data.synthetic.scenes.SceneGenerator`, one per
``block`` x ``block`` block, scene index = block number in row-major order), so any size can be written while
only one block is in memory. Files (``<stem>`` = the path without ``.tif``):

* ``<stem>.tif``: tiled (``block``), deflate GeoTIFF in ``crs`` (default EPSG:32633, UTM 33N) with a north-up
  transform of ``pixel_size`` metres from ``origin`` (top-left corner, CRS units); ``bands`` 3 (R, G, B) or 4
  (B, G, R, NIR: the Sentinel-2 B2, B3, B4, B8 order, so the model wants ``--bands 3,2,1``); ``dtype`` uint8
  (values 1..255) or uint16 (digital numbers v · 3000 / 255, i.e. ``--scale s2`` gives v back). No-data value 0
  in a triangle at the top-left corner covering ``nodata_fraction`` of the scene (a swath edge).
* ``<stem>_labels.tif``: uint8 land cover (``LAND_COVER_CLASSES`` ids, 255 = no-data), same grid.
* ``<stem>_objects.geojson``: every object fully inside valid pixels, as its rotated rectangle in the scene CRS
  (pixel centres at integer coordinates, docs/CONVENTIONS.md), with ``class``, ``pixel_rbox``, ``pixel_bbox``.
* with ``pair=True`` the scene is a change pair instead: ``<stem>_a.tif``, ``<stem>_b.tif`` (the generator's
  change pairs: buildings added / removed, radiometric differences) and ``<stem>_change_truth.tif`` (0/1, 255
  no-data); object truth and labels are not written for pairs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtp.data.synthetic.classes import OBJECT_CLASSES
from mtp.data.synthetic.geometry import rbox_corners
from mtp.data.synthetic.scenes import SceneGenerator
from mtp.data.synthetic.writers_common import DatasetSummary

__all__ = ["SceneFiles", "write_scene_dataset", "write_scene_geotiff"]


@dataclass
class SceneFiles:
    """Paths written by :func:`write_scene_geotiff` and the number of known objects."""

    images: list[Path]
    labels: Path | None = None
    objects: Path | None = None
    change: Path | None = None
    num_objects: int = 0
    extra: dict = field(default_factory=dict)


def _nodata_mask(y0: int, x0: int, h: int, w: int, height: int, width: int, fraction: float) -> np.ndarray:
    """True where the no-data triangle (legs sqrt(2 f) of each side, top-left corner) covers the block."""
    if fraction <= 0:
        return np.zeros((h, w), bool)
    leg = math.sqrt(2 * fraction)
    ys = (np.arange(y0, y0 + h) + 0.5)[:, None] / (leg * height)
    xs = (np.arange(x0, x0 + w) + 0.5)[None, :] / (leg * width)
    return xs + ys < 1.0


def _encode(rgb: np.ndarray, bands: int, dtype: str) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (bands, h, w) of ``dtype``; valid values never equal the no-data value 0."""
    rgb = np.maximum(rgb, 1)
    if bands == 3:
        out = rgb.transpose(2, 0, 1)
    elif bands == 4:
        r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
        nir = np.clip(2 * g - r + 40, 1, 255).astype(np.uint8)
        out = np.stack([rgb[..., 2], rgb[..., 1], rgb[..., 0], nir])
        del b
    else:
        raise ValueError(f"bands must be 3 or 4, got {bands}")
    if dtype == "uint8":
        return np.ascontiguousarray(out)
    if dtype == "uint16":
        return np.rint(out.astype(np.float64) * 3000 / 255).astype(np.uint16)
    raise ValueError(f"dtype must be uint8 or uint16, got {dtype!r}")


def write_scene_geotiff(path: str | Path, *, height: int, width: int, seed: int = 0, block: int = 512,
                        crs: str | None = "EPSG:32633", origin: tuple[float, float] = (399960.0, 5100000.0),
                        pixel_size: float = 0.5, bands: int = 3, dtype: str = "uint8", nodata_fraction: float = 0.1,
                        pair: bool = False, object_scale: float = 1.0) -> SceneFiles:  # fmt: skip
    """Write a synthetic scene (see the module docstring); returns the files written."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    path = Path(path)
    stem = path.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    if block % 16:
        raise ValueError(f"block must be a multiple of 16, got {block}")
    transform = Affine(pixel_size, 0, origin[0], 0, -pixel_size, origin[1])
    profile = {"driver": "GTiff", "height": height, "width": width, "crs": crs, "transform": transform, "tiled": True,
               "blockxsize": block, "blockysize": block, "compress": "deflate", "interleave": "pixel"}  # fmt: skip
    image_profile = profile | {"count": bands, "dtype": dtype, "nodata": 0}
    mask_profile = profile | {"count": 1, "dtype": "uint8", "nodata": 255}
    gen = SceneGenerator(seed, block, object_scale=object_scale)
    image_paths = [Path(f"{stem}_a.tif"), Path(f"{stem}_b.tif")] if pair else [path]
    images = [rasterio.open(p, "w", **image_profile) for p in image_paths]
    side_path = Path(f"{stem}_change_truth.tif") if pair else Path(f"{stem}_labels.tif")
    side = rasterio.open(side_path, "w", **mask_profile)
    features: list[dict] = []
    try:
        n_cols = math.ceil(width / block)
        for index in range(math.ceil(height / block) * n_cols):
            y0, x0 = divmod(index, n_cols)
            y0, x0 = y0 * block, x0 * block
            h, w = min(block, height - y0), min(block, width - x0)
            nodata = _nodata_mask(y0, x0, h, w, height, width, nodata_fraction)
            window = Window(x0, y0, w, h)
            if pair:
                a, b, change = gen.change_pair(index)
                rasters, truth = [a, b], change[:h, :w].copy()
            else:
                scene = gen.scene(index)
                rasters, truth = [scene.image], scene.semantic[:h, :w].copy()
                features += _object_features(scene.objects, x0, y0, nodata, transform, h, w)
            truth[nodata] = 255
            side.write(truth, 1, window=window)
            for ds, rgb in zip(images, rasters, strict=True):
                data = _encode(rgb[:h, :w], bands, dtype)
                data[:, nodata] = 0
                ds.write(data, window=window)
    finally:
        for ds in (*images, side):
            ds.close()
    files = SceneFiles(image_paths, change=side_path if pair else None, labels=None if pair else side_path)
    if not pair:
        files.objects = Path(f"{stem}_objects.geojson")
        epsg = rasterio.crs.CRS.from_user_input(crs).to_epsg() if crs else None
        crs_member = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}} if epsg else None
        collection = {"type": "FeatureCollection", "name": files.objects.stem, "crs": crs_member, "features": features}
        files.objects.write_text(json.dumps(collection))
        files.num_objects = len(features)
    return files


def _object_features(objects, x0: int, y0: int, nodata: np.ndarray, transform, h: int, w: int) -> list[dict]:
    out = []
    for obj in objects:
        x1, y1, x2, y2 = obj.hbox
        if x2 >= w - 0.5 or y2 >= h - 0.5:  # cut by the scene border
            continue
        c0, r0 = max(int(x1), 0), max(int(y1), 0)
        if nodata[r0 : math.ceil(y2) + 1, c0 : math.ceil(x2) + 1].any():
            continue
        rbox = np.array(obj.rbox, np.float64) + np.array([x0, y0, 0, 0, 0])
        corners = rbox_corners(rbox) + 0.5  # pixel centres at integers -> raster corner frame
        ring = [list(transform @ (float(x), float(y))) for x, y in corners]
        properties = {"class": obj.category, "class_id": OBJECT_CLASSES.index(obj.category),
                      "pixel_rbox": [round(float(v), 4) for v in rbox],
                      "pixel_bbox": [float(x1 + x0), float(y1 + y0), float(x2 + x0), float(y2 + y0)]}  # fmt: skip
        out.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
                    "properties": properties})  # fmt: skip
    return out


def write_scene_dataset(root: str | Path, *, n: int = 1, size: int = 2048, seed: int = 0, **options) -> DatasetSummary:
    """``n`` scenes ``root/scene_<k>.tif`` (or pairs with ``pair=True``) of ``size`` x ``size`` pixels; ``options``
    go to :func:`write_scene_geotiff` (bands, dtype, crs, pixel_size, nodata_fraction, pair, block)."""
    root = Path(root)
    summary = DatasetSummary("scene", root)
    for k in range(n):
        files = write_scene_geotiff(root / f"scene_{k}.tif", height=size, width=size, seed=seed + k, **options)
        for p in [*files.images, files.labels, files.objects, files.change]:
            if p is not None:
                summary.add(p)
        summary.num_images += 1
        summary.num_objects += files.num_objects
    return summary.finish()
