"""Oriented-object detection readers: DOTA (v1.0 / v1.5 / v2.0), DIOR-R and FAIR1M-2.0.

Sample dict returned by ``dataset[i]`` (before ``transform``):

* ``"image"``: ``tv_tensors.Image`` uint8 (3, H, W) RGB (raster rule ``raster``, :mod:`mtp.data.datasets.rasters`);
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
line (txt) or object index (xml) — or, when several files are bad, one
:class:`~mtp.data.datasets.files.DatasetProblemsError` listing all of them; missing images, folders or split
lists raise ``FileNotFoundError`` naming the path(s). Objects that are not training targets are dropped,
counted in ``num_skipped`` and logged with their files: ``"degenerate"`` polygons (two consecutive equal
vertices, MTP's rule; or zero area) and ``"outside"`` objects, whose bounding box has no area inside the image
(the rule of every reader; the image size comes from its header). Self-crossing quadrilaterals are reordered
(``num_reordered``, logged; :mod:`~mtp.data.datasets.rotated_formats`). Polygons that only reach past the border
are kept unclipped. ``filter_empty=True`` (training, mmrotate's ``filter_empty_gt``) hides images without
objects; the number hidden is logged once.
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

from mtp.data.datasets.files import DatasetProblemsError, folder_hint, image_size, read_rgb
from mtp.data.datasets.rasters import DEFAULT_RULE, RasterRule, check_raster
from mtp.data.datasets.rotated_formats import (
    IMAGE_SUFFIXES,
    AnnotationError,
    Annotations,
    find_image,
    list_files,
    outside_image,
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
    last to the sample dict (see the module docstring); ``filter_empty`` is settable; ``raster``: how images
    become uint8 RGB (:class:`~mtp.data.datasets.rasters.RasterRule`). ``num_skipped`` (reason → count) and
    ``num_reordered`` report what the reader changed (module docstring).
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
        raster: RasterRule | None = None,
    ) -> None:
        self.classes = tuple(classes)
        self.palette = tuple(tuple(c) for c in palette) if palette is not None else _default_palette(len(classes))
        if len(self.palette) != len(self.classes):
            raise ValueError(f"{len(self.classes)} classes but {len(self.palette)} palette colours")
        self.class_map = dict(class_map) if class_map is not None else {n: i for i, n in enumerate(self.classes)}
        self.transform = transform
        self.raster = raster or DEFAULT_RULE
        self.image_paths = [Path(p) for p, _ in items]
        self.ann_paths = [None if a is None else Path(a) for _, a in items]
        self.annotations = self._parse_all(parser)
        self.num_skipped = {"degenerate": sum(len(a.skipped) for a in self.annotations), "outside": 0}
        self.num_reordered = sum(len(a.reordered) for a in self.annotations)
        outside = self._drop_outside()
        self._log_changes(outside)
        self._filter_empty = False
        self._index = list(range(len(self.image_paths)))
        self.filter_empty = filter_empty

    def _parse_all(self, parser: Callable[[Path, Mapping[str, int]], Annotations]) -> list[Annotations]:
        """Parse every annotation file; every bad one is reported (one error, or one listing them all)."""
        annotations, errors = [], []
        for path in self.ann_paths:
            try:
                annotations.append(Annotations() if path is None else parser(path, self.class_map))
            except AnnotationError as e:
                errors.append(e)
                annotations.append(Annotations())
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise DatasetProblemsError(f"{len(errors)} bad annotation files", [str(e) for e in errors])
        return annotations

    def _drop_outside(self) -> dict[Path | None, int]:
        """Drop the objects outside their image (size from the header); returns {annotation file: count}. An
        unreadable header is left to the data check and to loading (the objects are kept)."""
        dropped: dict[Path | None, int] = {}
        for i, ann in enumerate(self.annotations):
            if not len(ann.names):
                continue
            try:
                hw = image_size(self.image_paths[i])
            except (OSError, ValueError):
                continue
            out = outside_image(ann.polys, hw)
            if out.any():
                keep = ~out
                names = [n for n, k in zip(ann.names, keep, strict=True) if k]
                self.annotations[i] = Annotations(
                    ann.polys[keep], names, ann.difficult[keep], ann.labels[keep], ann.skipped, ann.reordered
                )
                dropped[self.ann_paths[i]] = int(out.sum())
        self.num_skipped["outside"] = sum(dropped.values())
        return dropped

    def _log_changes(self, outside: dict[Path | None, int], shown: int = 20) -> None:
        lines = []
        for path, ann in zip(self.ann_paths, self.annotations, strict=True):
            where = "lines" if path is not None and path.suffix == ".txt" else "objects"
            if ann.skipped:
                lines.append(f"skipped {len(ann.skipped)} degenerate polygon(s) in {path} ({where} {ann.skipped[:10]})")
            if ann.reordered:
                lines.append(f"reordered {len(ann.reordered)} self-crossing polygon(s) in {path} "
                             f"({where} {ann.reordered[:10]})")  # fmt: skip
            if path in outside:
                lines.append(f"dropped {outside[path]} object(s) lying outside their image in {path}")
        for line in lines[:shown]:
            log.warning("%s", line)
        if len(lines) > shown:
            log.warning("... and %d more file(s) with dropped or reordered objects", len(lines) - shown)
        if lines:
            log.warning("objects not used: %s; self-crossing polygons reordered: %d", self.num_skipped,
                        self.num_reordered)  # fmt: skip

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
        return self._load(self._index[index])

    def _load(self, i: int) -> dict[str, Any]:
        path, ann = self.image_paths[i], self.annotations[i]
        image = read_rgb(path, self.raster)
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

    def scan_size(self) -> int:
        """Number of images the data check visits (all of them, ``filter_empty`` or not)."""
        return len(self.image_paths)

    def check_item(self, index: int, level: str = "quick") -> None:
        """Raise (naming the file) when image ``index`` (of all images, see :meth:`scan_size`) is unreadable,
        truncated or refused by the raster rule; 'quick' reads the header, 'full' decodes it. The annotation
        files were parsed when the dataset was built."""
        if level == "full":
            self._load(index)
        else:
            check_raster(self.image_paths[index], self.raster)

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
        raster: RasterRule | None = None,
    ) -> None:
        if version not in DOTA_CLASSES:
            raise ValueError(f"version must be one of {sorted(DOTA_CLASSES)}, got {version!r}")
        base = require_dir(Path(root), "dataset root")
        if split is not None:
            base = require_dir(base / split, f"split '{split}'")
        items = txt_layout_items(base, images_dir, ann_dir, annotations, split == "test")
        super().__init__(items, DOTA_CLASSES[version], parse_dota_txt, palette=palette, transform=transform,
                         filter_empty=filter_empty, raster=raster)  # fmt: skip
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
        raster: RasterRule | None = None,
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
        items, missing = [], []
        for image_id in ids:
            ann = ann_dir / f"{image_id}.xml"
            if not ann.is_file():
                missing.append(f"annotation file not found: {ann}")
                continue
            try:
                items.append((find_image(images_dir, image_id, (".jpg", ".png", ".tif")), ann))
            except FileNotFoundError as e:
                missing.append(str(e))
        if missing:
            listed = ", ".join(str(sets / f"{s}.txt") for s in lists)
            raise FileNotFoundError(f"{len(missing)} file(s) of the ids listed in {listed} not found:\n  "
                                    + "\n  ".join(missing[:10]) + ("\n  ..." if len(missing) > 10 else ""))  # fmt: skip
        super().__init__(items, DIOR_R_CLASSES, parse_dior_xml, palette=palette, transform=transform,
                         filter_empty=filter_empty, raster=raster)  # fmt: skip


class FAIR1M(RotatedDetectionDataset):
    """FAIR1M-2.0, 37 classes with MTP's hyphenated names (``FAIR1M_CLASSES``).

    * ``format='xml'`` (the release): ``root/{split}/images/*.tif`` + ``root/{split}/labelXml/*.xml``
      (``split`` e.g. 'train' | 'validation' | 'test'), or the release's part folders
      ``root/{split}/part*/{images,labelXml}`` (every ``part*`` folder is read, in name order; the older form
      ``root='…/train', split='part1'`` reads one part). Release names ("Small Car", "other-airplane") are mapped
      to MTP's; a ``test`` split without ``labelXml`` lists the images only;
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
        raster: RasterRule | None = None,
    ) -> None:
        if format not in ("xml", "dota"):
            raise ValueError(f"format must be 'xml' or 'dota', got {format!r}")
        class_map = {n: i for i, n in enumerate(FAIR1M_CLASSES)}
        class_map.update({fair1m_release_name(n): i for i, n in enumerate(FAIR1M_CLASSES)})
        base = require_dir(require_dir(Path(root), "dataset root") / split, f"split '{split}'")
        if format == "xml":
            items = []
            for folder in self.part_folders(base):
                xml_dir = folder / "labelXml"
                if not xml_dir.is_dir() and split == "test":
                    items += [(p, None) for p in list_files(folder / "images", IMAGE_SUFFIXES, "image")]
                else:
                    ann_files = list_files(xml_dir, (".xml",), "annotation")
                    items += pair_by_annotation(folder / "images", ann_files, IMAGE_SUFFIXES)
            parser = parse_fair1m_xml
        else:
            if not (base / "annfiles").is_dir() and (base / "labelXml").is_dir():
                raise FileNotFoundError(f"{base} holds labelXml/ (the release xml) but format='dota' reads "
                                        f"{base}/annfiles/*.txt: set format: xml")  # fmt: skip
            items = txt_layout_items(base, "images", None, None, split == "test")
            parser = parse_dota_txt
        super().__init__(items, FAIR1M_CLASSES, parser, class_map=class_map, palette=palette, transform=transform,
                         filter_empty=filter_empty, raster=raster)  # fmt: skip
        self.format = format

    @staticmethod
    def part_folders(base: Path) -> list[Path]:
        """``[base]`` when it holds ``images/``, else its ``part*`` folders that do (the release layout)."""
        if (base / "images").is_dir():
            return [base]
        parts = sorted(d for d in base.iterdir() if d.is_dir() and d.name.lower().startswith("part"))
        parts = [d for d in parts if (d / "images").is_dir()]
        if not parts:
            if (base / "annfiles").is_dir():
                raise FileNotFoundError(f"{base} holds annfiles/ (DOTA txt patches) but format='xml' reads "
                                        f"{base}/images + labelXml: set format: dota")  # fmt: skip
            raise FileNotFoundError(f"image folder not found: {base / 'images'} (nor {base}/part*/images, the "
                                    f"release's part folders){folder_hint(base / 'images')}")  # fmt: skip
        log.info("FAIR1M %s: reading %d part folder(s): %s", base, len(parts), ", ".join(d.name for d in parts))
        return parts
