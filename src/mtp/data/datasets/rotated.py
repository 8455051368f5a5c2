"""Oriented-object detection readers: DOTA (v1.0 / v1.5 / v2.0), DIOR-R and FAIR1M-2.0.

Sample dict returned by ``dataset[i]`` (before ``transform``):

* ``"image"``: ``tv_tensors.Image`` uint8 (3, H, W) RGB;
* ``"boxes"``: ``tv_tensors.BoundingBoxes`` float32 (N, 8), format ``XYXYXYXY``, ``canvas_size=(H, W)``,
  ``clamping_mode=None`` (polygons are never clipped): the annotated quadrilaterals x1 y1 … x4 y4 in pixels
  as written in the file (no minAreaRect here; :class:`mtp.data.transforms.rotated.ToRBoxes` converts);
* ``"labels"``: int64 (N,), 0-based index in ``classes`` (the official order, docs/CONVENTIONS.md#class-orders);
* ``"difficult"``: bool (N,) (DOTA difficult 1, and 2 = truncated by the splitter; always False for DIOR-R
  and FAIR1M). Like mmrotate (``diff_thr`` 100), difficult objects are ordinary ground truth;
* ``"image_path"``: str; ``"image_id"``: str, the file stem (split patches: ``P0000__1024__0___824``);
* ``"ori_hw"``: (H, W) of the image on disk.

All annotation files are parsed when the dataset is built (like mmrotate's ``load_data_list``), so bad
files fail early with :class:`~mtp.data.datasets.rotated_formats.AnnotationError` naming the file and the
line (txt) or object index (xml); missing images, folders or split lists raise ``FileNotFoundError`` naming
the path. Degenerate polygons (two consecutive equal vertices, MTP's rule; or zero area) are skipped,
counted in ``num_skipped`` and logged per file. ``filter_empty=True`` (training, mmrotate's
``filter_empty_gt``) hides images without objects; the number hidden is logged once.
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

from mtp.data.datasets.files import read_rgb
from mtp.data.datasets.rotated_formats import (
    IMAGE_SUFFIXES,
    Annotations,
    find_image,
    list_files,
    pair_by_annotation,
    parse_dior_xml,
    parse_dota_txt,
    parse_fair1m_xml,
    require_dir,
    txt_layout_items,
)
from mtp.data.datasets.segmentation import _default_palette

__all__ = [
    "DIORR",
    "DIOR_R_CLASSES",
    "DOTA",
    "DOTA_CLASSES",
    "DOTA_V10_CLASSES",
    "DOTA_V15_CLASSES",
    "DOTA_V20_CLASSES",
    "FAIR1M",
    "FAIR1M_CLASSES",
    "RotatedDetectionDataset",
    "fair1m_release_name",
]

log = logging.getLogger(__name__)

DOTA_V10_CLASSES: tuple[str, ...] = (
    "plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle", "ship",
    "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout", "harbor",
    "swimming-pool", "helicopter",
)  # fmt: skip
DOTA_V15_CLASSES: tuple[str, ...] = (*DOTA_V10_CLASSES, "container-crane")
DOTA_V20_CLASSES: tuple[str, ...] = (*DOTA_V10_CLASSES, "container-crane", "airport", "helipad")
DOTA_CLASSES: dict[str, tuple[str, ...]] = {"1.0": DOTA_V10_CLASSES, "1.5": DOTA_V15_CLASSES, "2.0": DOTA_V20_CLASSES}

DIOR_R_CLASSES: tuple[str, ...] = (
    "airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney", "expressway-service-area",
    "expressway-toll-station", "dam", "golffield", "groundtrackfield", "harbor", "overpass", "ship", "stadium",
    "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill",
)  # fmt: skip

# MTP's FAIR1Mv2Dataset names (hyphenated) and order.
FAIR1M_CLASSES: tuple[str, ...] = (
    "A220", "A321", "A330", "A350", "ARJ21", "Baseball-Field", "Basketball-Court", "Boeing737", "Boeing747",
    "Boeing777", "Boeing787", "Bridge", "Bus", "C919", "Cargo-Truck", "Dry-Cargo-Ship", "Dump-Truck",
    "Engineering-Ship", "Excavator", "Fishing-Boat", "Football-Field", "Intersection", "Liquid-Cargo-Ship",
    "Motorboat", "other-airplane", "other-ship", "other-vehicle", "Passenger-Ship", "Roundabout", "Small-Car",
    "Tennis-Court", "Tractor", "Trailer", "Truck-Tractor", "Tugboat", "Van", "Warship",
)  # fmt: skip


def fair1m_release_name(name: str) -> str:
    """MTP name → FAIR1M-2.0 release xml spelling: "Small-Car" → "Small Car"; ``other-*`` keep the hyphen."""
    return name if name.startswith("other-") else name.replace("-", " ")


class RotatedDetectionDataset(Dataset):
    """Base class: (image, annotation-or-None) pairs parsed eagerly by ``parser(path, class_map)``.

    ``class_map`` maps every accepted spelling to a label (defaults to ``classes``); ``transform`` is applied
    last to the sample dict (see the module docstring); ``filter_empty`` is settable.
    """

    def __init__(
        self,
        items: Sequence[tuple[Path, Path | None]],
        classes: Sequence[str],
        parser: Callable[[Path, Mapping[str, int]], Annotations],
        *,
        class_map: Mapping[str, int] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        filter_empty: bool = False,
    ) -> None:
        self.classes = tuple(classes)
        self.palette = tuple(tuple(c) for c in palette) if palette is not None else _default_palette(len(classes))
        if len(self.palette) != len(self.classes):
            raise ValueError(f"{len(self.classes)} classes but {len(self.palette)} palette colours")
        self.class_map = dict(class_map) if class_map is not None else {n: i for i, n in enumerate(self.classes)}
        self.transform = transform
        self.image_paths = [Path(p) for p, _ in items]
        self.ann_paths = [None if a is None else Path(a) for _, a in items]
        self.annotations = [Annotations() if a is None else parser(a, self.class_map) for a in self.ann_paths]
        self.num_skipped = 0
        for path, ann in zip(self.ann_paths, self.annotations, strict=True):
            if ann.skipped:
                self.num_skipped += len(ann.skipped)
                where = "lines" if path is not None and path.suffix == ".txt" else "objects"
                log.warning("skipped %d degenerate polygon(s) in %s (%s %s)", len(ann.skipped), path, where,
                            ann.skipped[:10])  # fmt: skip
        self._filter_empty = False
        self._index = list(range(len(self.image_paths)))
        self.filter_empty = filter_empty

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def filter_empty(self) -> bool:
        return self._filter_empty

    @filter_empty.setter
    def filter_empty(self, value: bool) -> None:
        self._filter_empty = bool(value)
        everything = range(len(self.image_paths))
        self._index = [i for i in everything if len(self.annotations[i].names)] if value else list(everything)
        dropped = len(self.image_paths) - len(self._index)
        if value and dropped:
            log.info("filter_empty: %d of %d image(s) without objects are not used", dropped, len(self.image_paths))
        if not self._index and self.image_paths:
            raise ValueError(f"filter_empty: none of the {len(self.image_paths)} images has an object")

    def __len__(self) -> int:
        return len(self._index)

    def load_sample(self, index: int) -> dict[str, Any]:
        """The sample dict before ``transform`` (see the module docstring)."""
        i = self._index[index]
        path, ann = self.image_paths[i], self.annotations[i]
        image = read_rgb(path)
        hw = (int(image.shape[-2]), int(image.shape[-1]))
        boxes = tv_tensors.BoundingBoxes(
            torch.from_numpy(ann.polys.copy()), format="XYXYXYXY", canvas_size=hw, clamping_mode=None
        )
        return {
            "image": tv_tensors.Image(image),
            "boxes": boxes,
            "labels": torch.from_numpy(ann.labels.copy()),
            "difficult": torch.from_numpy(ann.difficult != 0),
            "image_path": str(path),
            "image_id": path.stem,
            "ori_hw": hw,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_sample(index)
        return self.transform(sample) if self.transform is not None else sample

    def label_counts(self) -> np.ndarray:
        """Objects per class over the visible images, int64 (num_classes,)."""
        labels = [self.annotations[i].labels for i in self._index]
        return np.bincount(np.concatenate([np.zeros(0, np.int64), *labels]), minlength=self.num_classes)


class DOTA(RotatedDetectionDataset):
    """DOTA labelTxt layouts; ``version`` '1.0' (15 classes) | '1.5' (16) | '2.0' (18).

    * release: ``root/{images_dir}/*.png`` + ``root/{ann_dir}/*.txt`` (``split=None``);
    * mmrotate split output (``mtp tool dota-split``): ``root/{split}/{images,annfiles}`` with ``split``
      'trainval' | 'train' | 'val' | 'test'.

    ``ann_dir=None`` picks ``annfiles`` or ``labelTxt``, whichever exists. Annotation files drive the list
    (an image per txt is required, extra images are logged and ignored, like mmrotate). Without any
    annotation folder, ``split='test'`` (or ``annotations=False``) lists the images with no objects.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        version: str = "1.0",
        images_dir: str = "images",
        ann_dir: str | None = None,
        *,
        annotations: bool | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        filter_empty: bool = False,
        palette: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if version not in DOTA_CLASSES:
            raise ValueError(f"version must be one of {sorted(DOTA_CLASSES)}, got {version!r}")
        base = require_dir(Path(root), "dataset root")
        if split is not None:
            base = require_dir(base / split, f"split '{split}'")
        items = txt_layout_items(base, images_dir, ann_dir, annotations, split == "test")
        super().__init__(items, DOTA_CLASSES[version], parse_dota_txt, palette=palette, transform=transform,
                         filter_empty=filter_empty)  # fmt: skip
        self.version = version


class DIORR(RotatedDetectionDataset):
    """DIOR-R: ``root/ImageSets/Main/{train,val,test}.txt`` (ids), ``root/JPEGImages-trainval/<id>.jpg`` /
    ``root/JPEGImages-test/<id>.jpg`` and ``root/Annotations/Oriented Bounding Boxes/<id>.xml``; 20 classes.

    ``split='trainval'`` reads ``train.txt`` + ``val.txt`` (MTP concatenates them) or ``trainval.txt`` when
    those are absent. Names are lower-cased; the xml ``difficult`` tag is ignored.
    """

    SPLITS = ("trainval", "train", "val", "test")

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        *,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        filter_empty: bool = False,
        palette: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if split not in self.SPLITS:
            raise ValueError(f"split must be one of {self.SPLITS}, got {split!r}")
        root = require_dir(Path(root), "dataset root")
        sets = root / "ImageSets" / "Main"
        lists = ["train", "val"] if split == "trainval" else [split]
        if split == "trainval" and not all((sets / f"{s}.txt").is_file() for s in lists):
            lists = ["trainval"]
        ids: list[str] = []
        for name in lists:
            path = sets / f"{name}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"split list not found: {path}")
            ids += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not ids:
            raise ValueError(f"no image ids in {', '.join(str(sets / f'{s}.txt') for s in lists)}")
        images_dir = require_dir(root / ("JPEGImages-test" if split == "test" else "JPEGImages-trainval"), "image")
        ann_dir = require_dir(root / "Annotations" / "Oriented Bounding Boxes", "annotation")
        items = []
        for image_id in ids:
            ann = ann_dir / f"{image_id}.xml"
            if not ann.is_file():
                raise FileNotFoundError(f"annotation file not found: {ann}")
            items.append((find_image(images_dir, image_id, (".jpg", ".png", ".tif")), ann))
        super().__init__(items, DIOR_R_CLASSES, parse_dior_xml, palette=palette, transform=transform,
                         filter_empty=filter_empty)  # fmt: skip


class FAIR1M(RotatedDetectionDataset):
    """FAIR1M-2.0, 37 classes with MTP's hyphenated names (``FAIR1M_CLASSES``).

    * ``format='xml'`` (the release): ``root/{split}/images/*.tif`` + ``root/{split}/labelXml/*.xml``
      (``split`` e.g. 'train' | 'validation' | 'test'); release names ("Small Car", "other-airplane") are
      mapped to MTP's; a ``test`` split without ``labelXml`` lists the images only;
    * ``format='dota'`` (MTP's clipped patches): ``root/{split}/{images,annfiles}`` DOTA txt with the
      hyphenated names (``split`` 'trainval' | 'test').
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        format: str = "xml",
        *,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        filter_empty: bool = False,
        palette: Sequence[Sequence[int]] | None = None,
    ) -> None:
        class_map = {n: i for i, n in enumerate(FAIR1M_CLASSES)}
        class_map.update({fair1m_release_name(n): i for i, n in enumerate(FAIR1M_CLASSES)})
        base = require_dir(require_dir(Path(root), "dataset root") / split, f"split '{split}'")
        if format == "xml":
            xml_dir = base / "labelXml"
            if not xml_dir.is_dir() and split == "test":
                items = [(p, None) for p in list_files(base / "images", IMAGE_SUFFIXES, "image")]
            else:
                ann_files = list_files(xml_dir, (".xml",), "annotation")
                items = pair_by_annotation(base / "images", ann_files, IMAGE_SUFFIXES)
            parser = parse_fair1m_xml
        elif format == "dota":
            items = txt_layout_items(base, "images", None, None, split == "test")
            parser = parse_dota_txt
        else:
            raise ValueError(f"format must be 'xml' or 'dota', got {format!r}")
        super().__init__(items, FAIR1M_CLASSES, parser, class_map=class_map, palette=palette, transform=transform,
                         filter_empty=filter_empty)  # fmt: skip
        self.format = format
