"""Parsers of the horizontal-box annotation formats (DIOR VOC xml, COCO json) and the box / mask helpers
shared by :mod:`mtp.data.datasets.horizontal` and the converters of :mod:`mtp.data.tools`.

Boxes are ``x1 y1 x2 y2`` floats in absolute pixels, continuous coordinates (pixel k covers [k, k + 1)), the
mmdet convention: VOC ``xmin ymin xmax ymax`` are used as written (no +1, like the official
``dior_h_2_coco.py``: w = xmax − xmin), COCO ``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]``.
Bad input raises :class:`~mtp.data.datasets.rotated_formats.AnnotationError` (a ``ValueError``) whose
message starts with ``<file>: object <k>`` (xml, 0-based object index) or ``<file>: annotation <k> (id ..)``
(json, 0-based position in ``"annotations"``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtp.data.datasets.rotated_formats import AnnotationError, _float, _text, _xml_root, voc_objects

__all__ = [
    "COCO_SKIP_REASONS",
    "CocoContent",
    "ImageRecord",
    "VocObjects",
    "check_segmentation",
    "clip_boxes",
    "decode_segmentation",
    "load_coco_records",
    "load_json",
    "parse_coco_bbox",
    "parse_voc_hbb",
]

BNDBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class ImageRecord:
    """One image of a horizontal-detection dataset: ``path``, ``image_id`` (int for COCO, the file stem
    otherwise), ``hw`` (H, W) from the annotation (or the image header), ``boxes`` (N, 4) float32 XYXY,
    ``labels`` (N,) int64, ``segmentations``: one COCO segmentation (polygon list or RLE dict) per object when
    masks were requested, else None."""

    path: Path
    image_id: int | str
    hw: tuple[int, int]
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    segmentations: list[Any] | None = None


@dataclass
class VocObjects:
    """Objects of one VOC xml: ``boxes`` (N, 4) float32 as written, ``names`` (lower-cased), ``labels`` (N,)
    int64 (-1 without a ``class_map``), ``hw``: (H, W) from ``<size>`` or None when absent / not positive."""

    boxes: np.ndarray
    names: list[str]
    labels: np.ndarray
    hw: tuple[int, int] | None


def parse_voc_hbb(path: Path, class_map: Mapping[str, int] | None = None) -> VocObjects:
    """DIOR horizontal VOC xml: every ``object`` with ``name`` (stripped, lower-cased like the official
    converter) and ``bndbox`` xmin ymin xmax ymax, in document order. Errors (naming the file and the object
    index): missing name / bndbox / field, non-numeric or non-finite value, ``xmax <= xmin`` or
    ``ymax <= ymin``, unknown class (when ``class_map`` is given)."""
    root = _xml_root(Path(path))
    boxes, names, labels = [], [], []
    hint = "is this a Horizontal Bounding Boxes file?"
    for _, where, name, label, coords in voc_objects(root, Path(path), "bndbox", BNDBOX_FIELDS, class_map, hint):
        x1, y1, x2, y2 = coords
        if x2 <= x1 or y2 <= y1:
            raise AnnotationError(
                f"{where}: empty box xmin={x1:g} ymin={y1:g} xmax={x2:g} ymax={y2:g} (need xmax > xmin, ymax > ymin)"
            )
        boxes.append(coords)
        names.append(name)
        labels.append(label)
    w, h = (_float(_text(root.find(f"size/{t}")) or "") for t in ("width", "height"))
    hw = (int(h), int(w)) if h and w and h > 0 and w > 0 else None
    return VocObjects(np.asarray(boxes, np.float32).reshape(-1, 4), names, np.asarray(labels, np.int64), hw)


def clip_boxes(boxes: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip (N, 4) XYXY boxes to [0, W] × [0, H] (mmdet ``clip_``). Returns (clipped, keep, changed): ``keep``
    = the clipped box still has positive width and height, ``changed`` = clipping moved a coordinate."""
    h, w = hw
    out = boxes.astype(np.float32, copy=True)
    out[:, 0::2] = out[:, 0::2].clip(0, w)
    out[:, 1::2] = out[:, 1::2].clip(0, h)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    changed = np.any(out != boxes, axis=1)
    return out, keep, changed


