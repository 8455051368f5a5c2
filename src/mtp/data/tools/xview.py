"""Convert the xView release (``xView_train.geojson`` + ``train_images/*.tif``) to MTP's 416-px COCO tiles.

Re-implements the behaviour of the official ``scripts/prepare_xview_dataset.py`` (docs/RECIPES.md#official-scripts):

1. Labels: every feature with ``properties.bounds_imcoords`` "x1,y1,x2,y2" (image pixels) whose
   ``properties.image_id`` (e.g. "1036.tif") exists in the image folder; ``type_id`` → label 0..59 through
   ``XVIEW_TYPE_IDS`` (the official 60-class table, ``XVIEW_CLASSES`` in the same order). Features of other
   type_ids (the 35 ids the official lookup maps to −1), without ``bounds_imcoords`` or of a missing image
   (the release lacks 1395.tif) are skipped and counted. Boxes are clipped to the image; boxes empty after
   clipping (or given with x2 <= x1 / y2 <= y1) are skipped and counted as ``degenerate``. Unparsable
   bounds or type_id are errors naming the feature index.
2. Split: the images with at least one object, sorted by name, are permuted with ``numpy.random.default_rng(
   seed)``; the first ``num_train`` (or ``len − round(val_fraction·len)``) are train, the rest val. The
   official split is an *unseeded* ``np.random.shuffle`` with 700 train images
   (docs/RECIPES.md#traps-in-the-official-repository, item 14; ``num_train=700`` gives the official sizes, not the
   official membership).
3. Tiles of ``tile`` × ``tile`` (416): images smaller than a tile are padded bottom/right with grey
   (128, 128, 128); tile origins along a side of length L are ``linspace(0, L − tile, ceil((L − tile) / tile)
   + 1)`` truncated to ints (no requested overlap, but the last tile is aligned to the border, so tiles
   overlap when L is not a multiple of ``tile``). A box belongs to every tile containing its centre
   (x0 <= cx < x0 + tile, same for y; in an overlap zone that is two tiles); it is clipped to the tile with
   x2 / y2 capped at tile end − 1 (the official rule) and dropped when that leaves it empty
   (``degenerate_in_tile``). Only tiles with at least one box are written, row by row, as PNG
   ``<split>/images/<image stem>_<k>.png`` (k counts the written tiles of the image, from 0).
4. COCO: ``out_dir/xview_{train,val}_coco_format.json`` (the names of the official configs) with ``images``
   {file_name (relative to ``<split>/images``), id (running from 0), width, height}, ``annotations`` {id
   (from 0), image_id, category_id = label, bbox [x, y, w, h] in tile pixels, area w·h, iscrowd 0} and
   ``categories`` ids 0..59 with ``XVIEW_CLASSES`` (the official json, no segmentation key). ``split.json``
   records the seed, the fraction and the image names of each split.

Read the result with ``COCODetection(out/'train'/'images', out/'xview_train_coco_format.json')``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtp.data.datasets.files import image_size
from mtp.data.datasets.horizontal_formats import load_json
from mtp.data.datasets.rotated_formats import AnnotationError, require_dir

__all__ = [
    "XVIEW_CLASSES",
    "XVIEW_TYPE_IDS",
    "convert_xview",
    "read_xview_geojson",
    "split_images",
    "tile_boxes",
    "tile_origins",
    "type_id_to_label",
]

log = logging.getLogger(__name__)

XVIEW_CLASSES: tuple[str, ...] = (
    "Fixed-wing Aircraft", "Small Aircraft", "Cargo Plane", "Helicopter", "Passenger Vehicle", "Small Car", "Bus",
    "Pickup Truck", "Utility Truck", "Truck", "Cargo Truck", "Truck w/Box", "Truck Tractor", "Trailer",
    "Truck w/Flatbed", "Truck w/Liquid", "Crane Truck", "Railway Vehicle", "Passenger Car", "Cargo Car", "Flat Car",
    "Tank car", "Locomotive", "Maritime Vessel", "Motorboat", "Sailboat", "Tugboat", "Barge", "Fishing Vessel",
    "Ferry", "Yacht", "Container Ship", "Oil Tanker", "Engineering Vehicle", "Tower crane", "Container Crane",
    "Reach Stacker", "Straddle Carrier", "Mobile Crane", "Dump Truck", "Haul Truck", "Scraper/Tractor",
    "Front loader/Bulldozer", "Excavator", "Cement Mixer", "Ground Grader", "Hut/Tent", "Shed", "Building",
    "Aircraft Hangar", "Damaged Building", "Facility", "Construction Site", "Vehicle Lot", "Helipad", "Storage Tank",
    "Shipping container lot", "Shipping Container", "Pylon", "Tower",
)  # fmt: skip

# xView type_id of each label (label = position); every other type_id is not a class.
XVIEW_TYPE_IDS: tuple[int, ...] = (
    11, 12, 13, 15, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 29, 32, 33, 34, 35, 36, 37, 38, 40, 41, 42, 44, 45,
    47, 49, 50, 51, 52, 53, 54, 55, 56, 57, 59, 60, 61, 62, 63, 64, 65, 66, 71, 72, 73, 74, 76, 77, 79, 83, 84, 86,
    89, 91, 93, 94,
)  # fmt: skip
_TYPE_ID_TO_LABEL = {t: i for i, t in enumerate(XVIEW_TYPE_IDS)}
OUTPUT_JSON = "xview_{split}_coco_format.json"
PAD_VALUE = 128


def type_id_to_label(type_id: int) -> int | None:
    """Official xView type_id → label 0..59, None for the type_ids that are not among the 60 classes."""
    return _TYPE_ID_TO_LABEL.get(int(type_id))


def _bounds(raw: Any, where: str) -> tuple[float, float, float, float]:
    parts = raw.split(",") if isinstance(raw, str) else raw
    try:
        values = [float(v) for v in parts]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise AnnotationError(f"{where}: malformed bounds_imcoords {raw!r} (expected 'x1,y1,x2,y2')")
    return values[0], values[1], values[2], values[3]


def read_xview_geojson(path: str | Path) -> tuple[dict[str, list[tuple[tuple[float, ...], int]]], dict[str, Any]]:
    """{image name: [(x1, y1, x2, y2), label]} (unclipped, in feature order) and the counts of skipped
    features (``no_bounds``, ``unknown_type_id`` with the ids in ``unknown_type_ids``)."""
    path = Path(path)
    data = load_json(path, "GeoJSON")
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, list) or data.get("type") != "FeatureCollection":
        raise AnnotationError(f"{path}: expected a GeoJSON FeatureCollection with a 'features' list")
    objects: dict[str, list[tuple[tuple[float, ...], int]]] = {}
    no_bounds, unknown = 0, Counter()
    for idx, feature in enumerate(features):
        where = f"{path}: feature {idx}"
        props = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(props, dict) or props.get("bounds_imcoords") in (None, ""):
            no_bounds += 1
            continue
        box = _bounds(props["bounds_imcoords"], where)
        image_id = props.get("image_id")
        if not isinstance(image_id, str) or not image_id:
            raise AnnotationError(f"{where}: missing image_id")
        try:
            type_id = int(props.get("type_id"))
        except (TypeError, ValueError):
            raise AnnotationError(f"{where}: bad type_id {props.get('type_id')!r}") from None
        label = type_id_to_label(type_id)
        if label is None:
            unknown[type_id] += 1
            continue
        objects.setdefault(image_id, []).append((box, label))
    counts = {"features": len(data["features"]), "no_bounds": no_bounds, "unknown_type_id": sum(unknown.values()),
              "unknown_type_ids": dict(sorted(unknown.items()))}  # fmt: skip
    return objects, counts


def tile_origins(length: int, tile: int = 416) -> list[int]:
    """Official origins along one side: ``linspace(0, L − tile, ceil((L − tile) / tile) + 1)`` as ints; [0]
    when L <= tile (the image is padded to a tile)."""
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / tile) + 1
    return [int(v) for v in np.linspace(0, length - tile, n)]


def split_images(
    names: Sequence[str], val_fraction: float = 0.2, seed: int = 0, num_train: int | None = None
) -> tuple[list[str], list[str]]:
    """Seeded train / val split of ``names`` (sorted first; see the module docstring), each part sorted."""
    names = sorted(names)
    if num_train is None:
        if not 0.0 <= val_fraction <= 1.0:
            raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
        num_train = len(names) - round(val_fraction * len(names))
    order = np.random.default_rng(seed).permutation(len(names))
    train = sorted(names[i] for i in order[:num_train])
    val = sorted(names[i] for i in order[num_train:])
    return train, val


def clip_to_image(boxes: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) boxes clipped to [0, W] × [0, H] and the mask of those with positive width and height."""
    out = boxes.astype(np.float64, copy=True).reshape(-1, 4)
    out[:, 0::2] = out[:, 0::2].clip(0, hw[1])
    out[:, 1::2] = out[:, 1::2].clip(0, hw[0])
    return out, (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])


