"""LightningDataModule for semantic segmentation with the official (mmseg 1.x) pipelines.

Batch dicts (``collate_segmentation``):

* ``"image"``: float32, normalised (mean/std of :mod:`mtp.data.transforms.segmentation`, RGB). Training: a Tensor
  (B, 3, c_h, c_w) — every crop is padded to ``crop_size`` (image 0, mask 255). Evaluation / predict: a
  Tensor (B, 3, H, W) when all images of the batch share a size, else a ``list`` of B (3, H_i, W_i) tensors.
* ``"mask"``: int64 (B, H, W) or a list of (H_i, W_i), 255 = ignore, at the label's original size (an
  eval-time resize such as SpaceNet's 384×384 ``val_resize`` touches the image only: resize the logits to
  the label bilinearly before the argmax). Absent when the dataset has no labels (test / predict images).
* ``"image_path"``: list[str]; ``"mask_path"``: list[str | None]; ``"ori_size"``: list[(H, W)] on disk.

Iteration-based schedules (the official 80k iterations): use ``Trainer(max_steps=80_000, max_epochs=-1)``
and, for in-training validation every 20k iterations, ``val_check_interval=20_000,
check_val_every_n_epoch=None``; the training loader simply starts a new (reshuffled) epoch when one ends.

Randomness and worker processes: :mod:`mtp.data.datamodules.common`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning
import torch

from mtp.data.datamodules.bad_samples import BadSamplePolicy, CheckLevel
from mtp.data.datamodules.common import SeededLoaders, WorkerStartMethod
from mtp.data.datasets.segmentation import SegmentationDataset
from mtp.data.transforms.segmentation import build_test_transform, build_train_transform

__all__ = ["SegmentationDataModule", "collate_segmentation"]


def collate_segmentation(samples: Sequence[dict[str, Any]], stack: bool | None = None) -> dict[str, Any]:
    """Batch sample dicts: tensors are stacked when shapes agree (``stack=None``), always (``True``, error on
    mismatch) or never (``False``, lists); tv_tensors become plain tensors; other values become lists."""
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if not isinstance(values[0], torch.Tensor):
            batch[key] = values
            continue
        tensors = [v.as_subclass(torch.Tensor) for v in values]
        same = all(t.shape == tensors[0].shape for t in tensors)
        if stack is True and not same:
            shapes = [tuple(t.shape) for t in tensors]
            raise ValueError(f"cannot stack '{key}' of shapes {shapes} ({[s.get('image_path') for s in samples]})")
        batch[key] = torch.stack(tensors) if same and stack is not False else tensors
    return batch


def _collate_train(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return collate_segmentation(samples, stack=True)


def _collate_eval(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return collate_segmentation(samples, stack=None)


class SegmentationDataModule(SeededLoaders, lightning.LightningDataModule):
    """Train / val / test / predict loaders over :class:`SegmentationDataset` objects (YAML: ``class_path`` +
    ``init_args``).

    The module keeps shallow copies of the datasets (yours are not modified) with the official transforms
    set: ``train`` gets ``build_train_transform(crop_size, ratio_range, cat_max_ratio, photometric)``; ``val``
    gets ``build_test_transform(resize_to=val_resize)`` (SpaceNet: ``val_resize=(384, 384)``); ``test`` and
    ``predict`` get ``build_test_transform()`` (original size, for slide inference). With
    ``keep_dataset_transforms=True`` a dataset's own ``transform`` is kept when it is not None.
    See the module docstring for the batch dict, seeding and iteration-based training.

    Bad files: ``check`` ('quick' | 'full' | 'off') scans the datasets of each stage in :meth:`setup` and stops
    with the list of every bad file; ``on_bad_sample`` ('skip' | 'raise') decides what the train / val loaders
    do with a bad sample the check missed (skip and count: ``num_skipped_samples``); ``drop_last`` (None: only a last
    training batch of one sample, which breaks BatchNorm) as :class:`~mtp.data.datamodules.common.SeededLoaders`
    (:mod:`mtp.data.datamodules.bad_samples`).
    """

    train_collate = staticmethod(_collate_train)
    eval_collate = staticmethod(_collate_eval)

    def __init__(
        self,
        train: SegmentationDataset | None = None,
        val: SegmentationDataset | None = None,
        test: SegmentationDataset | None = None,
        predict: SegmentationDataset | None = None,
        crop_size: tuple[int, int] = (512, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        photometric: bool = True,
        val_resize: tuple[int, int] | None = None,
        batch_size: int = 1,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        persistent_workers: bool = True,
        worker_start_method: WorkerStartMethod = "forkserver",
        pin_memory: bool = True,
        seed: int = 0,
        keep_dataset_transforms: bool = False,
        check: CheckLevel = "quick",
        on_bad_sample: BadSamplePolicy = "skip",
        drop_last: bool | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["train", "val", "test", "predict"])
        self.crop_size = tuple(crop_size)
        self.apply_loader_options()
        self.set_stage_datasets(
            {"train": train, "val": val, "test": test, "predict": predict},
            {
                "train": build_train_transform(crop_size, ratio_range, cat_max_ratio, photometric),
                "val": build_test_transform(val_resize),
                "test": build_test_transform(),
                "predict": build_test_transform(),
            },
        )
