"""Data checks: find every bad file of a dataset before training, not hours into it.

The engine of ``mtp tool check-data`` and of the datamodules' ``check`` option. Levels (:data:`CHECK_LEVELS`):

* ``'quick'``: headers only — every image readable (not empty, an image format), not truncated (PNG end chunk,
  JPEG end marker, TIFF last block inside the file), accepted by the dataset's raster rule (bands, data type);
  label maps single-channel; partner files present; sizes that agree (image / mask / image B / label / the size
  an annotation states). Annotation files are parsed when the dataset is built (each reader lists every bad
  annotation file at once).
* ``'full'``: the quick checks, then every file decoded as training reads it (``load_sample``): corrupt pixel data,
  NaN / Inf values, mask values against the class count and the ignore index, change labels against
  ``label_values``, SAMRS gray values and instance masks.

Datasets take part through ``check_item(index, level)``, which raises ``ValueError`` / ``OSError`` naming the file
at the first problem of item ``index``, and optionally ``scan_size()`` (the number of items when it differs from
``len``: detection sets that hide images without objects). A dataset without ``check_item`` is checked at the
'full' level only, by reading ``dataset[i]``.

Parallelism: 'quick' runs ``workers`` threads (header reads wait on the disk and release the GIL), 'full' runs
``workers`` processes (decoding needs CPUs; the dataset is sent once to each process, started with the
``forkserver`` method). ``workers <= 1`` checks in the calling thread.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CHECK_LEVELS",
    "FORKSERVER_PRELOAD",
    "DataCheckError",
    "DataProblem",
    "ScanReport",
    "check_datasets",
    "scan_dataset",
]

log = logging.getLogger(__name__)

CHECK_LEVELS = ("quick", "full")


@dataclass(frozen=True)
class DataProblem:
    """One bad item: the ``dataset`` it belongs to (e.g. 'train'), its ``index`` and the ``message`` (which names
    the file and the problem)."""

    dataset: str
    index: int
    message: str

    def __str__(self) -> str:
        return f"[{self.dataset}] {self.message}"


@dataclass
class ScanReport:
    """What :func:`scan_dataset` found: ``num_items`` checked at ``level`` in ``seconds``, ``problems``."""

    name: str
    level: str
    num_items: int
    seconds: float
    problems: list[DataProblem] = field(default_factory=list)


class DataCheckError(ValueError):
    """The data check found bad files; ``problems`` lists all of them (the message shows up to ``shown``)."""

    def __init__(self, reports: Sequence[ScanReport], hint: str = "", shown: int = 200) -> None:
        self.reports = list(reports)
        self.problems = [p for r in self.reports for p in r.problems]
        level = self.reports[0].level if self.reports else "quick"
        scanned = " + ".join(f"{r.num_items} {r.name}" for r in self.reports)
        lines = [f"data check ({level}) found {len(self.problems)} problem(s) in {scanned} item(s):"]
        lines += [f"  {p}" for p in self.problems[:shown]]
        if len(self.problems) > shown:
            lines.append(f"  ... and {len(self.problems) - shown} more")
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


def _describe(error: BaseException, index: int) -> str:
    message = str(error).strip() or type(error).__name__
    if isinstance(error, (ValueError, OSError)):
        return message
    return f"item {index}: {type(error).__name__}: {message}"


def _check_chunk(dataset: Any, indices: Sequence[int], level: str) -> list[tuple[int, str]]:
    found = []
    check = getattr(dataset, "check_item", None)
    for i in indices:
        try:
            if check is not None:
                check(i, "quick")  # headers first: the clearest message for a truncated or foreign file
                if level == "full":
                    check(i, "full")
            elif level == "full":
                dataset[i]
        except Exception as e:  # a data check reports every failure as a problem of that file
            found.append((i, _describe(e, i)))
    return found


_worker_dataset: Any = None


def _init_worker(dataset: Any) -> None:
    global _worker_dataset
    import torch

    torch.set_num_threads(1)  # the processes are the parallelism (as in DataLoader workers)
    _worker_dataset = dataset


def _check_chunk_in_worker(indices: Sequence[int], level: str) -> list[tuple[int, str]]:
    return _check_chunk(_worker_dataset, indices, level)


def default_workers() -> int:
    """CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


#: Imported once by the fork server, so each process forked from it (the check's, and the DataLoader workers of the
#: datamodules, which share the process-wide server) starts in milliseconds instead of importing torch again.
FORKSERVER_PRELOAD = ["__main__", "numpy", "cv2", "PIL.Image", "rasterio", "torch", "torchvision.transforms.v2",
                      "mtp.data.datasets.checks", "mtp.data.datamodules"]  # fmt: skip
#: Below this many items a 'full' check runs in the calling process (starting processes costs seconds).
MIN_ITEMS_PER_PROCESS = 32


def _executor(dataset: Any, level: str, workers: int) -> Executor:
    if level == "quick":
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check-data")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)  # takes effect when the server first starts
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(dataset,))


def scan_dataset(dataset: Any, level: str = "quick", workers: int | None = None, name: str = "dataset") -> ScanReport:
    """Check every item of ``dataset`` at ``level`` (module docstring) with ``workers`` threads / processes
    (None: :func:`default_workers`); returns a :class:`ScanReport` with every problem, in item order."""
    if level not in CHECK_LEVELS:
        raise ValueError(f"check level must be one of {CHECK_LEVELS}, got {level!r}")
    workers = default_workers() if workers is None else int(workers)
    size = dataset.scan_size() if hasattr(dataset, "scan_size") else len(dataset)
    if level == "full" and hasattr(dataset, "check_item") and hasattr(dataset, "transform"):
        dataset = copy.copy(dataset)  # the check loads raw samples: no need to ship the transforms
        dataset.transform = None
    start = time.perf_counter()
    found: list[tuple[int, str]] = []
    if level == "full":
        workers = min(workers, size // MIN_ITEMS_PER_PROCESS)
    if workers <= 1 or size < 2:
        found = _check_chunk(dataset, range(size), level)
    else:
        step = max(1, min(256, size // (workers * 4)))
        chunks = [range(a, min(a + step, size)) for a in range(0, size, step)]
        with _executor(dataset, level, workers) as pool:
            if level == "quick":
                results = pool.map(_check_chunk, [dataset] * len(chunks), chunks, [level] * len(chunks))
            else:
                results = pool.map(_check_chunk_in_worker, chunks, [level] * len(chunks))
            for part in results:
                found += part
    seconds = time.perf_counter() - start
    problems = [DataProblem(name, i, message) for i, message in sorted(found)]
    log.info("data check (%s) %s: %d item(s) in %.1f s, %d problem(s)", level, name, size, seconds, len(problems))
    return ScanReport(name, level, size, seconds, problems)


def check_datasets(
    datasets: Mapping[str, Any], level: str = "quick", workers: int | None = None, hint: str = ""
) -> list[ScanReport]:
    """:func:`scan_dataset` for each named dataset; raises one :class:`DataCheckError` listing the problems of all
    of them (``hint`` appended to its message); returns the reports when there is none."""
    reports = [scan_dataset(ds, level, workers, name) for name, ds in datasets.items()]
    if any(r.problems for r in reports):
        raise DataCheckError(reports, hint)
    return reports
