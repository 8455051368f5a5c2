"""Horizontal-box detection readers: DIOR (VOC xml) and generic COCO json (DIOR / xView converted, any COCO set).

Sample dict returned by ``dataset[i]`` (before ``transform``):

* ``"image"``: ``tv_tensors.Image`` uint8 (3, H, W) RGB (raster rule ``raster``, :mod:`mtp.data.datasets.rasters`);
* ``"boxes"``: ``tv_tensors.BoundingBoxes`` float32 (N, 4), format ``XYXY``, absolute pixels, continuous
  coordinates (pixel k covers [k, k + 1); mmdet / torchvision), ``canvas_size=(H, W)``, always inside the
  image (clipped when read, see below);
* ``"labels"``: int64 (N,), 0-based index in ``classes``;
* ``"masks"``: ``tv_tensors.Mask`` uint8 (N, H, W) {0, 1}: only for :class:`COCODetection` with
  ``with_masks=True`` (decoded lazily with pycocotools);
* ``"image_path"``: str; ``"image_id"``: the json image id (int) for COCO, the file stem (str) for DIOR;
* ``"ori_hw"``: (H, W) of the image on disk.

Annotations are parsed when the dataset is built (like mmdet's ``load_data_list``), so bad files fail early
with :class:`~mtp.data.datasets.rotated_formats.AnnotationError` naming the file and the object index (xml)
or annotation index (json) — one :class:`~mtp.data.datasets.files.DatasetProblemsError` listing all of them
when there are several; images or annotation files that are listed but missing raise ``FileNotFoundError``
naming the path(s). Boxes reaching outside the image are clipped to it (mmdet clips after
its resize, which gives the same boxes) and counted in ``num_clipped``; boxes with nothing left inside are
dropped and counted in ``num_skipped["outside"]``; both are logged once per dataset.

Training filter (mmdet ``filter_cfg=dict(filter_empty_gt=True, min_size=32)``): ``filter_empty=True`` hides
images without objects and ``min_size=32`` hides images whose shorter side is below 32 px; the numbers hidden
are in ``num_filtered`` and logged once per change. Both are settable (:meth:`set_filter` sets both at once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mtp.data.datasets.files import DatasetProblemsError, image_size, read_rgb
from mtp.data.datasets.horizontal_formats import (
    ImageRecord,
    clip_boxes,
    decode_segmentation,
    load_coco_records,
    parse_voc_hbb,
)
from mtp.data.datasets.rasters import DEFAULT_RULE, RasterRule, check_raster
from mtp.data.datasets.rotated import DIOR_R_CLASSES
from mtp.data.datasets.rotated_formats import AnnotationError, find_image, require_dir
from mtp.data.datasets.segmentation import _default_palette

__all__ = ["DIOR", "DIOR_CLASSES", "COCODetection", "HorizontalDetectionDataset", "dior_ann_dir", "dior_split_ids"]

log = logging.getLogger(__name__)

# Official order (docs/CONVENTIONS.md#class-orders), the same 20 names as DIOR-R; the release xml spellings
# ("Expressway-Service-area", "Expressway-toll-station") become these once lower-cased.
DIOR_CLASSES: tuple[str, ...] = DIOR_R_CLASSES

Transform = Callable[[dict[str, Any]], dict[str, Any]]


class HorizontalDetectionDataset(Dataset):
    """Base class over parsed :class:`~mtp.data.datasets.horizontal_formats.ImageRecord` objects.

    ``transform`` (settable) is applied last to the sample dict (see the module docstring); ``filter_empty``
    and ``min_size`` (settable) select the visible images; ``with_masks`` adds ``"masks"`` when the records
    carry segmentations. ``num_clipped`` / ``num_skipped`` (reason → count) report what the reader clipped
    or left out. ``raster``: how images become uint8 RGB (:class:`~mtp.data.datasets.rasters.RasterRule`).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        classes: Sequence[str],
        *,
        palette: Sequence[Sequence[int]] | None = None,
        transform: Transform | None = None,
        filter_empty: bool = False,
        min_size: int = 0,
        with_masks: bool = False,
        num_clipped: int = 0,
        num_skipped: dict[str, int] | None = None,
        raster: RasterRule | None = None,
    ) -> None:
        self.classes = tuple(classes)
        self.raster = raster or DEFAULT_RULE
        self.palette = tuple(tuple(c) for c in palette) if palette is not None else _default_palette(len(classes))
        if len(self.palette) != len(self.classes):
            raise ValueError(f"{len(self.classes)} classes but {len(self.palette)} palette colours")
        self.records = list(records)
        self.transform = transform
        self.with_masks = with_masks
        self.num_clipped = int(num_clipped)
        self.num_skipped = dict(num_skipped or {})
        self._filter_empty, self._min_size = False, 0
        self._index = list(range(len(self.records)))
        self.num_filtered = {"empty": 0, "small": 0}
        self.set_filter(filter_empty, min_size)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def filter_empty(self) -> bool:
        return self._filter_empty

    @filter_empty.setter
    def filter_empty(self, value: bool) -> None:
        self.set_filter(value, self._min_size)

    @property
    def min_size(self) -> int:
        return self._min_size

    @min_size.setter
    def min_size(self, value: int) -> None:
        self.set_filter(self._filter_empty, value)

    def set_filter(self, filter_empty: bool, min_size: int = 0) -> None:
        """mmdet ``filter_empty_gt`` / ``min_size``: hide images without objects (when ``filter_empty``) and
        images whose shorter side is below ``min_size``; counts in ``num_filtered``, logged once."""
        filter_empty, min_size = bool(filter_empty), int(min_size)
        empty = small = 0
        index = []
        for i, r in enumerate(self.records):
            if filter_empty and not len(r.labels):
                empty += 1
            elif min(r.hw) < min_size:
                small += 1
            else:
                index.append(i)
        if not index and self.records:
            raise ValueError(f"filter: none of the {len(self.records)} images is left (without objects: {empty}, "
                             f"side < {min_size} px: {small})")  # fmt: skip
        self._filter_empty, self._min_size = filter_empty, min_size
        self._index = index  # a new list: shallow copies of the dataset keep their own selection
        self.num_filtered = {"empty": empty, "small": small}
        if empty or small:
            log.info("filter: %d of %d image(s) hidden (%d without objects, %d with a side < %d px)",
                     empty + small, len(self.records), empty, small, min_size)  # fmt: skip

    def _log_load_counts(self, name: str, outside_files: Mapping[str, int] | None = None) -> None:
        skipped = {k: v for k, v in self.num_skipped.items() if v}
        if self.num_clipped or skipped:
            log.warning("%s: %d box(es) clipped to their image; skipped objects: %s", name, self.num_clipped,
                        skipped or "none")  # fmt: skip
        if outside_files:
            shown = ", ".join(f"{f} ({n})" for f, n in list(outside_files.items())[:10])
            more = " ..." if len(outside_files) > 10 else ""
            log.warning("%s: objects lying outside their image dropped in %d file(s): %s%s", name, len(outside_files),
                        shown, more)  # fmt: skip

    def __len__(self) -> int:
        return len(self._index)

    def load_sample(self, index: int) -> dict[str, Any]:
        """The sample dict before ``transform`` (see the module docstring)."""
        return self._load(self.records[self._index[index]])

    @staticmethod
    def _size_error(record: ImageRecord, hw: tuple[int, int]) -> ValueError:
        return ValueError(f"{record.path}: image is {hw[0]}x{hw[1]} (HxW) but its annotation says "
                          f"{record.hw[0]}x{record.hw[1]}")  # fmt: skip

    def _load(self, record: ImageRecord) -> dict[str, Any]:
        image = read_rgb(record.path, self.raster)
        hw = (int(image.shape[-2]), int(image.shape[-1]))
        if hw != tuple(record.hw):
            raise self._size_error(record, hw)
        sample: dict[str, Any] = {
            "image": tv_tensors.Image(image),
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(record.boxes.copy()), format="XYXY", canvas_size=hw),
            "labels": torch.from_numpy(record.labels.copy()),
            "image_path": str(record.path),
            "image_id": record.image_id,
            "ori_hw": hw,
        }
        if self.with_masks and record.segmentations is not None:
            masks = np.zeros((len(record.segmentations), *hw), np.uint8)
            for k, seg in enumerate(record.segmentations):
                try:
                    masks[k] = decode_segmentation(seg, hw)
                except (ValueError, TypeError, KeyError) as e:
                    raise ValueError(f"{record.path}: cannot decode the segmentation of object {k}: {e}") from e
            sample["masks"] = tv_tensors.Mask(torch.from_numpy(masks))
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_sample(index)
        return self.transform(sample) if self.transform is not None else sample

    def scan_size(self) -> int:
        """Number of images the data check visits (all records, filtered or not)."""
        return len(self.records)

    def check_item(self, index: int, level: str = "quick") -> None:
        """Raise (naming the file) when image ``index`` (of all records) is unreadable, truncated, refused by the
        raster rule or not of the size its annotation states; 'full' also decodes it (and its instance masks)."""
        record = self.records[index]
        if level == "full":
            self._load(record)
            return
        hw = check_raster(record.path, self.raster).hw
        if hw != tuple(record.hw):
            raise self._size_error(record, hw)

    def label_counts(self) -> np.ndarray:
        """Objects per class over the visible images, int64 (num_classes,)."""
        labels = [self.records[i].labels for i in self._index]
        return np.bincount(np.concatenate([np.zeros(0, np.int64), *labels]), minlength=self.num_classes)


