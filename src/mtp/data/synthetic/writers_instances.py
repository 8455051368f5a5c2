"""Writers with instance masks: COCO json (RLE) and the SAMRS pretraining sets (SOTA / SIOR / FAST).

SAMRS layouts follow docs/RECIPES.md#samrs-data (the paths ``main_pretrain.py`` hard-codes); the images, gray
semantic maps, rotated-box files and COCO jsons share the image stem. The scene index is the running image
number (train first, then val).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pycocotools import mask as mask_utils

from mtp.data.synthetic.class_maps import to_dior, to_dota, to_fast
from mtp.data.synthetic.classes import FAST_CLASSES, OBJECT_CLASSES, SIOR_CLASSES, SOTA_CLASSES
from mtp.data.synthetic.scenes import Scene, SceneGenerator, SceneObject
from mtp.data.synthetic.writers_common import (
    OBJECT_SCENES,
    DatasetSummary,
    prepare,
    save_image,
    save_json,
    save_xml,
    splits,
)
from mtp.data.synthetic.writers_detection import dior_xml, dota_lines


def rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of an (H, W) bool mask, ``counts`` as str (json-serialisable)."""
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def coco_annotation(obj: SceneObject, ann_id: int, image_id: int, category_id: int) -> dict:
    """COCO annotation with RLE ``segmentation``, ``bbox`` xywh and ``area`` from the RLE; extra keys ``rbox``
    ([cx, cy, w, h, theta], px/rad, le90) and ``difficult``."""
    seg = rle(obj.mask)
    coded = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": seg,
        "area": float(mask_utils.area(coded)),
        "bbox": [float(v) for v in mask_utils.toBbox(coded)],
        "iscrowd": 0,
        "rbox": [float(v) for v in obj.rbox],
        "difficult": int(obj.difficult),
    }


def write_coco(
    root: str | Path,
    *,
    seed: int = 0,
    n_train: int = 4,
    n_val: int = 2,
    size: int | tuple[int, int] = 256,
    object_scale: float = 1.0,
) -> DatasetSummary:
    """COCO instance segmentation: ``root/{train,val}/<k:06d>.png`` and ``root/annotations/instances_{train,val}.json``
    with ``images`` {id (from 1), file_name, height, width, scene_class}, ``annotations`` (see
    :func:`coco_annotation`, ids from 1) and ``categories`` = ``OBJECT_CLASSES`` with ids 1..6 (COCO style)."""
    root = Path(root)
    gen = SceneGenerator(seed, size, scene_classes=OBJECT_SCENES, object_scale=object_scale)
    summary = DatasetSummary("coco", root)
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(OBJECT_CLASSES)]
    data = {s: {"info": {"description": "mtp synthetic"}, "images": [], "annotations": [], "categories": categories}
            for s in ("train", "val")}  # fmt: skip
    ann_id = 0
    for split, _, k in splits({"train": n_train, "val": n_val}):
        scene = gen.scene(k)
        h, w = scene.semantic.shape
        name = f"{k:06d}.png"
        save_image(summary.add(root / split / name), scene.image)
        image = {"id": k + 1, "file_name": name, "height": h, "width": w, "scene_class": scene.scene_class}
        data[split]["images"].append(image)
        for obj in scene.objects:
            ann_id += 1
            data[split]["annotations"].append(coco_annotation(obj, ann_id, k + 1, obj.label + 1))
        summary.num_images += 1
        summary.num_objects += len(scene.objects)
    for split, content in data.items():
        save_json(summary.add(root / "annotations" / f"instances_{split}.json"), content)
    return summary.finish()


# variant -> (class list, object mapping, base folder, image folder, image suffix, gray folder, box folder, json prefix)
SAMRS_LAYOUTS: dict[str, tuple] = {
    "sota": (SOTA_CLASSES, to_dota, "dotav2_1024_rbb/trainval", "images", ".png", "rhbox_segs_init/gray", "rbbtxts",
             "sota_rbb"),
    "sior": (SIOR_CLASSES, to_dior, "dior", "JPEGImages-trainval", ".jpg", "hbox_segs_trainvaltest_init/gray",
             "Annotations/Oriented Bounding Boxes", "sior"),
    "fast": (FAST_CLASSES, to_fast, "fair1m_1024/trainval", "images", ".png", "rhbox_segs_init/gray", "rbbtxts",
             "fast"),
}  # fmt: skip
SAMRS_SCENES = {"sota": OBJECT_SCENES, "sior": OBJECT_SCENES, "fast": ("airport", "highway", "industrial", "water")}


