"""Loader construction shared by the task datamodules: seeded shuffling and augmentation streams, the worker
start method, and the padded detection collate.

Randomness: the training loader gets a ``torch.Generator`` seeded with ``seed + global_rank``; it drives the
shuffle and the per-worker seeds (torch seeds worker ``k`` with ``base_seed + k`` and also seeds ``random``
and numpy), so workers differ and a run is reproducible from ``seed``. With ``num_workers=0`` the
augmentations draw from a private torch RNG stream seeded from a value derived from it, so they neither depend on
nor disturb the global RNG (model init, dropout). Resuming from a checkpoint restarts these streams.
"""

from __future__ import annotations

import copy
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from mtp.data.datamodules.bad_samples import DataCheckHooks
from mtp.data.datasets.checks import FORKSERVER_PRELOAD

__all__ = ["SeededLoaders", "WorkerStartMethod", "collate_padded", "limit_worker_threads", "worker_process_options"]

#: How DataLoader worker processes start. "forkserver" (default) and "spawn" give each worker a fresh interpreter,
#: so no lock held by an OpenMP / OpenCV / torch thread of the parent can be inherited in a locked state (the
#: cause of forked workers that hang); "fork" starts fastest but is only safe in single-threaded parents. As with
#: any non-fork start method, a script that builds loaders at import time needs ``if __name__ == "__main__":``.
WorkerStartMethod = Literal["forkserver", "spawn", "fork"]

#: Imported once by the fork server (a single-threaded process), so each worker forked from it starts in
#: milliseconds instead of importing torch and the readers again. One list for the DataLoader workers and the data
#: check's processes: whichever starts the (process-wide) fork server first sets what it preloads.
_FORKSERVER_PRELOAD = FORKSERVER_PRELOAD


def limit_worker_threads(_: int) -> None:
    """``worker_init_fn``: one OpenCV thread per worker, since the workers are the parallelism (torch already
    uses one thread in DataLoader workers). Only for fresh workers: calling into OpenCV's thread pool in a
    forked child of a multi-threaded parent can deadlock."""
    import cv2

    cv2.setNumThreads(1)


def worker_process_options(num_workers: int, start_method: WorkerStartMethod) -> dict[str, Any]:
    """DataLoader keyword arguments for ``num_workers`` worker processes started with ``start_method``."""
    if start_method not in ("forkserver", "spawn", "fork"):
        raise ValueError(f"worker_start_method must be 'forkserver', 'spawn' or 'fork', got {start_method!r}")
    if num_workers == 0:
        return {}
    if start_method == "fork":
        return {"multiprocessing_context": multiprocessing.get_context("fork")}
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        context.set_forkserver_preload(_FORKSERVER_PRELOAD)  # takes effect when the server first starts
    return {"multiprocessing_context": context, "worker_init_fn": limit_worker_threads}


