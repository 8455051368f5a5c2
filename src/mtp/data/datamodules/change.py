"""LightningDataModule for change detection with the official (Open-CD 1.1) pipelines.

Batch dicts (:func:`mtp.data.datamodules.segmentation.collate_segmentation`):

* ``"image"``: float32 normalised A‖B stacked along channels. Training: (B, 6, c_h, c_w) (crops padded to
  ``crop_size``: image 0, mask 255). Evaluation: (B, 6, H, W), or a list of (6, H_i, W_i) for mixed sizes.
* ``"mask"``: int64 (B, H, W) or a list, 0 unchanged / 1 changed / 255 ignore, at the label's original size
  (an eval-time resize such as OSCD's 224 touches the images only); absent for unlabelled pairs.
* ``"image_path"`` (A files), ``"image_b_path"``, ``"mask_path"``, ``"ori_size"``: lists.

Seeding, workers and the main-process RNG stream: :class:`mtp.data.datamodules.common.SeededLoaders`; collates
those of :class:`mtp.data.datamodules.SegmentationDataModule`.
Epoch-based schedules (the official 100-200 epochs): ``Trainer(max_epochs=...)``.
"""

from __future__ import annotations

import lightning
from torch.utils.data import Dataset

from mtp.data.datamodules.bad_samples import BadSamplePolicy, CheckLevel
from mtp.data.datamodules.common import SeededLoaders, WorkerStartMethod
from mtp.data.datamodules.segmentation import SegmentationDataModule
from mtp.data.transforms.change import build_change_eval_transform, build_change_train_transform

__all__ = ["ChangeDetectionDataModule"]


class ChangeDetectionDataModule(SeededLoaders, lightning.LightningDataModule):
    """Train / val / test / predict loaders over change-detection datasets (YAML ``class_path`` + ``init_args``):
    :mod:`mtp.data.datasets.change_detection` folders or :class:`mtp.data.datasets.oscd.OSCDSentinel2`.

    Shallow copies of the datasets get the official transforms: ``train``
    :func:`~mtp.data.transforms.change.build_change_train_transform` (``crop_size``, ``cat_max_ratio``,
    rotation / flip / exchange probabilities, ``photometric``, ``train_resize``: 224 for OSCD); ``val``
    :func:`~mtp.data.transforms.change.build_change_eval_transform` with ``val_resize`` (official: the crop
    size, keep ratio); ``test`` / ``predict`` with ``test_resize`` (official: None; OSCD 224).
    Official batch: 4 pairs per GPU, 8 workers.

    Bad files: ``check`` ('quick' | 'full' | 'off') scans the datasets of each stage in :meth:`setup` and stops
    with the list of every bad file; ``on_bad_sample`` ('skip' | 'raise') decides what the train / val loaders
    do with a bad sample the check missed (skip and count: ``num_skipped_samples``); ``drop_last`` (None: only a last
    training batch of one sample, which breaks BatchNorm) as :class:`~mtp.data.datamodules.common.SeededLoaders`
    (:mod:`mtp.data.datamodules.bad_samples`).
    """

    train_collate = staticmethod(SegmentationDataModule.train_collate)
    eval_collate = staticmethod(SegmentationDataModule.eval_collate)

    def __init__(
        self,
        train: Dataset | None = None,
        val: Dataset | None = None,
        test: Dataset | None = None,
        predict: Dataset | None = None,
        crop_size: tuple[int, int] = (256, 256),
        cat_max_ratio: float = 0.75,
        rotate_prob: float = 0.5,
        flip_prob: float = 0.5,
        degree: tuple[float, float] = (-20.0, 20.0),
        exchange_prob: float = 0.5,
        photometric: bool = True,
        train_resize: int | None = None,
        val_resize: tuple[int, int] | None = None,
        test_resize: tuple[int, int] | None = None,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 8,
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
        train_tf = build_change_train_transform(
            crop_size,
            cat_max_ratio=cat_max_ratio,
            rotate_prob=rotate_prob,
            flip_prob=flip_prob,
            degree=tuple(degree),
            exchange_prob=exchange_prob,
            photometric=photometric,
            resize_to=train_resize,
        )
        test_tf = build_change_eval_transform(test_resize)
        self.set_stage_datasets(
            {"train": train, "val": val, "test": test, "predict": predict},
            {"train": train_tf, "val": build_change_eval_transform(val_resize), "test": test_tf, "predict": test_tf},
        )
