"""SAMRS pretraining sets (SOTA / SIOR / FAST): class lists, the official folder layouts, and the start-up
reader + consistency check used by :class:`mtp.data.datasets.samrs.SAMRSDataset` (docs/RECIPES.md#samrs-data).

Layout under ``root`` (train and valid share the image / gray / box folders; only the COCO json differs):

* sota: ``dotav2_1024_rbb/trainval/`` + ``images/*.png``, ``rhbox_segs_init/gray/*.png``, ``rbbtxts/*.txt``
  (DOTA txt, no header), ``sota_rbb_{train,valid}_ins_segmentation.json``;
* sior: ``dior/`` + ``JPEGImages-trainval/*.jpg``, ``hbox_segs_trainvaltest_init/gray/*.png``,
  ``Annotations/Oriented Bounding Boxes/*.xml`` (DIOR-R xml), ``sior_{train,valid}_ins_segmentation.json``;
* fast: ``fair1m_1024/trainval/`` + the sota folders, ``fast_{train,valid}_ins_segmentation.json``.

The json ``file_name`` stem names the gray map (``<stem>.png``) and the box file (``<stem>.txt|.xml``).

Consistency check (:func:`read_samrs`): every problem of the whole split is collected and reported in ONE
:class:`SAMRSConsistencyError` (counts + the first file names per kind) before training starts: json images
without image / gray / box file, duplicate image ids, sizes that disagree (json vs image header vs gray-map
header vs RLE ``size``), annotations of unknown images or with a category id that the json does not declare,
malformed bbox / segmentation, unreadable box files or unknown rotated-box class names, gray maps that are not
single-channel or (``check='full'``) hold values other than 0..C-1 and 255.

Annotation filter (mmdet ``CocoDataset`` + ``FilterAnnotations`` at load, counted in ``num_skipped`` and
logged): ``ignore`` flag, no overlap with the image, ``area <= 0`` or ``w < 1`` or ``h < 1``, a category whose
name is not in the class list (categories are matched by *name*), ``iscrowd`` (the official reader makes these
ignored instances, which no MTP loss uses; they are dropped here). Degenerate quads of the box files are
skipped and counted (``num_degenerate``), quads whose bounding box has no area inside the image are dropped and
counted (``num_rotated_outside``; the rule of every reader), both logged with the box files; self-crossing
quads are reordered (:mod:`mtp.data.datasets.rotated_formats`).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtp.data.datasets.files import image_size
from mtp.data.datasets.horizontal_formats import load_json, parse_coco_bbox
from mtp.data.datasets.rotated import DIOR_R_CLASSES, FAIR1M_CLASSES
from mtp.data.datasets.rotated_formats import (
    AnnotationError,
    outside_image,
    parse_dior_xml,
    parse_dota_txt,
    require_dir,
)

__all__ = [
    "FAST_CLASSES",
    "SAMRS_IMAGE_COUNTS",
    "SAMRS_LAYOUTS",
    "SIOR_CLASSES",
    "SOTA_CLASSES",
    "SAMRSConsistencyError",
    "SAMRSLayout",
    "SAMRSRecord",
    "read_samrs",
]

log = logging.getLogger(__name__)

# SOTA: the DOTA-2.0 classes in SAMRS order (label index = position).
SOTA_CLASSES: tuple[str, ...] = (
    "large-vehicle", "swimming-pool", "helicopter", "bridge", "plane", "ship", "soccer-ball-field",
    "basketball-court", "ground-track-field", "small-vehicle", "baseball-diamond", "tennis-court", "roundabout",
    "storage-tank", "harbor", "container-crane", "airport", "helipad",
)  # fmt: skip
SIOR_CLASSES: tuple[str, ...] = DIOR_R_CLASSES  # the 20 DIOR classes
FAST_CLASSES: tuple[str, ...] = FAIR1M_CLASSES  # the 37 hyphenated FAIR1M-2.0 names

# Image counts hard-coded by the official ``ratio`` batch mode.
SAMRS_IMAGE_COUNTS: dict[str, int] = {"sota": 17480, "sior": 11725, "fast": 64147}


@dataclass(frozen=True)
class SAMRSLayout:
    """Folders of one SAMRS set relative to the data root (see the module docstring)."""

    classes: tuple[str, ...]
    base: str
    images: str
    gray: str
    boxes: str
    box_suffix: str  # ".txt" (DOTA) or ".xml" (DIOR-R)
    json_prefix: str

    def json_path(self, root: Path, split: str) -> Path:
        return Path(root) / self.base / f"{self.json_prefix}_{split}_ins_segmentation.json"


SAMRS_LAYOUTS: dict[str, SAMRSLayout] = {
    "sota": SAMRSLayout(SOTA_CLASSES, "dotav2_1024_rbb/trainval", "images", "rhbox_segs_init/gray", "rbbtxts",
                        ".txt", "sota_rbb"),
    "sior": SAMRSLayout(SIOR_CLASSES, "dior", "JPEGImages-trainval", "hbox_segs_trainvaltest_init/gray",
                        "Annotations/Oriented Bounding Boxes", ".xml", "sior"),
    "fast": SAMRSLayout(FAST_CLASSES, "fair1m_1024/trainval", "images", "rhbox_segs_init/gray", "rbbtxts", ".txt",
                        "fast"),
}  # fmt: skip

SKIP_REASONS = ("ignore", "outside", "small", "unknown_category", "crowd")


class SAMRSConsistencyError(ValueError):
    """The json, images, gray maps and box files of a SAMRS split disagree; the message lists every kind of
    mismatch with its count and the first few files."""


@dataclass
class SAMRSRecord:
    """One image: paths, json ``image_id``, ``hw`` (H, W); instances: ``boxes`` (N, 4) float32 xyxy pixels
    (COCO bbox, not clipped), ``labels`` (N,) int64, ``rles`` N COCO RLE dicts (``counts`` str or list);
    rotated boxes: ``polys`` (M, 8) float32 quads in pixels, ``rlabels`` (M,) int64."""

    image_path: Path
    gray_path: Path
    box_path: Path
    image_id: Any
    hw: tuple[int, int]
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    rles: list[dict] = field(default_factory=list)
    polys: np.ndarray = field(default_factory=lambda: np.zeros((0, 8), np.float32))
    rlabels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))


class _Problems:
    """Mismatches by kind; :meth:`raise_if_any` raises one error summarising all of them."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = defaultdict(list)

    def add(self, kind: str, item: Any) -> None:
        self.items[kind].append(str(item))

    def raise_if_any(self, what: str, shown: int = 5) -> None:
        if not self.items:
            return
        total = sum(len(v) for v in self.items.values())
        lines = [f"{what}: {total} mismatch(es) between the json, images, gray maps and box files:"]
        for kind, items in self.items.items():
            more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
            lines.append(f"  - {kind}: {len(items)}, e.g. {', '.join(items[:shown])}{more}")
        raise SAMRSConsistencyError("\n".join(lines))


