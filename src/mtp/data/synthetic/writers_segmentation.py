"""Writers for the segmentation, classification and change-detection formats (LoveDA, SpaceNet v1, EuroSAT,
LEVIR-CD). Every writer generates with ``SceneGenerator(seed, size)`` and uses the running image number
(over all splits, in the order the splits are listed) as the scene index; it returns a
:class:`~mtp.data.synthetic.writers_common.DatasetSummary`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from mtp.data.synthetic.classes import EUROSAT_CLASSES, SCENE_CLASSES
from mtp.data.synthetic.geometry import clockwise_from_top_left
from mtp.data.synthetic.scenes import SceneGenerator
from mtp.data.synthetic.writers_common import DatasetSummary, prepare, save_image, splits

URBAN_SCENES = ("airport", "highway", "industrial", "residential")  # LoveDA release domains
RURAL_SCENES = ("agricultural", "forest", "water")


def write_loveda(
    root: str | Path,
    *,
    seed: int = 0,
    n_train: int = 8,
    n_val: int = 4,
    n_test: int = 4,
    size: int | tuple[int, int] = 256,
    layout: Literal["mtp", "release"] = "mtp",
    nodata_every: int = 3,
) -> DatasetSummary:
    """LoveDA-style segmentation set: RGB PNG images and uint8 PNG masks with raw LoveDA values
    0 = no-data, 1..7 = background, building, road, water, barren, forest, agricultural (class id + 1).

    Within each split, images alternate between the Urban domain (even positions; airport, highway, industrial,
    residential scenes) and the Rural domain (odd positions; agricultural, forest, water), so every split of
    >= 2 images has both; the content does not depend on ``layout``. Every ``nodata_every``-th image (running
    number k % nodata_every == nodata_every - 1) gets a no-data strip along its right edge (image 0, mask 0).
    Layouts:

    * ``'mtp'`` (what the MTP configs read): ``root/trainval/{images,labels}/<k>.png`` (train + val) and
      ``root/test/{images,labels}/<k>.png``.
    * ``'release'`` (original zip layout): ``root/{Train,Val}/{Urban,Rural}/{images_png,masks_png}/<k>.png``
      and ``root/Test/{Urban,Rural}/images_png/<k>.png`` (no test masks, as released).
    """
    root = Path(root)
    gen = SceneGenerator(seed, size)
    summary = DatasetSummary("loveda", root)
    for split, j, k in splits({"train": n_train, "val": n_val, "test": n_test}):
        domain = ("Urban", "Rural")[j % 2]
        choices = URBAN_SCENES if domain == "Urban" else RURAL_SCENES
        scene = gen.scene(k, scene_class=choices[int(np.random.default_rng([seed, k, 2]).integers(len(choices)))])
        image, mask = scene.image.copy(), scene.semantic + 1
        if nodata_every > 0 and k % nodata_every == nodata_every - 1:
            strip = max(1, mask.shape[1] // 8)
            image[:, -strip:] = 0
            mask[:, -strip:] = 0
        if layout == "mtp":
            folder = root / ("test" if split == "test" else "trainval")
            img_path, mask_path = folder / "images" / f"{k}.png", folder / "labels" / f"{k}.png"
        elif layout == "release":
            folder = root / split.capitalize() / domain
            img_path = folder / "images_png" / f"{k}.png"
            mask_path = None if split == "test" else folder / "masks_png" / f"{k}.png"
        else:
            raise ValueError(f"layout must be 'mtp' or 'release', got {layout!r}")
        save_image(summary.add(img_path), image)
        if mask_path is not None:
            save_image(summary.add(mask_path), mask)
        summary.num_images += 1
    return summary.finish()


def pixel_to_lonlat(transform, xy: np.ndarray) -> np.ndarray:
    """(N, 2) pixel coordinates (pixel centres at integers) -> (N, 2) lon/lat through an affine geotransform
    (rasterio convention: ``transform * (col, row)`` maps the *corner* of a pixel, hence the +0.5)."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    col, row = xy[:, 0] + 0.5, xy[:, 1] + 0.5
    return np.stack([a * col + b * row + c, d * col + e * row + f], axis=1)


