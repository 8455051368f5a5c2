"""Check the data of an ``mtp fit`` config without starting a run: the engine of ``mtp tool check-data``.

The ``data:`` section (``class_path`` + ``init_args``, exactly what LightningCLI reads) is built with jsonargparse,
each dataset on its own (``train`` / ``val`` / ``test`` / ``predict`` or any other ``init_args`` entry with a
``class_path``), so one dataset that cannot even be built (a missing folder, bad annotation files) does not hide
the problems of the others. The datamodule is then made from the built datasets (its own options are validated as
``mtp fit`` would) and every dataset it uses is scanned by :func:`mtp.data.datasets.checks.scan_dataset`
(``'quick'``: headers; ``'full'``: every pixel). A datamodule without dataset entries (the SAMRS
:class:`~mtp.data.datamodules.PretrainingDataModule`) builds its datasets itself, with the consistency check of
the same level.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtp.data.datasets.checks import DataProblem, ScanReport, default_workers, scan_dataset

__all__ = ["ConfigCheck", "build_datamodule_datasets", "check_data_section"]


@dataclass
class ConfigCheck:
    """Outcome of :func:`check_data_section`: ``build_problems`` (datasets / datamodule that could not be built)
    and one :class:`ScanReport` per scanned dataset."""

    level: str
    workers: int
    build_problems: list[DataProblem] = field(default_factory=list)
    reports: list[ScanReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def problems(self) -> list[DataProblem]:
        return self.build_problems + [p for r in self.reports for p in r.problems]


def _instantiate(parser: Any, cfg: Any) -> Any:
    return parser.instantiate(cfg) if hasattr(parser, "instantiate") else parser.instantiate_classes(cfg)


def _message(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"data.class_path: cannot import {class_path!r}: {e}") from e


def _build_dataset(spec: Mapping) -> Any:
    from jsonargparse import ArgumentParser
    from torch.utils.data import Dataset

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--dataset", type=Dataset)
    return _instantiate(parser, parser.parse_object({"dataset": dict(spec)})).dataset


def _build_datamodule(cls: type, options: Mapping, datasets: Mapping[str, Any]) -> Any:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "dm", instantiate=False, sub_configs=True)
    kwargs = vars(_instantiate(parser, parser.parse_object({"dm": dict(options)})).dm)
    return cls(**{**kwargs, **datasets})


def build_datamodule_datasets(section: Mapping, level: str = "quick") -> tuple[dict[str, Any], list[DataProblem]]:
    """({name: dataset} to scan, problems met while building) from a ``data:`` section (module docstring)."""
    init_args = dict(section.get("init_args") or {})
    keys = [k for k, v in init_args.items() if isinstance(v, Mapping) and "class_path" in v]
    problems: list[DataProblem] = []
    built: dict[str, Any] = {}
    for key in keys:
        try:
            built[key] = _build_dataset(init_args[key])
        except Exception as e:  # any failure to build is reported as a problem of that dataset
            problems.append(DataProblem(key, -1, f"cannot build the {key} dataset: {_message(e)}"))
    if problems:
        return built, problems  # the datamodule cannot be made without them: scan what was built
    try:
        cls = _import(str(section["class_path"]))
        dm = _build_datamodule(cls, {k: v for k, v in init_args.items() if k not in keys}, built)
        if hasattr(dm, "samrs_check"):  # SAMRS: cross-check from headers, the scan does the rest per file
            dm.samrs_check = "headers"
        if hasattr(dm, "datasets_for_stage"):
            datasets = dm.datasets_for_stage(None)
        else:
            datasets = {n: getattr(dm, f"{n}_dataset", None) for n in ("train", "val", "test", "predict")}
    except Exception as e:  # options the datamodule refuses, SAMRS consistency errors, ...
        problems.append(DataProblem("data", -1, f"cannot build {section.get('class_path')}: {_message(e)}"))
        return built, problems
    return {n: ds for n, ds in datasets.items() if ds is not None}, problems


def check_data_section(section: Mapping, level: str = "quick", workers: int | None = None) -> ConfigCheck:
    """Build and scan every dataset of a ``data:`` section (module docstring)."""
    start = time.perf_counter()
    workers = default_workers() if workers is None else int(workers)
    datasets, problems = build_datamodule_datasets(section, level)
    result = ConfigCheck(level, workers, problems)
    for name, dataset in datasets.items():
        result.reports.append(scan_dataset(dataset, level, workers, name))
    result.seconds = time.perf_counter() - start
    return result