def _listing(folder: Path) -> set[str]:
    return set(os.listdir(folder))


def _gray_header(path: Path) -> tuple[tuple[int, int], str]:
    from PIL import Image as PILImage

    with PILImage.open(path) as img:
        return (img.height, img.width), img.mode


def _check_gray_values(path: Path, num_classes: int) -> np.ndarray:
    """Values of the gray map that are neither 0..C-1 nor 255."""
    import cv2

    gray = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if gray is None or gray.ndim != 2:
        return np.array([-1])
    values = np.unique(gray)
    return values[(values >= num_classes) & (values != 255)]


def _read_images(
    data: dict, base: Path, layout: SAMRSLayout, check: str, problems: _Problems
) -> dict[Any, SAMRSRecord]:
    img_dir = require_dir(base / layout.images, "image")
    gray_dir = require_dir(base / layout.gray, "gray semantic map")
    box_dir = require_dir(base / layout.boxes, "rotated-box")
    listed = {d: _listing(d) for d in (img_dir, gray_dir, box_dir)}

    def exists(path: Path) -> bool:
        names = listed.get(path.parent)
        return path.name in names if names is not None else path.is_file()

    records: dict[Any, SAMRSRecord] = {}
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            problems.add("image entry without 'id' / 'file_name'", f"images[{k}]")
            continue
        name, stem = str(img["file_name"]), Path(str(img["file_name"])).stem
        if img["id"] in records:
            problems.add("duplicate image id", f"{name} (id {img['id']!r})")
            continue
        paths = {
            "image": img_dir / name,
            "gray map": gray_dir / f"{stem}.png",
            "box file": box_dir / f"{stem}{layout.box_suffix}",
        }
        found = True
        for what, path in paths.items():
            if not exists(path):
                problems.add(f"{what} missing", path.name if what == "image" else f"{path.name} (for {name})")
                found = False
        h, w = img.get("height"), img.get("width")
        if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
            problems.add("json height/width missing or not positive", name)
            continue
        record = SAMRSRecord(paths["image"], paths["gray map"], paths["box file"], img["id"], (h, w))
        records[img["id"]] = record
        if not found or check == "files":
            continue
        try:
            ihw = image_size(record.image_path)
            ghw, mode = _gray_header(record.gray_path)
        except (OSError, ValueError) as e:
            problems.add("unreadable image / gray map", f"{name}: {e}")
            continue
        if ihw != (h, w):
            problems.add("image size != json size", f"{name} ({ihw[0]}x{ihw[1]} vs {h}x{w})")
        if ghw != (h, w):
            problems.add("gray-map size != json size", f"{record.gray_path.name} ({ghw[0]}x{ghw[1]} vs {h}x{w})")
        if mode not in ("L", "P"):
            problems.add("gray map not single-channel 8-bit", f"{record.gray_path.name} (mode {mode})")
        elif check == "full":
            bad = _check_gray_values(record.gray_path, len(layout.classes))
            if bad.size:
                problems.add(f"gray values out of range (0..{len(layout.classes) - 1}, 255)",
                             f"{record.gray_path.name} {bad[:5].tolist()}")  # fmt: skip
    return records