def collate_padded(samples: Sequence[dict[str, Any]], list_keys: Sequence[str], divisor: int = 32) -> dict[str, Any]:
    """Detection-style batching: ``"image"`` (B, C, Hp, Wp), each image padded bottom/right with 0 to the batch
    maximum rounded up to ``divisor``; every key in ``list_keys`` as a list (tensors as plain tensors). Missing
    metadata gets defaults: ``scale_factor`` (1, 1), ``img_hw`` / ``ori_hw`` = the image size."""
    images = [s["image"].as_subclass(torch.Tensor) for s in samples]
    hp = -(-max(int(t.shape[-2]) for t in images) // divisor) * divisor
    wp = -(-max(int(t.shape[-1]) for t in images) // divisor) * divisor
    batch_image = images[0].new_zeros((len(images), images[0].shape[0], hp, wp))
    for i, t in enumerate(images):
        batch_image[i, :, : t.shape[-2], : t.shape[-1]] = t
    batch: dict[str, Any] = {"image": batch_image}
    for key in list_keys:
        values = []
        for s, t in zip(samples, images, strict=True):
            v = s.get(key)
            if v is None:
                v = {"scale_factor": (1.0, 1.0), "img_hw": tuple(t.shape[-2:]), "ori_hw": tuple(t.shape[-2:])}.get(key)
            if isinstance(v, torch.Tensor):
                v = v.as_subclass(torch.Tensor)
            values.append(v)
        batch[key] = values
    return batch


class _AugmentationRNG(Dataset):
    """In the main process (``num_workers=0``) run ``dataset[i]`` on a private torch RNG stream seeded with
    ``seed``; in worker processes use the worker's own (seeded) global generator."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self._state: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        if get_worker_info() is not None:
            return self.dataset[index]
        if self._state is None:
            self._state = torch.Generator().manual_seed(self.seed).get_state()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._state)
            try:
                return self.dataset[index]
            finally:
                self._state = torch.get_rng_state()


class SeededLoaders(DataCheckHooks):
    """DataLoader construction shared by the task datamodules (mixed into a ``LightningDataModule``).

    Needs ``train_dataset`` / ``val_dataset`` / ``test_dataset`` / ``predict_dataset``, ``batch_size``,
    ``eval_batch_size``, ``num_workers``, ``persistent_workers``, ``pin_memory``, ``seed`` and
    ``worker_start_method`` (:data:`WorkerStartMethod`; datasets and collates must be picklable); subclasses set
    ``train_collate`` / ``eval_collate`` (None: torch's default) and ``augmentation_rng`` (the wrapper giving
    each sample a private, seeded augmentation stream). The training loader shuffles with a generator seeded
    ``seed + global_rank`` (module docstring). ``drop_last`` (instance attribute): None (auto) drops the last
    training batch exactly when it would hold a single sample while ``batch_size > 1`` (per rank under DDP): such
    a batch stops a model with BatchNorm over pooled features mid-epoch ("Expected more than 1 value per
    channel"); True drops every incomplete last batch, False none. The data check (``check``) and bad-sample
    policy (``on_bad_sample``) come from :class:`~mtp.data.datamodules.bad_samples.DataCheckHooks`.
    """

    train_collate: Callable | None = None
    eval_collate: Callable | None = None
    augmentation_rng: type[Dataset] = _AugmentationRNG

    def apply_loader_options(self) -> None:
        """Sets the loader attributes listed above from ``self.hparams`` (call after ``save_hyperparameters``):
        ``persistent_workers`` only with workers, ``pin_memory`` only with CUDA; validates ``check`` and
        ``on_bad_sample``."""
        h = self.hparams
        self.validate_options(h["check"], h["on_bad_sample"])
        self.batch_size, self.eval_batch_size, self.seed = h["batch_size"], h["eval_batch_size"], h["seed"]
        self.num_workers, self.worker_start_method = h["num_workers"], h["worker_start_method"]
        self.persistent_workers = h["persistent_workers"] and h["num_workers"] > 0
        self.pin_memory = h["pin_memory"] and torch.cuda.is_available()
        self.check, self.on_bad_sample, self.drop_last = h["check"], h["on_bad_sample"], h["drop_last"]

    def set_stage_datasets(self, datasets: Mapping[str, Dataset | None], transforms: Mapping[str, Callable]) -> None:
        """``{stage}_dataset`` for stage in train / val / test / predict: a shallow copy of ``datasets[stage]`` (the
        caller's object is not modified) with ``transforms[stage]`` set, unless ``hparams.keep_dataset_transforms``
        and the dataset has its own ``transform``."""
        keep = bool(self.hparams.get("keep_dataset_transforms", False))
        for stage in ("train", "val", "test", "predict"):
            dataset = datasets.get(stage)
            if dataset is not None:
                dataset = copy.copy(dataset)
                if not (keep and getattr(dataset, "transform", None) is not None):
                    dataset.transform = transforms[stage]
            setattr(self, f"{stage}_dataset", dataset)

    def stage_datasets(self) -> tuple[Dataset | None, ...]:
        """The train, val, test and predict datasets (None where not given)."""
        return self.train_dataset, self.val_dataset, self.test_dataset, self.predict_dataset

    @property
    def num_classes(self) -> int | None:
        """``num_classes`` of the first dataset that has one (train, val, test, predict)."""
        return next((ds.num_classes for ds in self.stage_datasets() if hasattr(ds, "num_classes")), None)

    @property
    def classes(self) -> tuple[str, ...] | None:
        """Class names of the first dataset that has them (train, val, test, predict)."""
        return next((tuple(ds.classes) for ds in self.stage_datasets() if hasattr(ds, "classes")), None)

    def _rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_rank) if trainer is not None else 0

    def _worker_options(self) -> dict[str, Any]:
        return worker_process_options(self.num_workers, getattr(self, "worker_start_method", "forkserver"))

    def _eval_loader(self, dataset: Dataset | None, val: bool = False) -> DataLoader | list:
        if dataset is None:
            return []  # Lightning skips the loop
        dataset, collate = self.guard(dataset, type(self).eval_collate, train_or_val=val)
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate,
            **self._worker_options(),
        )

    def drops_last_batch(self) -> bool:
        """Whether the training loader drops its last incomplete batch (class docstring); ``ValueError`` when that
        would leave no batch at all."""
        trainer = getattr(self, "trainer", None)
        world = int(trainer.world_size) if trainer is not None else 1
        per_rank = -(-len(self.train_dataset) // world)  # DistributedSampler pads to equal shares
        value = getattr(self, "drop_last", None)
        drop = (self.batch_size > 1 and per_rank % self.batch_size == 1) if value is None else bool(value)
        if drop and per_rank < self.batch_size:
            raise ValueError(f"{type(self).__name__}: the train dataset has {len(self.train_dataset)} sample(s) "
                             f"({per_rank} per process), fewer than batch_size={self.batch_size}: its only batch "
                             "would be dropped (a batch of one sample breaks BatchNorm); lower batch_size or add "
                             "samples")  # fmt: skip
        return drop

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError(f"{type(self).__name__}: no train dataset was given")
        drop_last = self.drops_last_batch()
        seed = self.seed + self._rank()
        dataset, collate = self.guard(self.train_dataset, type(self).train_collate, train_or_val=True)
        return DataLoader(
            self.augmentation_rng(dataset, (seed + 1) * 0x9E3779B97F4A7C15 % 2**63),
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(seed),
            drop_last=drop_last,
            **self._worker_options(),
        )

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.val_dataset, val=True)

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.predict_dataset)
