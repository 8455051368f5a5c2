"""LightningDataModule for scene classification with the official (mmpretrain) pipelines built by timm.

Transforms: :mod:`mtp.data.transforms.classification`.

Batch dict (default collate): ``"image"`` float32 (B, 3, img_size, img_size); ``"label"`` int64 (B,);
``"image_path"`` list[str].

Randomness (as :mod:`mtp.data.datamodules.segmentation`): the training loader's ``torch.Generator`` is seeded with
``seed + global_rank``; it drives the shuffle and the worker seeds (torch seeds ``torch``, ``random``
and numpy in each worker, which is what timm's augmentations draw from). With ``num_workers=0`` the
augmentations run on private ``random`` / numpy / torch streams derived from the seed, so they neither
depend on nor disturb the global RNGs (model init, dropout, drop path).
"""

from __future__ import annotations

import random
from typing import Any

import lightning
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from mtp.data.datamodules.bad_samples import BadSamplePolicy, CheckLevel
from mtp.data.datamodules.common import SeededLoaders, WorkerStartMethod
from mtp.data.datasets.classification import ClassificationDataset
from mtp.data.transforms.classification import build_eval_transform, build_train_transform

__all__ = ["ClassificationDataModule"]


class _SeededAugmentation(Dataset):
    """In the main process, run ``dataset[i]`` on private ``random`` / numpy / torch streams seeded from
    ``seed``; in worker processes use the worker's own (seeded) global generators."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed
        self._states: tuple | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        if get_worker_info() is not None:
            return self.dataset[index]
        if self._states is None:
            py = random.Random(self.seed).getstate()
            npy = np.random.RandomState(self.seed % 2**32).get_state()
            self._states = (py, npy, torch.Generator().manual_seed(self.seed).get_state())
        saved = (random.getstate(), np.random.get_state())
        with torch.random.fork_rng(devices=[]):
            random.setstate(self._states[0])
            np.random.set_state(self._states[1])
            torch.set_rng_state(self._states[2])
            try:
                return self.dataset[index]
            finally:
                self._states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
                random.setstate(saved[0])
                np.random.set_state(saved[1])


class ClassificationDataModule(SeededLoaders, lightning.LightningDataModule):
    """Train / val / test / predict loaders over :class:`ClassificationDataset` objects (YAML: ``class_path``
    + ``init_args``). Shallow copies of the datasets get the official transforms (module docstring);
    ``keep_dataset_transforms=True`` keeps a dataset's own ``transform`` when it is not None.

    Args:
        img_size: crop size (224 official). crop_pct: eval centre-crop fraction (224/256 official).
        auto_augment: timm RandAugment string (None: off). re_prob / re_mode: RandomErasing.
        scale / hflip: RandomResizedCrop scale range, flip probability.
        batch_size: per device (official 8). eval_batch_size: val / test / predict batch.
        seed: augmentation / shuffle seed (plus the global rank).

    Bad files: ``check`` ('quick' | 'full' | 'off') scans the datasets of each stage in :meth:`setup` and stops
    with the list of every bad file; ``on_bad_sample`` ('skip' | 'raise') decides what the train / val loaders
    do with a bad sample the check missed (skip and count: ``num_skipped_samples``); ``drop_last`` (None: only a last
    training batch of one sample, which breaks BatchNorm) as :class:`~mtp.data.datamodules.common.SeededLoaders`
    (:mod:`mtp.data.datamodules.bad_samples`).
    """

    augmentation_rng = _SeededAugmentation

    def __init__(
        self,
        train: ClassificationDataset | None = None,
        val: ClassificationDataset | None = None,
        test: ClassificationDataset | None = None,
        predict: ClassificationDataset | None = None,
        img_size: int = 224,
        crop_pct: float = 224 / 256,
        scale: tuple[float, float] = (0.08, 1.0),
        hflip: float = 0.5,
        auto_augment: str | None = "rand-m9-n2-mstd0.5-inc1",
        re_prob: float = 0.25,
        re_mode: str = "pixel",
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 4,
        persistent_workers: bool = True,
        worker_start_method: WorkerStartMethod = "forkserver",
        pin_memory: bool = True,
        drop_last: bool | None = None,
        seed: int = 0,
        keep_dataset_transforms: bool = False,
        check: CheckLevel = "quick",
        on_bad_sample: BadSamplePolicy = "skip",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["train", "val", "test", "predict"])
        self.apply_loader_options()
        train_tf = build_train_transform(
            img_size, scale=scale, hflip=hflip, auto_augment=auto_augment, re_prob=re_prob, re_mode=re_mode
        )
        eval_tf = build_eval_transform(img_size, crop_pct=crop_pct)
        self.set_stage_datasets(
            {"train": train, "val": val, "test": test, "predict": predict},
            {"train": train_tf, "val": eval_tf, "test": eval_tf, "predict": eval_tf},
        )
        self._check_class_lists()

    def _datasets(self) -> dict[str, Dataset]:
        named = zip(("train", "val", "test", "predict"), self.stage_datasets(), strict=True)
        return {k: v for k, v in named if v is not None}

    def _check_class_lists(self) -> None:
        """Every labelled split must use the same class list in the same order."""
        lists = {k: list(v.classes) for k, v in self._datasets().items() if getattr(v, "classes", None)}
        first = next(iter(lists.items()), None)
        for name, classes in lists.items():
            if classes != first[1]:
                raise ValueError(f"the {name} dataset's classes {classes} differ from the {first[0]} ones {first[1]}")

    @property
    def classes(self) -> list[str] | None:
        for ds in self._datasets().values():
            if getattr(ds, "classes", None):
                return list(ds.classes)
        return None

    @property
    def num_classes(self) -> int | None:
        classes = self.classes
        return len(classes) if classes is not None else None