def tile_boxes(
    boxes: np.ndarray, labels: np.ndarray, hw: tuple[int, int], tile: int = 416
) -> tuple[list[tuple[int, int, np.ndarray, np.ndarray]], int]:
    """Assign image-clipped boxes to tiles by centre (module docstring, step 3). Returns the non-empty tiles as
    (x0, y0, boxes in tile pixels (M, 4), labels (M,)), row by row, and the number of boxes dropped as empty
    after the tile clipping."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    tiles, dropped = [], 0
    for y0 in tile_origins(hw[0], tile):
        for x0 in tile_origins(hw[1], tile):
            inside = (cx >= x0) & (cx < x0 + tile) & (cy >= y0) & (cy < y0 + tile)
            if not inside.any():
                continue
            b = boxes[inside] - np.array([x0, y0, x0, y0], np.float64)
            b[:, 0:2] = b[:, 0:2].clip(0, None)
            b[:, 2:4] = b[:, 2:4].clip(None, tile - 1)
            keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            dropped += int((~keep).sum())
            if keep.any():
                tiles.append((x0, y0, b[keep], labels[inside][keep]))
    return tiles, dropped


def _read_bgr(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) BGR (for ``cv2.imwrite``) under the raster rule of :mod:`mtp.data.datasets.rasters`."""
    from mtp.data.datasets.rasters import read_rgb_array

    return np.ascontiguousarray(read_rgb_array(path)[..., ::-1])


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else round(float(v), 4)