def dior_split_ids(root: Path, split: str) -> list[str]:
    """Image ids of a DIOR split from ``root/ImageSets/Main``: ``trainval.txt`` for 'trainval' (what the official
    converter reads; ``train.txt`` + ``val.txt`` when it is absent), else ``<split>.txt``."""
    sets = Path(root) / "ImageSets" / "Main"
    lists = [split]
    if split == "trainval" and not (sets / "trainval.txt").is_file():
        lists = ["train", "val"]
    ids: list[str] = []
    for name in lists:
        path = sets / f"{name}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"split list not found: {path}")
        ids += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"no image ids in {', '.join(str(sets / f'{s}.txt') for s in lists)}")
    return ids


def dior_ann_dir(root: Path) -> Path:
    """``root/Annotations/Horizontal Bounding Boxes`` (DIOR-R era release) or ``root/Annotations`` (original)."""
    ann = Path(root) / "Annotations"
    hbb = ann / "Horizontal Bounding Boxes"
    return hbb if hbb.is_dir() else require_dir(ann, "annotation")


class DIOR(HorizontalDetectionDataset):
    """DIOR horizontal boxes, 20 classes (``DIOR_CLASSES``): ``root/ImageSets/Main/<split>.txt`` (ids),
    ``root/JPEGImages-trainval/<id>.jpg`` ('trainval' | 'train' | 'val') or ``root/JPEGImages-test/<id>.jpg``
    ('test'), and ``root/Annotations/Horizontal Bounding Boxes/<id>.xml`` (or ``root/Annotations/<id>.xml``).

    Names are stripped and lower-cased (the official converter); unknown names, missing fields and boxes with
    ``xmax <= xmin`` or ``ymax <= ymin`` are errors naming the xml and the object index. The image size comes
    from the xml ``<size>`` (the image header when absent); boxes are clipped to it (module docstring).
    """

    SPLITS = ("trainval", "train", "val", "test")

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        *,
        transform: Transform | None = None,
        filter_empty: bool = False,
        min_size: int = 0,
        palette: Sequence[Sequence[int]] | None = None,
        raster: RasterRule | None = None,
    ) -> None:
        if split not in self.SPLITS:
            raise ValueError(f"split must be one of {self.SPLITS}, got {split!r}")
        root = require_dir(Path(root), "dataset root")
        ids = dior_split_ids(root, split)
        images_dir = require_dir(root / ("JPEGImages-test" if split == "test" else "JPEGImages-trainval"), "image")
        ann_dir = dior_ann_dir(root)
        class_map = {n: i for i, n in enumerate(DIOR_CLASSES)}
        records, clipped, outside, errors, missing, outside_files = [], 0, 0, [], [], {}
        for image_id in ids:
            ann = ann_dir / f"{image_id}.xml"
            if not ann.is_file():
                missing.append(f"annotation file not found: {ann}")
                continue
            try:
                path = find_image(images_dir, image_id, (".jpg", ".png", ".tif"))
            except FileNotFoundError as e:
                missing.append(str(e))
                continue
            try:
                objects = parse_voc_hbb(ann, class_map)
                hw = objects.hw or image_size(path)
            except (AnnotationError, ValueError) as e:
                errors.append(e)
                continue
            boxes, keep, changed = clip_boxes(objects.boxes, hw)
            clipped += int((changed & keep).sum())
            outside += int((~keep).sum())
            if not keep.all():
                outside_files[ann.name] = int((~keep).sum())
            records.append(ImageRecord(path, image_id, hw, boxes[keep], objects.labels[keep]))
        if missing:
            raise FileNotFoundError(f"{len(missing)} file(s) of the ids of split {split!r} not found:\n  "
                                    + "\n  ".join(missing[:10]) + ("\n  ..." if len(missing) > 10 else ""))  # fmt: skip
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise DatasetProblemsError(f"{len(errors)} bad annotation files", [str(e) for e in errors])
        self.split = split
        super().__init__(records, DIOR_CLASSES, palette=palette, transform=transform, filter_empty=filter_empty,
                         min_size=min_size, num_clipped=clipped, num_skipped={"outside": outside},
                         raster=raster)  # fmt: skip
        self._log_load_counts(f"DIOR {split} ({root})", outside_files)


