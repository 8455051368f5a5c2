"""LightningDataModule for horizontal-box detection (DIOR, xView, COCO-format sets) with MTP's mmdet 3.x pipelines.

Batch dicts (:func:`collate_detection`):

* ``"image"``: float32 (B, 3, Hp, Wp), normalised RGB, each image padded bottom/right with 0 to the batch
  maximum rounded up to a multiple of 32;
* ``"boxes"``: list of B float32 (N_i, 4) XYXY boxes; ``"labels"``: list of int64 (N_i,); training: resized
  pixels; evaluation: original pixels (the official test pipeline loads annotations after the resize: divide
  predictions by ``scale_factor`` before comparing);
* ``"masks"``: list of B uint8 (N_i, H_i, W_i) instance masks (training: resized and padded to the image's own
  multiple of 32; evaluation: original size), or None when the dataset gives no masks;
* ``"image_id"`` (int for COCO, str otherwise), ``"image_path"``: lists; ``"scale_factor"``: list of (sx, sy)
  (resized / original); ``"img_hw"``: list of the resized, unpadded (h, w); ``"ori_hw"``: list of the original
  (H, W).

Training uses a copy of the train dataset with ``set_filter(filter_empty_train, min_size)`` (mmdet
``filter_cfg=dict(filter_empty_gt=True, min_size=32)``); evaluation keeps every image. Seeding as
:class:`mtp.data.datamodules.SegmentationDataModule` (``seed + global_rank`` drives the shuffle and worker
seeds; a private RNG stream with ``num_workers=0``). The official ``AspectRatioBatchSampler`` only matters for
batches of mixed aspect ratios (batch 1 per GPU in MTP's configs) and is not reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning
import torch

from mtp.data.datamodules.bad_samples import BadSamplePolicy, CheckLevel
from mtp.data.datamodules.common import SeededLoaders, WorkerStartMethod, collate_padded
from mtp.data.datasets.horizontal import HorizontalDetectionDataset
from mtp.data.transforms.horizontal import build_detection_test_transform, build_detection_train_transform

__all__ = ["DetectionDataModule", "collate_detection"]

LIST_KEYS = ("boxes", "labels", "image_id", "image_path", "scale_factor", "img_hw", "ori_hw")


def collate_detection(samples: Sequence[dict[str, Any]], divisor: int = 32) -> dict[str, Any]:
    """Batch transformed samples (see the module docstring); missing metadata gets defaults (scale 1,
    ``img_hw`` / ``ori_hw`` = the image size)."""
    batch = collate_padded(samples, LIST_KEYS, divisor)
    if any(isinstance(s.get("masks"), torch.Tensor) for s in samples):
        batch["masks"] = [s["masks"].as_subclass(torch.Tensor) if s.get("masks") is not None else None for s in samples]
    else:
        batch["masks"] = None
    return batch


class DetectionDataModule(SeededLoaders, lightning.LightningDataModule):
    """Train / val / test / predict loaders over :class:`HorizontalDetectionDataset` objects (YAML
    ``class_path`` + ``init_args``).

    Shallow copies of the datasets get the official transforms: train ``build_detection_train_transform(size)``
    (and the mmdet filter, see the module docstring), the others ``build_detection_test_transform(size)``.
    ``size``: 800 (DIOR), 416 (xView). With ``keep_dataset_transforms=True`` a dataset's own ``transform`` is
    kept when it is not None.

    Bad files: ``check`` ('quick' | 'full' | 'off') scans the datasets of each stage in :meth:`setup` and stops
    with the list of every bad file; ``on_bad_sample`` ('skip' | 'raise') decides what the train / val loaders
    do with a bad sample the check missed (skip and count: ``num_skipped_samples``); ``drop_last`` (None: only a last
    training batch of one sample, which breaks BatchNorm) as :class:`~mtp.data.datamodules.common.SeededLoaders`
    (:mod:`mtp.data.datamodules.bad_samples`).
    """

    train_collate = eval_collate = staticmethod(collate_detection)

    def __init__(
        self,
        train: HorizontalDetectionDataset | None = None,
        val: HorizontalDetectionDataset | None = None,
        test: HorizontalDetectionDataset | None = None,
        predict: HorizontalDetectionDataset | None = None,
        size: int = 800,
        batch_size: int = 1,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        persistent_workers: bool = True,
        worker_start_method: WorkerStartMethod = "forkserver",
        pin_memory: bool = True,
        seed: int = 0,
        filter_empty_train: bool = True,
        min_size: int = 32,
        keep_dataset_transforms: bool = False,
        check: CheckLevel = "quick",
        on_bad_sample: BadSamplePolicy = "skip",
        drop_last: bool | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["train", "val", "test", "predict"])
        self.size = int(size)
        self.apply_loader_options()
        test_tf = build_detection_test_transform(self.size)
        self.set_stage_datasets(
            {"train": train, "val": val, "test": test, "predict": predict},
            {"train": build_detection_train_transform(self.size), "val": test_tf, "test": test_tf, "predict": test_tf},
        )
        if self.train_dataset is not None and hasattr(self.train_dataset, "set_filter"):
            self.train_dataset.set_filter(filter_empty_train, min_size)