def convert_xview(
    geojson: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    num_train: int | None = None,
    tile: int = 416,
) -> dict[str, Any]:
    """Run steps 1–4 of the module docstring; returns a summary dict (counts per split, skipped features)."""
    images_dir = require_dir(Path(images_dir), "image")
    out = Path(out_dir)
    per_image, counts = read_xview_geojson(geojson)
    missing = sorted(n for n in per_image if not (images_dir / n).is_file())
    usable: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]] = {}
    degenerate = 0
    for name in sorted(set(per_image) - set(missing)):
        hw = image_size(images_dir / name)
        boxes, keep = clip_to_image(np.array([b for b, _ in per_image[name]]), hw)
        degenerate += int((~keep).sum())
        if keep.any():
            usable[name] = (boxes[keep], np.array([lab for _, lab in per_image[name]], np.int64)[keep], hw)
    if missing:
        log.warning("xView: %d image(s) named in %s are missing from %s, e.g. %s", len(missing), geojson, images_dir,
                    missing[:5])  # fmt: skip
    if not usable:
        raise ValueError(f"no image of {images_dir} has an object of the 60 xView classes in {geojson}")
    train, val = split_images(list(usable), val_fraction, seed, num_train)
    categories = [{"id": i, "name": n} for i, n in enumerate(XVIEW_CLASSES)]
    summary: dict[str, Any] = {"images": {}, "tiles": {}, "objects": {}}
    in_tile_dropped = 0
    for split, names in (("train", train), ("val", val)):
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        coco: dict[str, Any] = {"images": [], "annotations": [], "categories": categories}
        for name in names:
            boxes, labels, hw = usable[name]
            tiles, dropped = tile_boxes(boxes, labels, hw, tile)
            in_tile_dropped += dropped
            image = _read_bgr(images_dir / name)
            if image.shape[:2] != hw:
                raise ValueError(f"image {images_dir / name}: decoded size {image.shape[:2]} differs from header {hw}")
            padded = np.full((max(hw[0], tile), max(hw[1], tile), 3), PAD_VALUE, np.uint8)
            padded[: hw[0], : hw[1]] = image
            for k, (x0, y0, tboxes, tlabels) in enumerate(tiles):
                file_name = f"{Path(name).stem}_{k}.png"
                if not cv2.imwrite(str(out / split / "images" / file_name), padded[y0 : y0 + tile, x0 : x0 + tile]):
                    raise OSError(f"could not write {out / split / 'images' / file_name}")
                image_id = len(coco["images"])
                coco["images"].append({"file_name": file_name, "id": image_id, "width": tile, "height": tile})
                for (x1, y1, x2, y2), label in zip(tboxes.tolist(), tlabels.tolist(), strict=True):
                    w, h = _num(x2 - x1), _num(y2 - y1)
                    coco["annotations"].append({"id": len(coco["annotations"]), "image_id": image_id,
                                                "category_id": int(label), "bbox": [_num(x1), _num(y1), w, h],
                                                "area": _num(w * h), "iscrowd": 0})  # fmt: skip
        (out / OUTPUT_JSON.format(split=split)).write_text(json.dumps(coco))
        summary["images"][split] = len(names)
        summary["tiles"][split] = len(coco["images"])
        summary["objects"][split] = len(coco["annotations"])
    split_info = {"seed": seed, "val_fraction": val_fraction, "num_train": num_train, "train": train, "val": val}
    (out / "split.json").write_text(json.dumps(split_info, indent=1))
    summary["skipped"] = {"no_bounds": counts["no_bounds"], "unknown_type_id": counts["unknown_type_id"],
                          "missing_image": sum(len(per_image[n]) for n in missing), "degenerate": degenerate,
                          "degenerate_in_tile": in_tile_dropped}  # fmt: skip
    summary["unknown_type_ids"] = counts["unknown_type_ids"]
    summary["missing_images"] = missing
    return summary