class COCODetection(HorizontalDetectionDataset):
    """A COCO json (``ann_file``) with its images in ``images_dir`` (``file_name`` relative to it), read with
    the rules of mmdet's ``CocoDataset``:

    * labels: the json's categories in json order become 0..C-1 (``classes`` = their names, ``category_ids``
      = their json ids; mmdet ``cat2label``); ``classes=[...]`` selects and orders categories by name instead
      (annotations of other categories are skipped, ``num_skipped["other_category"]``);
    * ``bbox`` [x, y, w, h] → XYXY [x, y, x + w, y + h]; annotations with w < 1, h < 1 or area <= 0 are
      skipped (``"small"``), as mmdet does; boxes are clipped / dropped (``"outside"``) as in the module
      docstring; a malformed bbox (wrong length, non-finite, negative size) is an error;
    * ``iscrowd`` annotations are not training targets: dropped and counted (``"crowd"``);
    * an annotation naming an unknown image or category id is an error; a listed image whose file is missing
      is a ``FileNotFoundError`` naming the path;
    * ``with_masks=True``: polygon and RLE (compressed / uncompressed) segmentations are decoded with
      pycocotools into ``"masks"``; an object without a segmentation is then an error.
    """

    def __init__(
        self,
        images_dir: str | Path,
        ann_file: str | Path,
        with_masks: bool = False,
        *,
        classes: Sequence[str] | None = None,
        transform: Transform | None = None,
        filter_empty: bool = False,
        min_size: int = 0,
        palette: Sequence[Sequence[int]] | None = None,
        raster: RasterRule | None = None,
    ) -> None:
        content = load_coco_records(Path(images_dir), Path(ann_file), classes=classes, with_masks=with_masks)
        self.ann_file = Path(ann_file)
        self.category_ids = content.category_ids
        super().__init__(content.records, content.classes, palette=palette, transform=transform,
                         filter_empty=filter_empty, min_size=min_size, with_masks=with_masks,
                         num_clipped=content.num_clipped, num_skipped=content.num_skipped, raster=raster)  # fmt: skip
        self._log_load_counts(str(self.ann_file), content.outside_files)
