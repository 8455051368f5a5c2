"""Bad files in the datamodules: the start-up data check (``check``) and, during a run, bad samples that the check
missed (``on_bad_sample``), skipped and counted instead of ending a run after hours.

* ``check``: 'quick' (default) | 'full' | 'off' — :meth:`DataCheckHooks.setup` scans the datasets the stage
  uses (fit: train + val; validate: val; test: test; predict: predict) with
  :func:`mtp.data.datasets.checks.check_datasets` and stops with one error listing every bad file.
* ``on_bad_sample``: 'skip' (default) | 'raise' — for the train and val loaders. A sample whose loading raises a
  data error (``ValueError`` / ``OSError``, e.g. a mask value outside the classes, a truncated file) is replaced
  by the next loadable sample of the dataset (index + 1, + 2, ...; at most ``max_tries`` in a row, then the run
  stops with the list). Each skip travels with its batch (key :data:`SKIPPED_KEY`) to the main process, where
  :meth:`DataCheckHooks.on_before_batch_transfer` logs it once per file (WARNING, with the file and the problem)
  and counts it: ``datamodule.num_skipped_samples`` (occurrences) and ``datamodule.skipped_samples``
  ({message: count}) are what a task or a callback can report; the end of each stage logs a summary. Test and
  predict loaders always raise: a metric or a prediction set must not silently miss files.

Outside Lightning (a plain loop over the loaders) a batch that carried a skip keeps the :data:`SKIPPED_KEY` entry
(a list of messages); call :meth:`DataCheckHooks.on_before_batch_transfer` yourself to log and count it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import cv2
from torch.utils.data import Dataset, default_collate

from mtp.data.datasets.checks import check_datasets

__all__ = [
    "DATA_ERRORS",
    "SKIPPED_KEY",
    "BadSamplePolicy",
    "CheckLevel",
    "CollateWithSkips",
    "DataCheckHooks",
    "SkipBadSamples",
]

log = logging.getLogger(__name__)

CheckLevel = Literal["quick", "full", "off"]
BadSamplePolicy = Literal["skip", "raise"]
#: What loading a bad file raises (the readers turn decoder errors into ``ValueError`` naming the file).
DATA_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, EOFError, cv2.error)
SKIPPED_KEY = "skipped_samples"
STAGE_DATASETS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


class SkipBadSamples(Dataset):
    """``dataset[i]``, or when that raises one of :data:`DATA_ERRORS`, the next loadable sample (i + 1, ...); the
    sample dict then carries the messages of the skipped ones under :data:`SKIPPED_KEY`."""

    def __init__(self, dataset: Dataset, max_tries: int = 16) -> None:
        self.dataset, self.max_tries = dataset, int(max_tries)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        skipped: list[str] = []
        n = len(self.dataset)
        for k in range(min(self.max_tries, n)):
            try:
                sample = self.dataset[(index + k) % n]
            except DATA_ERRORS as e:
                skipped.append(str(e).strip() or type(e).__name__)
                continue
            if skipped and isinstance(sample, dict):
                sample = {**sample, SKIPPED_KEY: skipped}
            elif skipped:
                log.warning("skipped %d bad sample(s): %s", len(skipped), "; ".join(skipped))
            return sample
        last = index + len(skipped) - 1
        listing = "\n  ".join(skipped)
        raise ValueError(f"{len(skipped)} samples in a row could not be loaded (indices {index}..{last}):\n  {listing}")


class CollateWithSkips:
    """Wrap a collate function: take :data:`SKIPPED_KEY` out of the samples and put the messages on the batch."""

    def __init__(self, collate: Callable | None) -> None:
        self.collate = collate or default_collate

    def __call__(self, samples: Sequence[Any]) -> Any:
        skipped = [m for s in samples if isinstance(s, dict) for m in s.pop(SKIPPED_KEY, ())]
        batch = self.collate(samples)
        if skipped and isinstance(batch, dict):
            batch[SKIPPED_KEY] = skipped
        return batch


def pop_skipped(batch: Any) -> list[str]:
    """Remove and return the skip messages of a batch dict (or of a dict of batch dicts: pretraining)."""
    if not isinstance(batch, dict):
        return []
    found = list(batch.pop(SKIPPED_KEY, ()))
    for value in batch.values():
        if isinstance(value, dict):
            found += value.pop(SKIPPED_KEY, ())
    return found


class DataCheckHooks:
    """Mixin of the datamodules (before ``LightningDataModule`` in the bases): the ``check`` scan in
    :meth:`setup`, the skip counter in :meth:`on_before_batch_transfer`, and the loader wrappers
    (module docstring). Needs ``check`` and ``on_bad_sample`` attributes; datasets are read from
    ``<name>_dataset`` attributes unless :meth:`datasets_for_stage` is overridden."""

    check: CheckLevel = "quick"
    on_bad_sample: BadSamplePolicy = "skip"

    @staticmethod
    def validate_options(check: str, on_bad_sample: str) -> None:
        if check not in ("quick", "full", "off"):
            raise ValueError(f"check must be 'quick', 'full' or 'off', got {check!r}")
        if on_bad_sample not in ("skip", "raise"):
            raise ValueError(f"on_bad_sample must be 'skip' or 'raise', got {on_bad_sample!r}")

    def datasets_for_stage(self, stage: str | None) -> dict[str, Any]:
        names = STAGE_DATASETS.get(stage or "", ("train", "val", "test", "predict"))
        return {n: getattr(self, f"{n}_dataset", None) for n in names}

    def run_data_check(self, datasets: Mapping[str, Any]) -> None:
        """Scan the given datasets (not None, not scanned before) at the ``check`` level; raise the list."""
        checked = self.__dict__.setdefault("_checked_datasets", set())
        todo = {n: ds for n, ds in datasets.items() if ds is not None and id(ds) not in checked}
        if self.check == "off" or not todo:
            return
        hint = (f"(the datamodule's `check: {self.check}` scan; fix or remove these files, list them without starting "
                "a run with `mtp tool check-data --config CONFIG.yaml`, or set `check: off`)")  # fmt: skip
        check_datasets(todo, self.check, hint=hint)
        checked.update(id(ds) for ds in todo.values())

    def setup(self, stage: str | None = None) -> None:
        """Lightning hook: the start-up data check of the datasets ``stage`` uses (module docstring)."""
        self.run_data_check(self.datasets_for_stage(stage))

    def guard(self, dataset: Dataset, collate: Callable | None, train_or_val: bool) -> tuple[Dataset, Callable | None]:
        """(dataset, collate) for a loader: wrapped with :class:`SkipBadSamples` / :class:`CollateWithSkips` for the
        train and val loaders when ``on_bad_sample='skip'``."""
        if not train_or_val or self.on_bad_sample != "skip":
            return dataset, collate
        return SkipBadSamples(dataset), CollateWithSkips(collate)

    @property
    def skipped_samples(self) -> dict[str, int]:
        """{message naming the file and the problem: times skipped} since the datamodule was made."""
        return self.__dict__.setdefault("_skipped_samples", {})

    @property
    def num_skipped_samples(self) -> int:
        """Samples skipped so far (occurrences, every epoch counted)."""
        return sum(self.skipped_samples.values())

    def record_skipped(self, messages: Sequence[str]) -> None:
        """Count skip messages; log each file the first time it is skipped."""
        for message in messages:
            if message not in self.skipped_samples:
                log.warning("bad sample skipped (on_bad_sample='skip'): %s", message)
            self.skipped_samples[message] = self.skipped_samples.get(message, 0) + 1

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning hook (main process): take the skip messages off the batch, log and count them."""
        self.record_skipped(pop_skipped(batch))
        return batch

    def teardown(self, stage: str | None = None) -> None:
        """Lightning hook: a summary of the samples skipped so far."""
        if self.skipped_samples:
            log.warning("%d sample(s) of %d file(s) were skipped as unreadable (on_bad_sample='skip'); run "
                        "`mtp tool check-data --level full` to list every bad file", self.num_skipped_samples,
                        len(self.skipped_samples))  # fmt: skip