def samrs_gray(scene: Scene, classes: tuple[str, ...], mapping: Callable) -> np.ndarray:
    """SAMRS gray semantic map (H, W) uint8: pixels of a mapped object = its 0-based index in ``classes``,
    everything else (background and unmapped objects such as buildings) = 255."""
    gray = np.full(scene.semantic.shape, 255, np.uint8)
    for obj in scene.objects:
        name = mapping(obj)
        if name is not None:
            x0, y0 = obj.mask_origin
            h, w = obj.mask_crop.shape
            gray[y0 : y0 + h, x0 : x0 + w][obj.mask_crop] = classes.index(name)
    return gray


def write_samrs(
    root: str | Path,
    *,
    variant: Literal["sota", "sior", "fast"] = "sota",
    seed: int = 0,
    n_train: int = 4,
    n_val: int = 2,
    size: int | tuple[int, int] = 256,
) -> DatasetSummary:
    """One SAMRS pretraining set in the layout MTP's ``main_pretrain.py`` reads (official tiles: 1024 px for
    SOTA/FAST, 800 px for SIOR), with ``base`` = ``dotav2_1024_rbb/trainval`` (SOTA), ``dior`` (SIOR) or
    ``fair1m_1024/trainval`` (FAST) under ``root``:

    * images ``base/images/<stem>.png`` (SIOR: ``base/JPEGImages-trainval/<stem>.jpg``);
    * gray semantic maps ``base/rhbox_segs_init/gray/<stem>.png`` (SIOR: ``hbox_segs_trainvaltest_init/gray``),
      see :func:`samrs_gray`;
    * rotated boxes ``base/rbbtxts/<stem>.txt`` (DOTA txt, no header lines) or, for SIOR, DIOR-R xml in
      ``base/Annotations/Oriented Bounding Boxes/<stem>.xml``;
    * instance jsons ``base/<prefix>_{train,valid}_ins_segmentation.json`` (prefix ``sota_rbb``, ``sior``,
      ``fast``): COCO with ``images`` {id from 0, file_name, height, width, segm_file <stem>.pkl},
      ``annotations`` {id from 0, image_id, category_id 0-based, bbox xywh and area from the RLE, iscrowd 0,
      segmentation RLE}, ``categories`` {id 0..C-1, name}.

    Stems: SOTA ``P<NNNN>``, SIOR ``<NNNNN>`` (from 00001), FAST ``<k>``. Classes: ``SOTA_CLASSES``,
    ``SIOR_CLASSES``, ``FAST_CLASSES`` (objects without a class, e.g. buildings, are left out everywhere).
    """
    if variant not in SAMRS_LAYOUTS:
        raise ValueError(f"variant must be one of {sorted(SAMRS_LAYOUTS)}, got {variant!r}")
    classes, mapping, base, img_dir, suffix, gray_dir, box_dir, prefix = SAMRS_LAYOUTS[variant]
    root = Path(root)
    base_path = root / base
    gen = SceneGenerator(seed, size, scene_classes=SAMRS_SCENES[variant])
    summary = DatasetSummary(f"samrs-{variant}", root)
    categories = [{"id": i, "name": n} for i, n in enumerate(classes)]
    data = {s: {"images": [], "annotations": [], "categories": categories} for s in ("train", "valid")}
    ann_id = 0
    for split, _, k in splits({"train": n_train, "valid": n_val}):
        scene = gen.scene(k)
        stem = {"sota": f"P{k:04d}", "sior": f"{k + 1:05d}", "fast": f"{k}"}[variant]
        h, w = scene.semantic.shape
        save_image(summary.add(base_path / img_dir / f"{stem}{suffix}"), scene.image)
        save_image(summary.add(base_path / gray_dir / f"{stem}.png"), samrs_gray(scene, classes, mapping))
        if variant == "sior":
            ann, _ = dior_xml(scene, f"{stem}.jpg", oriented=True)
            save_xml(summary.add(base_path / box_dir / f"{stem}.xml"), ann)
        else:
            lines = dota_lines(scene, mapping, header=False)
            prepare(summary.add(base_path / box_dir / f"{stem}.txt")).write_text("".join(f"{x}\n" for x in lines))
        image = {"id": k, "file_name": f"{stem}{suffix}", "height": h, "width": w, "segm_file": f"{stem}.pkl"}
        data[split]["images"].append(image)
        for obj in scene.objects:
            name = mapping(obj)
            if name is None:
                continue
            ann = coco_annotation(obj, ann_id, k, classes.index(name))
            del ann["rbox"], ann["difficult"]
            data[split]["annotations"].append(ann)
            ann_id += 1
            summary.num_objects += 1
        summary.num_images += 1
    for split, content in data.items():
        if not content["annotations"]:
            del content["annotations"]
        save_json(summary.add(base_path / f"{prefix}_{split}_ins_segmentation.json"), content)
    return summary.finish()