def _read_boxes(records: dict[Any, SAMRSRecord], layout: SAMRSLayout, problems: _Problems) -> dict[str, int]:
    """Read every box file into its record; returns {'degenerate': n, 'outside': n} quads dropped (logged)."""
    class_map = {n: i for i, n in enumerate(layout.classes)}
    parser = parse_dota_txt if layout.box_suffix == ".txt" else parse_dior_xml
    degenerate, outside, outside_files = 0, 0, []
    for record in records.values():
        if not record.box_path.is_file():
            continue  # reported as missing
        try:
            ann = parser(record.box_path)
        except AnnotationError as e:
            problems.add("unreadable box file", str(e))
            continue
        unknown = sorted({n for n in ann.names if n not in class_map})
        if unknown:
            problems.add("unknown rotated-box class", f"{record.box_path.name} {unknown[:3]}")
            continue
        degenerate += len(ann.skipped)
        keep = ~outside_image(ann.polys, record.hw) if len(ann.polys) else np.zeros(0, bool)
        if not keep.all():
            outside += int((~keep).sum())
            outside_files.append(f"{record.box_path.name} ({int((~keep).sum())})")
        record.polys = ann.polys[keep]
        record.rlabels = np.asarray([class_map[n] for n, k in zip(ann.names, keep, strict=True) if k], np.int64)
    if outside_files:
        more = " ..." if len(outside_files) > 10 else ""
        log.warning("%d rotated box file(s) with quads entirely outside their image (dropped): %s%s",
                    len(outside_files), ", ".join(outside_files[:10]), more)  # fmt: skip
    return {"degenerate": degenerate, "outside": outside}


