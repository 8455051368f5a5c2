"""LightningDataModule for oriented-object detection (DOTA, DIOR-R, FAIR1M) with MTP's mmrotate 1.x pipelines.

Batch dicts (:func:`collate_rotated`):

* ``"image"``: float32 (B, 3, Hp, Wp), normalised RGB, each image padded bottom/right with 0 to the batch
  maximum rounded up to a multiple of 32;
* ``"rboxes"``: list of B float32 (N_i, 5) le90 rboxes (cx, cy, w, h, θ rad); ``"boxes"``: list of B float32
  (N_i, 8) polygons; training: in resized pixels; evaluation: in original pixels (the official val
  pipeline: divide predictions by ``scale_factor`` before comparing);
* ``"labels"``: list of int64 (N_i,); ``"difficult"``: list of bool (N_i,);
* ``"image_id"``, ``"image_path"``: lists of str; ``"scale_factor"``: list of (sx, sy) (resized / original);
  ``"img_hw"``: list of the resized, unpadded (h, w); ``"ori_hw"``: list of the original (H, W).

Training uses ``filter_empty`` on a copy of the train dataset (mmrotate's ``filter_empty_gt``); evaluation
keeps every image. Seeding as :class:`mtp.data.datamodules.SegmentationDataModule` (``seed + global_rank``
drives the shuffle and worker seeds; a private RNG stream with ``num_workers=0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning

from mtp.data.datamodules.bad_samples import BadSamplePolicy, CheckLevel
from mtp.data.datamodules.common import SeededLoaders, WorkerStartMethod, collate_padded
from mtp.data.datasets.rotated import RotatedDetectionDataset
from mtp.data.transforms.rotated import build_rotated_test_transform, build_rotated_train_transform

__all__ = ["RotatedDetectionDataModule", "collate_rotated"]

LIST_KEYS = ("rboxes", "boxes", "labels", "difficult", "image_id", "image_path", "scale_factor", "img_hw", "ori_hw")


def collate_rotated(samples: Sequence[dict[str, Any]], divisor: int = 32) -> dict[str, Any]:
    """Batch transformed samples (see the module docstring); missing metadata gets defaults (scale 1,
    ``img_hw`` = the image size)."""
    return collate_padded(samples, LIST_KEYS, divisor)


class RotatedDetectionDataModule(SeededLoaders, lightning.LightningDataModule):
    """Train / val / test / predict loaders over :class:`RotatedDetectionDataset` objects (YAML ``class_path``
    + ``init_args``).

    Shallow copies of the datasets get the official transforms: train
    ``build_rotated_train_transform(size, rotate, rect_classes)`` (and ``filter_empty=True`` when
    ``filter_empty_train``), the others ``build_rotated_test_transform(size)``. ``size``: 1024 (DOTA), 800
    (DIOR-R, FAIR1M). ``rect_classes``: label indices or class names of the train dataset (DOTA-v1.0:
    ``[storage-tank, roundabout]`` = ``[9, 11]``); ``rotate``: True for DOTA-v1.0 and FAIR1M.

    Bad files: ``check`` ('quick' | 'full' | 'off') scans the datasets of each stage in :meth:`setup` and stops
    with the list of every bad file; ``on_bad_sample`` ('skip' | 'raise') decides what the train / val loaders
    do with a bad sample the check missed (skip and count: ``num_skipped_samples``); ``drop_last`` (None: only a last
    training batch of one sample, which breaks BatchNorm) as :class:`~mtp.data.datamodules.common.SeededLoaders`
    (:mod:`mtp.data.datamodules.bad_samples`).
    """

    train_collate = eval_collate = staticmethod(collate_rotated)

    def __init__(
        self,
        train: RotatedDetectionDataset | None = None,
        val: RotatedDetectionDataset | None = None,
        test: RotatedDetectionDataset | None = None,
        predict: RotatedDetectionDataset | None = None,
        size: int = 1024,
        rotate: bool = False,
        rect_classes: Sequence[int | str] = (),
        batch_size: int = 2,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        persistent_workers: bool = True,
        worker_start_method: WorkerStartMethod = "forkserver",
        pin_memory: bool = True,
        seed: int = 0,
        filter_empty_train: bool = True,
        keep_dataset_transforms: bool = False,
        check: CheckLevel = "quick",
        on_bad_sample: BadSamplePolicy = "skip",
        drop_last: bool | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["train", "val", "test", "predict"])
        self.size = int(size)
        self.apply_loader_options()
        self.rect_classes = self._resolve_rect_classes(rect_classes, train)
        train_tf = build_rotated_train_transform(self.size, rotate=rotate, rect_classes=self.rect_classes)
        test_tf = build_rotated_test_transform(self.size)
        self.set_stage_datasets(
            {"train": train, "val": val, "test": test, "predict": predict},
            {"train": train_tf, "val": test_tf, "test": test_tf, "predict": test_tf},
        )
        if filter_empty_train and hasattr(self.train_dataset, "filter_empty"):
            self.train_dataset.filter_empty = True

    @staticmethod
    def _resolve_rect_classes(rect_classes: Sequence[int | str], dataset: Any) -> tuple[int, ...]:
        out = []
        for c in rect_classes:
            if isinstance(c, str):
                classes = tuple(getattr(dataset, "classes", ()))
                if c not in classes:
                    raise ValueError(f"rect class {c!r} is not a class of the train dataset {classes}")
                out.append(classes.index(c))
            else:
                out.append(int(c))
        return tuple(out)