def load_json(path: Path, what: str = "annotation") -> Any:
    """Parsed json; ``FileNotFoundError`` / ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {what} file {path}: {e}") from e


def parse_coco_bbox(bbox: Any, where: str) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` → (x, y, w, h) floats; error for a wrong length, non-finite values or w, h < 0."""
    if not isinstance(bbox, Sequence) or isinstance(bbox, str) or len(bbox) != 4:
        raise AnnotationError(f"{where}: 'bbox' must be [x, y, w, h], got {bbox!r}")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: non-numeric 'bbox' {bbox!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
        raise AnnotationError(f"{where}: invalid 'bbox' {bbox!r} (finite values, w >= 0 and h >= 0 needed)")
    return x, y, w, h


def decode_segmentation(seg: Any, hw: tuple[int, int]) -> np.ndarray:
    """A COCO segmentation (polygon list, uncompressed RLE with a ``counts`` list, or compressed RLE with a
    ``counts`` string) → (H, W) uint8 {0, 1} mask, decoded with pycocotools."""
    from pycocotools import mask as mask_utils

    h, w = hw
    if isinstance(seg, list):  # polygons [[x1, y1, x2, y2, ...], ...]
        rles = mask_utils.frPyObjects([list(map(float, p)) for p in seg], h, w)
        rle = mask_utils.merge(rles)
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, *seg["size"])
    elif isinstance(seg, dict):
        counts = seg["counts"]
        rle = {"size": list(seg["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"unsupported segmentation {type(seg).__name__}")
    with warnings.catch_warnings():  # pycocotools' numpy-2 copy-keyword DeprecationWarning, once per mask
        warnings.simplefilter("ignore", DeprecationWarning)
        mask = mask_utils.decode(rle)
    if mask.shape != (h, w):
        raise ValueError(f"segmentation of size {mask.shape} for an image of size {(h, w)}")
    return np.ascontiguousarray(mask, dtype=np.uint8)


def check_segmentation(seg: Any, where: str) -> None:
    """Structure check of a COCO segmentation (without decoding); ``AnnotationError`` naming ``where``."""
    if isinstance(seg, list):
        ok = bool(seg) and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg)
        if not ok:
            raise AnnotationError(f"{where}: polygon segmentation must be non-empty lists of >= 3 x, y pairs")
    elif isinstance(seg, dict):
        size = seg.get("size")
        if "counts" not in seg or not (isinstance(size, list) and len(size) == 2):
            raise AnnotationError(f"{where}: RLE segmentation needs 'counts' and 'size' [H, W]")
    else:
        raise AnnotationError(f"{where}: no segmentation (polygons or RLE) for with_masks=True")


# ------------------------------------------------------------------ COCO json

COCO_SKIP_REASONS = ("crowd", "small", "outside", "other_category")


@dataclass
class CocoContent:
    """What :func:`load_coco_records` read: one record per json image (json order), ``classes`` (label order),
    ``category_ids`` (json id of each label), ``num_clipped`` boxes clipped to their image and
    ``num_skipped`` annotations per reason (``COCO_SKIP_REASONS``), ``outside_files``: image file name -> objects
    dropped as outside the image."""

    records: list[ImageRecord]
    classes: tuple[str, ...]
    category_ids: tuple[Any, ...]
    num_clipped: int
    num_skipped: dict[str, int]
    outside_files: dict[str, int] = field(default_factory=dict)


def _categories(data: dict, ann_file: Path, classes: Sequence[str] | None) -> tuple[dict[Any, str], list[Any]]:
    id_to_name: dict[Any, str] = {}
    for k, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise AnnotationError(f"{ann_file}: category {k}: needs 'id' and 'name', got {cat!r}")
        if cat["id"] in id_to_name:
            raise AnnotationError(f"{ann_file}: category {k}: duplicate category id {cat['id']!r}")
        id_to_name[cat["id"]] = str(cat["name"])
    if classes is None:
        return id_to_name, list(id_to_name)
    by_name: dict[str, Any] = {}
    for cid, name in id_to_name.items():
        by_name.setdefault(name, cid)
    unknown = [c for c in classes if c not in by_name]
    if unknown:
        raise ValueError(f"{ann_file}: classes {unknown} are not categories of the json ({list(by_name)})")
    return id_to_name, [by_name[c] for c in classes]


def _images(data: dict, ann_file: Path, images_dir: Path) -> dict[Any, ImageRecord]:
    from mtp.data.datasets.files import image_size

    records: dict[Any, ImageRecord] = {}
    missing: list[Path] = []
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            raise AnnotationError(f"{ann_file}: image {k}: needs 'id' and 'file_name', got {img!r}")
        if img["id"] in records:
            raise AnnotationError(f"{ann_file}: image {k}: duplicate image id {img['id']!r}")
        path = images_dir / str(img["file_name"])
        h, w = img.get("height"), img.get("width")
        if not path.is_file():
            missing.append(path)
            hw = (0, 0)
        elif isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            hw = (h, w)
        else:
            hw = image_size(path)
        records[img["id"]] = ImageRecord(path, img["id"], hw)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"image file not found: {missing[0]}{more}, listed in {ann_file}")
    return records


def _add_annotation(
    k: int,
    ann: Any,
    ann_file: Path,
    records: dict[Any, ImageRecord],
    id_to_name: dict[Any, str],
    cat_to_label: dict[Any, int],
    objects: dict[Any, tuple[list, list, list]],
    with_masks: bool,
) -> str | None:
    """Check one json annotation and add it to ``objects``; returns the skip reason, 'clipped' or None."""
    where = f"{ann_file}: annotation {k} (id {ann.get('id') if isinstance(ann, dict) else None!r})"
    if not isinstance(ann, dict):
        raise AnnotationError(f"{where}: not an object")
    if ann.get("image_id") not in records:
        raise AnnotationError(f"{where}: unknown image_id {ann.get('image_id')!r}")
    if ann.get("category_id") not in id_to_name:
        raise AnnotationError(f"{where}: unknown category_id {ann.get('category_id')!r}")
    x, y, w, h = parse_coco_bbox(ann.get("bbox"), where)
    area = ann.get("area")
    if ann["category_id"] not in cat_to_label:
        return "other_category"
    if ann.get("iscrowd", 0):
        return "crowd"
    if w < 1 or h < 1 or (isinstance(area, (int, float)) and area <= 0):
        return "small"  # mmdet CocoDataset.parse_data_info skips these
    ih, iw = records[ann["image_id"]].hw
    box = (min(max(x, 0.0), iw), min(max(y, 0.0), ih), min(max(x + w, 0.0), iw), min(max(y + h, 0.0), ih))
    if box[2] <= box[0] or box[3] <= box[1]:
        return "outside"
    if with_masks:
        check_segmentation(ann.get("segmentation"), where)
    boxes, labels, segs = objects[ann["image_id"]]
    boxes.append(box)
    labels.append(cat_to_label[ann["category_id"]])
    segs.append(ann.get("segmentation"))
    return "clipped" if box != (x, y, x + w, y + h) else None


def load_coco_records(
    images_dir: Path, ann_file: Path, *, classes: Sequence[str] | None = None, with_masks: bool = False
) -> CocoContent:
    """Read a COCO json (see :class:`mtp.data.datasets.horizontal.COCODetection` for the rules)."""
    ann_file = Path(ann_file)
    data = load_json(ann_file)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise AnnotationError(f"{ann_file}: a COCO json needs 'images' and 'categories' lists")
    id_to_name, chosen = _categories(data, ann_file, classes)
    cat_to_label = {cid: i for i, cid in enumerate(chosen)}
    if not Path(images_dir).is_dir():
        raise FileNotFoundError(f"image folder not found: {images_dir}")
    records = _images(data, ann_file, Path(images_dir))
    objects: dict[Any, tuple[list, list, list]] = {i: ([], [], []) for i in records}
    skipped = dict.fromkeys(COCO_SKIP_REASONS, 0)
    clipped = 0
    errors: list[str] = []
    outside_files: dict[str, int] = {}
    for k, ann in enumerate(data.get("annotations") or []):
        try:
            reason = _add_annotation(k, ann, ann_file, records, id_to_name, cat_to_label, objects, with_masks)
        except AnnotationError as e:
            errors.append(str(e))
            continue
        if reason == "clipped":
            clipped += 1
        elif reason is not None:
            skipped[reason] += 1
        if reason == "outside":
            name = records[ann["image_id"]].path.name
            outside_files[name] = outside_files.get(name, 0) + 1
    if len(errors) == 1:
        raise AnnotationError(errors[0])
    if errors:
        from mtp.data.datasets.files import DatasetProblemsError

        raise DatasetProblemsError(f"{ann_file}: {len(errors)} bad annotations", errors)
    for image_id, record in records.items():
        boxes, labels, segs = objects[image_id]
        record.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        record.labels = np.asarray(labels, np.int64).reshape(-1)
        record.segmentations = segs if with_masks else None
    names = tuple(id_to_name[c] for c in chosen)
    return CocoContent(list(records.values()), names, tuple(chosen), int(clipped), skipped, outside_files)
