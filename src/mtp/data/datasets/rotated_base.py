"""The oriented-detection base class and class lists, shared by the readers of :mod:`mtp.data.datasets.rotated`
(which documents the sample dict and the rules: parsing, degenerate / self-crossing / outside polygons)."""

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
from mtp.data.datasets.rasters import DEFAULT_RULE, RasterRule, check_raster
from mtp.data.datasets.rotated_formats import AnnotationError, Annotations, outside_image
from mtp.data.datasets.segmentation import _default_palette

__all__ = [
    "DIOR_R_CLASSES",
    "DOTA_CLASSES",
    "DOTA_V10_CLASSES",
    "DOTA_V15_CLASSES",
    "DOTA_V20_CLASSES",
    "FAIR1M_CLASSES",
    "RotatedDetectionDataset",
    "fair1m_release_name",
]

log = logging.getLogger("mtp.data.datasets.rotated")  # the readers' logger: one name for the user

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
