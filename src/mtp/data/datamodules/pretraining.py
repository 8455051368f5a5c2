"""LightningDataModule for MTP multi-task pretraining on SAMRS (SOTA, SIOR, FAST; docs/RECIPES.md#samrs-data).

Training: ``train_dataloader()`` returns ``CombinedLoader({name: DataLoader}, mode="min_size")`` — the
official ``zip`` of the per-dataset loaders: one step gets one batch of every dataset and the epoch ends with the
shortest loader (use ``Trainer(max_steps=80_000)``; epochs simply restart, reshuffled). Every loader shuffles
with ``drop_last=True`` and augments in its DataLoader workers (:class:`~mtp.data.transforms.samrs.
SAMRSTrainTransform`). ``training_step`` receives ``{name: batch}``.

Validation: ``val_dataloader()`` returns one DataLoader per dataset, in ``datasets`` order
(``validation_step(batch, batch_idx, dataloader_idx)``; ``batch["dataset"]`` names it). Unlike the official
script (which zips the three val loaders, i.e. evaluates only as many batches as the shortest has) every
validation image is used.

Per-GPU batch sizes (``batch_mode``): ``avg`` → ``int(batch_size / n)`` per dataset; ``ratio`` →
``int(batch_size · N_d / ΣN)`` with the official image counts N (SOTA 17480, SIOR 11725, FAST 64147; a dataset
that would get 0 images is an error). ``batch_size_val`` is split the same way. ``num_workers`` is *per
dataset loader* (the official ``--workers 8`` split over three datasets is ``num_workers=2``).

Batch dict of one dataset (:func:`collate_samrs`), B images:

* ``"image"``: float32 (B, 3, S, S) normalised RGB (validation: padded to the batch maximum, a multiple of 32);
* ``"semantic"``: train int64 (B, S, S) (0 background, c + 1 class c, 255 ignore / padding); validation a list of
  int64 (H, W) at the original size;
* ``"boxes"`` list of float32 (N, 4) xyxy; ``"labels"`` list of int64 (N,) 0-based; ``"masks"`` list of uint8
  (N, h, w) (train S×S, validation original size); ``"rboxes"`` list of float32 (M, 5) le90 (cx, cy, w, h, θ
  rad); ``"rlabels"`` list of int64 (M,) 0-based; train targets in crop pixels, validation targets in original
  pixels (divide predictions by ``scale_factor``);
* ``"image_id"``, ``"image_path"``, ``"scale_factor"`` (sx, sy), ``"img_hw"``, ``"ori_hw"``: lists;
  ``"dataset"``: the dataset name (str).

Distributed training: Lightning 2.6 processes every DataLoader inside a ``CombinedLoader`` separately
(``fit_loop.setup_data`` → ``_process_dataloader`` per flattened loader), so under DDP each per-dataset loader
gets its own ``DistributedSampler`` (shuffle, seed ``PL_GLOBAL_SEED`` or 0, same on every rank) and Lightning
calls ``set_epoch`` on each at every epoch start. With ``Trainer(use_distributed_sampler=False)`` or outside
Lightning while ``torch.distributed`` is initialised, this module creates the ``DistributedSampler`` objects
itself (seed ``seed``); call :meth:`set_epoch` each epoch in a plain loop.

Randomness: loader k of global rank r gets a generator seeded from (seed, r, k): it drives the shuffle (without a
distributed sampler) and the worker seeds (torch seeds worker w with ``base_seed + w`` and also seeds ``random``
/ numpy), so workers, datasets and ranks differ and a run is reproducible from ``seed`` (official 2023). With
``num_workers=0`` augmentation uses a private RNG stream (:class:`mtp.data.datamodules.segmentation._AugmentationRNG`).
Rejected samples are redrawn by the dataset with the same (worker) generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning
import numpy as np
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mtp.data.datamodules.bad_samples import BadSamplePolicy, DataCheckHooks
from mtp.data.datamodules.common import WorkerStartMethod, _AugmentationRNG, worker_process_options
from mtp.data.datasets.samrs import SAMRS_IMAGE_COUNTS, SAMRS_LAYOUTS, SAMRSDataset
from mtp.data.transforms.samrs import SAMRSEvalTransform, SAMRSTrainTransform

__all__ = ["PretrainingDataModule", "collate_samrs", "per_dataset_batch_sizes"]

LIST_KEYS = ("boxes", "labels", "masks", "rboxes", "rlabels", "image_id", "image_path", "scale_factor", "img_hw",
             "ori_hw")  # fmt: skip


def per_dataset_batch_sizes(total: int, datasets: Sequence[str], mode: str, what: str = "batch_size") -> dict[str, int]:
    """Official batch split: ``avg`` → ``int(total / n)``; ``ratio`` → ``int(total · N_d / ΣN)`` (module
    docstring). ``ValueError`` when a dataset would get 0 images."""
    if mode == "avg":
        sizes = {d: int(total / len(datasets)) for d in datasets}
    elif mode == "ratio":
        n_all = sum(SAMRS_IMAGE_COUNTS[d] for d in datasets)
        sizes = {d: int(total * SAMRS_IMAGE_COUNTS[d] / n_all) for d in datasets}
    else:
        raise ValueError(f"batch_mode must be 'avg' or 'ratio', got {mode!r}")
    empty = [d for d, b in sizes.items() if b < 1]
    if empty:
        raise ValueError(f"{what}={total} with batch_mode={mode!r} gives 0 images per step to {empty} "
                         f"(per-dataset sizes {sizes}); increase {what}")  # fmt: skip
    return sizes


def collate_samrs(samples: Sequence[dict[str, Any]], dataset: str, train: bool, divisor: int = 32) -> dict[str, Any]:
    """Batch transformed samples of one dataset (module docstring)."""
    images = [s["image"] for s in samples]
    hp = -(-max(int(t.shape[-2]) for t in images) // divisor) * divisor
    wp = -(-max(int(t.shape[-1]) for t in images) // divisor) * divisor
    if train:
        hp, wp = images[0].shape[-2:]  # the train transform pads to exactly S x S
    batch_image = images[0].new_zeros((len(images), 3, hp, wp))
    for i, t in enumerate(images):
        batch_image[i, :, : t.shape[-2], : t.shape[-1]] = t
    semantic = [s["semantic"] for s in samples]
    batch: dict[str, Any] = {"image": batch_image, "semantic": torch.stack(semantic) if train else semantic}
    for key in LIST_KEYS:
        batch[key] = [s[key] for s in samples]
    batch["dataset"] = dataset
    return batch


class _Collate:
    """Picklable collate function bound to a dataset name (DataLoader workers)."""

    def __init__(self, dataset: str, train: bool) -> None:
        self.dataset, self.train = dataset, train

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate_samrs(samples, self.dataset, self.train)


#: ``check`` -> the consistency-check level of :class:`SAMRSDataset` (the legacy 'files' / 'headers' are accepted).
#: 'full' cross-checks headers here; the scan then decodes every file and checks every gray map on its own.
SAMRS_CHECK = {"off": "files", "quick": "headers", "full": "headers", "files": "files", "headers": "headers"}


class PretrainingDataModule(DataCheckHooks, lightning.LightningDataModule):
    """SAMRS loaders for multi-task pretraining (module docstring). ``root`` holds the official layout of each set
    (``dotav2_1024_rbb/``, ``dior/``, ``fair1m_1024/``; :mod:`mtp.data.datasets.samrs_formats`); ``roots``
    overrides it per dataset.

    Bad files: ``check`` 'quick' (default: the json / images / gray maps / box files cross-checked from headers,
    then every image and gray-map header scanned), 'full' (every file decoded, gray values checked) or 'off'
    (existence only; the legacy 'files' / 'headers' levels still work) — every problem of a split is reported at
    once before training; ``on_bad_sample`` 'skip' | 'raise' as :mod:`mtp.data.datamodules.bad_samples`. Training
    loaders always drop their last incomplete batch (the official ``drop_last``)."""

    def __init__(
        self,
        root: str = "data/samrs",
        datasets: Sequence[str] = ("sota", "sior", "fast"),
        image_size: int = 448,
        batch_size: int = 3,
        batch_size_val: int = 3,
        batch_mode: Literal["avg", "ratio"] = "avg",
        num_workers: int = 0,
        seed: int = 2023,
        roots: dict[str, str] | None = None,
        check: Literal["quick", "full", "off", "files", "headers"] = "quick",
        ratio_range: tuple[float, float] = (0.5, 2.0),
        photometric: bool = True,
        persistent_workers: bool = True,
        worker_start_method: WorkerStartMethod = "forkserver",
        pin_memory: bool = True,
        on_bad_sample: BadSamplePolicy = "skip",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if check not in SAMRS_CHECK:
            raise ValueError(f"check must be 'quick', 'full' or 'off', got {check!r}")
        self.validate_options("off" if check in ("files", "headers") else check, on_bad_sample)
        self.on_bad_sample = on_bad_sample
        unknown = [d for d in datasets if d not in SAMRS_LAYOUTS]
        if unknown or not datasets or len(set(datasets)) != len(datasets):
            raise ValueError(f"datasets must be distinct names out of {tuple(SAMRS_LAYOUTS)}, got {tuple(datasets)}")
        self.datasets = tuple(datasets)
        self.roots = {d: str((roots or {}).get(d, root)) for d in self.datasets}
        self.image_size = int(image_size)
        self.batch_sizes = per_dataset_batch_sizes(batch_size, self.datasets, batch_mode)
        self.batch_sizes_val = per_dataset_batch_sizes(batch_size_val, self.datasets, batch_mode, "batch_size_val")
        self.num_workers = int(num_workers)
        self.persistent_workers = persistent_workers and num_workers > 0
        self.worker_start_method = worker_start_method
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.seed = int(seed)
        self.check = check if check in ("quick", "full", "off") else "off"  # legacy levels: no extra scan
        self.samrs_check = SAMRS_CHECK[check]
        self.train_transform = SAMRSTrainTransform(self.image_size, ratio_range=ratio_range, photometric=photometric)
        self.val_transform = SAMRSEvalTransform(self.image_size)
        self.train_sets: dict[str, SAMRSDataset] = {}
        self.val_sets: dict[str, SAMRSDataset] = {}
        self._own_samplers: list[DistributedSampler] = []

    # ------------------------------------------------------------------ what the model needs
    @property
    def dataset_names(self) -> tuple[str, ...]:
        return self.datasets

    def class_lists(self) -> dict[str, tuple[str, ...]]:
        """{dataset: object classes (18 / 20 / 37, label order)}, in ``datasets`` order."""
        return {d: SAMRS_LAYOUTS[d].classes for d in self.datasets}

    def semantic_class_lists(self) -> dict[str, tuple[str, ...]]:
        """{dataset: ('background',) + classes} (semantic label c + 1 = class c)."""
        return {d: ("background", *c) for d, c in self.class_lists().items()}

    @property
    def num_classes(self) -> dict[str, int]:
        """{dataset: number of object classes (without background)}."""
        return {d: len(c) for d, c in self.class_lists().items()}

    # ------------------------------------------------------------------ datasets
    def datasets_for_stage(self, stage: str | None) -> dict[str, SAMRSDataset]:
        """Build (and cross-check) the train sets for 'fit' and the valid sets for 'fit' / 'validate' (None: both);
        returns them as ``{"<set> train" | "<set> valid": dataset}``."""
        out: dict[str, SAMRSDataset] = {}
        for d in self.datasets:
            if stage in (None, "fit"):
                if d not in self.train_sets:
                    self.train_sets[d] = SAMRSDataset(self.roots[d], d, "train", self.train_transform,
                                                      check=self.samrs_check, lazy_masks=True)  # fmt: skip
                out[f"{d} train"] = self.train_sets[d]
            if stage in (None, "fit", "validate"):
                if d not in self.val_sets:
                    self.val_sets[d] = SAMRSDataset(self.roots[d], d, "valid", self.val_transform,
                                                    check=self.samrs_check)  # fmt: skip
                out[f"{d} valid"] = self.val_sets[d]
        return out

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of ``stage`` (:meth:`datasets_for_stage`), then scan them at the ``check`` level."""
        self.run_data_check(self.datasets_for_stage(stage))

    def _rank_world(self) -> tuple[int, int, bool]:
        """(rank, world size, whether this module must create the distributed samplers itself)."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            connector = getattr(trainer, "_accelerator_connector", None)  # Trainer(use_distributed_sampler=...)
            lightning_injects = getattr(connector, "use_distributed_sampler", True)
            return int(trainer.global_rank), int(trainer.world_size), not lightning_injects
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size(), True
        return 0, 1, False

    def _generator(self, rank: int, k: int) -> torch.Generator:
        return torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, rank, k]).generate_state(1)[0]))

    def _loader(self, dataset: Dataset, name: str, batch_size: int, train: bool, k: int) -> DataLoader:
        rank, world, own = self._rank_world()
        sampler = None
        if train and own and world > 1:
            sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed,
                                         drop_last=True)  # fmt: skip
            self._own_samplers.append(sampler)
        generator = self._generator(rank, k)
        dataset, collate = self.guard(dataset, _Collate(name, train), train_or_val=True)
        if train:
            aug_seed = int(torch.randint(2**62, (), generator=self._generator(rank, 1000 + k)).item())
            dataset = _AugmentationRNG(dataset, aug_seed)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate,
            generator=generator,
            drop_last=train,
            **worker_process_options(self.num_workers, self.worker_start_method),
        )

    def train_dataloader(self) -> CombinedLoader:
        self.setup("fit")
        self._own_samplers = []
        loaders = {d: self._loader(self.train_sets[d], d, self.batch_sizes[d], True, k)
                   for k, d in enumerate(self.datasets)}  # fmt: skip
        return CombinedLoader(loaders, mode="min_size")

    def val_dataloader(self) -> list[DataLoader]:
        self.setup("validate")
        return [
            self._loader(self.val_sets[d], d, self.batch_sizes_val[d], False, k) for k, d in enumerate(self.datasets)
        ]

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the distributed samplers this module created (plain training loops only;
        Lightning does this itself)."""
        for sampler in self._own_samplers:
            sampler.set_epoch(epoch)