def _read_annotations(data: dict, records: dict, classes: Sequence[str], problems: _Problems) -> dict:
    cat_names: dict[Any, str] = {}
    for k, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            problems.add("category without 'id' / 'name'", f"categories[{k}]")
        else:
            cat_names[cat["id"]] = str(cat["name"])
    cat_to_label = {cid: classes.index(n) for cid, n in cat_names.items() if n in classes}
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    outside_images: dict[str, int] = {}
    objects: dict[Any, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
    for k, ann in enumerate(data.get("annotations") or []):
        where = f"annotation {k} (id {ann.get('id') if isinstance(ann, dict) else None!r})"
        if not isinstance(ann, dict) or ann.get("image_id") not in records:
            problems.add("annotation of an unknown image_id", where)
            continue
        record = records[ann["image_id"]]
        if ann.get("category_id") not in cat_names:
            problems.add("category id out of range (not in 'categories')", f"{where}: {ann.get('category_id')!r}")
            continue
        try:
            x, y, w, h = parse_coco_bbox(ann.get("bbox"), where)
        except AnnotationError as e:
            problems.add("malformed bbox", e)
            continue
        seg = ann.get("segmentation")
        if not (isinstance(seg, dict) and "counts" in seg and isinstance(seg.get("size"), list)):
            problems.add("segmentation is not an RLE dict", where)
            continue
        if [int(v) for v in seg["size"]] != list(record.hw):
            problems.add(
                "RLE size != image size", f"{where} of {record.image_path.name}: {seg['size']} vs {list(record.hw)}"
            )
            continue
        ih, iw = record.hw
        inter_w = max(0.0, min(x + w, iw) - max(x, 0.0))
        inter_h = max(0.0, min(y + h, ih) - max(y, 0.0))
        area = ann.get("area", w * h)
        if ann.get("ignore", False):
            reason = "ignore"
        elif inter_w * inter_h == 0:
            reason = "outside"
            outside_images[record.image_path.name] = outside_images.get(record.image_path.name, 0) + 1
        elif not isinstance(area, (int, float)) or area <= 0 or w < 1 or h < 1:
            reason = "small"
        elif ann["category_id"] not in cat_to_label:
            reason = "unknown_category"
        elif ann.get("iscrowd", 0):
            reason = "crowd"
        else:
            boxes, labels, rles = objects[ann["image_id"]]
            boxes.append((x, y, x + w, y + h))
            labels.append(cat_to_label[ann["category_id"]])
            rles.append(seg)
            continue
        skipped[reason] += 1
    if outside_images:
        shown = ", ".join(f"{f} ({n})" for f, n in list(outside_images.items())[:10])
        log.warning("instances outside their image dropped in %d image(s): %s%s", len(outside_images), shown,
                    " ..." if len(outside_images) > 10 else "")  # fmt: skip
    for image_id, (boxes, labels, rles) in objects.items():
        rec = records[image_id]
        rec.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        rec.labels = np.asarray(labels, np.int64)
        rec.rles = rles
    return skipped


def read_samrs(root: str | Path, variant: str, split: str, check: str = "headers") -> tuple[list[SAMRSRecord], dict]:
    """Read and cross-check one SAMRS split. ``check``: 'files' (existence only, directory listings),
    'headers' (+ image / gray-map sizes from the file headers; default), 'full' (+ every gray value).

    Returns (records in json order, stats ``{"skipped": {reason: n}, "degenerate": n, "rotated_outside": n}``); raises
    :class:`SAMRSConsistencyError` listing all mismatches, ``FileNotFoundError`` for a missing folder / json."""
    if variant not in SAMRS_LAYOUTS:
        raise ValueError(f"variant must be one of {sorted(SAMRS_LAYOUTS)}, got {variant!r}")
    if check not in ("files", "headers", "full"):
        raise ValueError(f"check must be 'files', 'headers' or 'full', got {check!r}")
    layout = SAMRS_LAYOUTS[variant]
    base = require_dir(Path(root) / layout.base, f"SAMRS {variant} base")
    json_path = layout.json_path(Path(root), split)
    data = load_json(json_path)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise AnnotationError(f"{json_path}: a COCO json needs 'images' and 'categories' lists")
    problems = _Problems()
    records = _read_images(data, base, layout, check, problems)
    quads = _read_boxes(records, layout, problems)
    degenerate = quads["degenerate"]
    skipped = _read_annotations(data, records, layout.classes, problems)
    problems.raise_if_any(f"SAMRS {variant} {split} ({json_path})")
    if not records:
        raise ValueError(f"{json_path}: no images")
    if any(skipped.values()) or degenerate:
        log.warning("SAMRS %s %s: skipped annotations %s; %d degenerate rotated quad(s) skipped", variant, split,
                    {k: v for k, v in skipped.items() if v}, degenerate)  # fmt: skip
    stats = {"skipped": skipped, "degenerate": degenerate, "rotated_outside": quads["outside"]}
    return list(records.values()), stats
