"""Convert DIOR horizontal boxes (VOC xml) to the COCO jsons MTP's mmdet configs read.

Behaviour of the official ``scripts/dior_h_2_coco.py`` (docs/RECIPES.md#official-scripts), re-implemented:

* per split (``trainval``, ``test``): ids from ``root/ImageSets/Main/<split>.txt``, images
  ``root/JPEGImages-trainval|test/<id>.jpg``, annotations ``root/Annotations/Horizontal Bounding Boxes/<id>.xml``
  (``root/Annotations/<id>.xml`` is accepted too), objects in document order;
* ``images``: {``file_name`` "<id>.jpg" (relative to the JPEGImages folder), ``id`` (running from 0),
  ``width``, ``height`` (read from the image file)};
* ``annotations``: {``id`` (running from 0 over the split), ``image_id``, ``category_id`` = index of the
  lower-cased name in the 20 DIOR classes + ``first_category_id``, ``bbox`` = [xmin, ymin, w, h] with
  w = xmax − xmin and h = ymax − ymin (**no +1**, as the official script), ``area`` = w·h, ``iscrowd`` 0,
  ``segmentation`` []}; coordinates are written as in the xml (ints stay ints), not clipped;
* ``categories``: [{id, name}] in the official order; ids start at ``first_category_id`` = 0 like the
  official json (mmdet maps ids to labels through the category order, so 1-based ids train the same way);
* output ``out_dir/DIOR_trainval_coco.json`` and ``out_dir/DIOR_test_coco.json``. The official script writes
  them next to ``ImageSets/Main`` while the configs expect them in the dataset root
  (docs/RECIPES.md#traps-in-the-official-repository, item 14): pass ``out_dir=root`` for the config layout.

Unlike the official script, bad xml (unknown class, ``xmax <= xmin``, missing fields) is an error naming the
file and the object index, and a listed but missing image or xml is an error naming the path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtp.data.datasets.files import image_size
from mtp.data.datasets.horizontal import DIOR_CLASSES, dior_ann_dir, dior_split_ids
from mtp.data.datasets.horizontal_formats import parse_voc_hbb
from mtp.data.datasets.rotated_formats import find_image, require_dir

__all__ = ["dior_split_to_coco", "dior_to_coco"]

OUTPUT_NAMES = {"trainval": "DIOR_trainval_coco.json", "test": "DIOR_test_coco.json"}


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else round(float(v), 4)  # xml values went through float32


def dior_split_to_coco(root: str | Path, split: str, first_category_id: int = 0) -> dict[str, Any]:
    """The COCO dict of one DIOR split ('trainval' | 'train' | 'val' | 'test'); see the module docstring."""
    root = require_dir(Path(root), "dataset root")
    images_dir = require_dir(root / ("JPEGImages-test" if split == "test" else "JPEGImages-trainval"), "image")
    ann_dir = dior_ann_dir(root)
    class_map = {n: i for i, n in enumerate(DIOR_CLASSES)}
    images, annotations = [], []
    for image_id, stem in enumerate(dior_split_ids(root, split)):
        xml = ann_dir / f"{stem}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"annotation file not found: {xml}")
        path = find_image(images_dir, stem, (".jpg",))
        h, w = image_size(path)
        images.append({"file_name": path.name, "id": image_id, "width": w, "height": h})
        objects = parse_voc_hbb(xml, class_map)
        for (x1, y1, x2, y2), label in zip(objects.boxes.tolist(), objects.labels.tolist(), strict=True):
            bw, bh = _num(x2 - x1), _num(y2 - y1)
            annotations.append({
                "id": len(annotations),
                "image_id": image_id,
                "category_id": int(label) + first_category_id,
                "bbox": [_num(x1), _num(y1), bw, bh],
                "area": _num(bw * bh),
                "iscrowd": 0,
                "segmentation": [],
            })  # fmt: skip
    categories = [{"id": i + first_category_id, "name": n} for i, n in enumerate(DIOR_CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def dior_to_coco(
    root: str | Path,
    out_dir: str | Path,
    splits: Sequence[str] = ("trainval", "test"),
    first_category_id: int = 0,
) -> dict[str, dict[str, Any]]:
    """Write ``DIOR_<split>_coco.json`` for every split into ``out_dir``; returns {split: {file, images,
    annotations}}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for split in splits:
        data = dior_split_to_coco(root, split, first_category_id)
        path = out / OUTPUT_NAMES.get(split, f"DIOR_{split}_coco.json")
        path.write_text(json.dumps(data))
        summary[split] = {"file": str(path), "images": len(data["images"]), "annotations": len(data["annotations"])}
    return summary