def write_spacenet(
    root: str | Path,
    *,
    seed: int = 0,
    n: int = 8,
    size: int | tuple[int, int] = 256,
    empty_every: int = 4,
    origin_lonlat: tuple[float, float] = (-43.70, -22.95),
    pixel_deg: float = 4.5e-6,
) -> DatasetSummary:
    """SpaceNet v1 (AOI_1_RIO) raw release: ``root/3band/3band_AOI_1_RIO_img<i>.tif`` (3-band uint8 RGB
    GeoTIFF, EPSG:4326, north-up geotransform with ``pixel_deg`` degrees per pixel; tile i lies i-1 tile
    widths east of ``origin_lonlat`` = top-left lon/lat) and ``root/geojson/Geo_AOI_1_RIO_img<i>.geojson``
    (FeatureCollection of building footprint Polygons in lon/lat, exterior ring closed, counter-clockwise in
    lon/lat; properties ``{"building_id": j}``), i = 1..n. Every ``empty_every``-th tile (i % empty_every == 0)
    has no buildings and an empty ``features`` list. Scenes: residential and industrial. Footprints are the
    generator's building rectangles (the ``building`` pixels); mask conversion is a separate tool.
    """
    import rasterio
    from affine import Affine

    root = Path(root)
    gen = SceneGenerator(seed, size, scene_classes=("residential", "industrial"))
    summary = DatasetSummary("spacenet", root)
    for i in range(1, n + 1):
        exclude = ("building",) if empty_every > 0 and i % empty_every == 0 else ()
        scene = gen.scene(i, exclude=exclude)
        h, w = scene.semantic.shape
        west = origin_lonlat[0] + (i - 1) * w * pixel_deg
        transform = Affine(pixel_deg, 0.0, west, 0.0, -pixel_deg, origin_lonlat[1])  # north-up
        tif = prepare(summary.add(root / "3band" / f"3band_AOI_1_RIO_img{i}.tif"))
        profile = dict(driver="GTiff", height=h, width=w, count=3, dtype="uint8", crs="EPSG:4326", transform=transform)
        with rasterio.open(tif, "w", **profile) as dst:
            dst.write(scene.image.transpose(2, 0, 1))
        features = []
        for obj in scene.objects:
            if obj.category != "building":
                continue
            ring = pixel_to_lonlat(transform, clockwise_from_top_left(obj.polygon))
            ring = np.concatenate([ring, ring[:1]]).tolist()
            geometry = {"type": "Polygon", "coordinates": [ring]}
            features.append({"type": "Feature", "properties": {"building_id": len(features)}, "geometry": geometry})
        collection = {
            "type": "FeatureCollection",
            "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
            "features": features,
        }
        geojson = summary.add(root / "geojson" / f"Geo_AOI_1_RIO_img{i}.geojson")
        prepare(geojson).write_text(json.dumps(collection))
        summary.num_images += 1
        summary.num_objects += len(features)
    return summary.finish()


def write_eurosat(
    root: str | Path,
    *,
    seed: int = 0,
    n_per_class: int = 4,
    size: int = 64,
    source_size: int = 256,
    layout: Literal["release", "mtp"] = "release",
    val_fraction: float = 0.25,
) -> DatasetSummary:
    """EuroSAT-RGB-style scene classification: ``size`` x ``size`` JPEGs (scenes drawn at ``source_size`` and
    area-downsampled). Folders are ``EUROSAT_CLASSES`` (the ``SCENE_CLASSES`` capitalised: Agricultural,
    Airport, Forest, Highway, Industrial, Residential, Water; sorted order = label order), files
    ``<ClassName>_<n>.jpg`` with n = 1..n_per_class. Layouts: ``'release'`` = ``root/<ClassName>/...``;
    ``'mtp'`` = ``root/{train,val}/<ClassName>/...`` with the last round(val_fraction * n) images of each class
    (at least 1 when n >= 2) in val.
    """
    root = Path(root)
    gen = SceneGenerator(seed, source_size)
    summary = DatasetSummary("eurosat", root)
    n_val = min(n_per_class - 1, max(1, round(val_fraction * n_per_class))) if n_per_class >= 2 else 0
    for c, (name, folder) in enumerate(zip(SCENE_CLASSES, EUROSAT_CLASSES, strict=True)):
        for n in range(1, n_per_class + 1):
            scene = gen.scene(c * n_per_class + n - 1, scene_class=name)
            image = cv2.resize(scene.image, (size, size), interpolation=cv2.INTER_AREA)
            if layout == "release":
                path = root / folder / f"{folder}_{n}.jpg"
            elif layout == "mtp":
                split = "val" if n > n_per_class - n_val else "train"
                path = root / split / folder / f"{folder}_{n}.jpg"
            else:
                raise ValueError(f"layout must be 'release' or 'mtp', got {layout!r}")
            save_image(summary.add(path), image)
            summary.num_images += 1
    return summary.finish()


def write_levir_cd(
    root: str | Path,
    *,
    seed: int = 0,
    n_train: int = 4,
    n_val: int = 2,
    n_test: int = 2,
    size: int | tuple[int, int] = 256,
) -> DatasetSummary:
    """LEVIR-CD-style change detection: ``root/{train,val,test}/{A,B,label}/<split>_<k>.png`` (k from 1);
    A, B RGB PNG (time 1, time 2), label uint8 PNG with 0 = unchanged, 255 = changed building pixels
    (``SceneGenerator.change_pair``)."""
    root = Path(root)
    gen = SceneGenerator(seed, size)
    summary = DatasetSummary("levir-cd", root)
    for split, k, running in splits({"train": n_train, "val": n_val, "test": n_test}):
        image_a, image_b, change = gen.change_pair(running)
        name = f"{split}_{k + 1}.png"
        save_image(summary.add(root / split / "A" / name), image_a)
        save_image(summary.add(root / split / "B" / name), image_b)
        save_image(summary.add(root / split / "label" / name), (change * 255).astype(np.uint8))
        summary.num_images += 1
    return summary.finish()
