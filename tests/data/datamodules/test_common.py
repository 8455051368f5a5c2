"""DataLoader worker processes cannot deadlock: every datamodule starts its workers with a fresh interpreter
("forkserver" by default), its datasets and collates pickle, and worker loaders can be built and exhausted many
times in a row while the parent process has OpenCV / OpenMP threads alive (what hung forked workers before)."""

from __future__ import annotations

import multiprocessing

import cv2
import numpy as np
import pytest
import torch

from mtp.data.datamodules.change import ChangeDetectionDataModule
from mtp.data.datamodules.classification import ClassificationDataModule
from mtp.data.datamodules.common import limit_worker_threads, worker_process_options
from mtp.data.datamodules.horizontal import DetectionDataModule
from mtp.data.datamodules.pretraining import PretrainingDataModule
from mtp.data.datamodules.rotated import RotatedDetectionDataModule
from mtp.data.datamodules.segmentation import SegmentationDataModule
from mtp.data.datasets.change_detection import LEVIRCD
from mtp.data.datasets.classification import EuroSAT
from mtp.data.datasets.horizontal import DIOR
from mtp.data.datasets.rotated import DOTA
from mtp.data.datasets.segmentation import LoveDA
from mtp.data.synthetic import write_dior, write_dota, write_eurosat, write_levir_cd, write_loveda, write_samrs

WORKERS = dict(num_workers=2, persistent_workers=False)


def _busy_opencv_threads() -> None:
    """Leave OpenCV's thread pool with live threads in this (the parent) process."""
    cv2.setNumThreads(2)
    image = np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), np.uint8)
    cv2.GaussianBlur(cv2.resize(image, (2048, 2048)), (31, 31), 5)


def test_options_per_start_method():
    assert worker_process_options(0, "forkserver") == {}
    fresh = worker_process_options(2, "forkserver")
    assert fresh["multiprocessing_context"].get_start_method() == "forkserver"
    assert fresh["worker_init_fn"] is limit_worker_threads
    assert worker_process_options(2, "spawn")["multiprocessing_context"].get_start_method() == "spawn"
    assert "worker_init_fn" not in worker_process_options(2, "fork")  # no thread-pool calls after fork
    with pytest.raises(ValueError, match="worker_start_method must be"):
        worker_process_options(2, "threads")


@pytest.mark.timeout(240)
def test_pretraining_worker_loaders_twenty_times_in_a_row(tmp_path):
    for k, name in enumerate(("sota", "sior", "fast")):
        write_samrs(tmp_path, variant=name, seed=k, n_train=4, n_val=2, size=64)
    dm = PretrainingDataModule(str(tmp_path), image_size=32, batch_size=3, batch_size_val=3, **WORKERS)
    for _ in range(20):
        _busy_opencv_threads()
        steps = list(dm.train_dataloader())
        assert len(steps) == 4 and all(b["sota"]["image"].shape == (1, 3, 32, 32) for b, _, _ in steps)
    assert multiprocessing.active_children() == [] or all(not p.is_alive() for p in multiprocessing.active_children())


def _segmentation(root):
    write_loveda(root, n_train=4, n_val=2, n_test=0, size=64)
    return SegmentationDataModule(LoveDA(root, "trainval"), LoveDA(root, "trainval"), crop_size=(32, 32),
                                  batch_size=2, **WORKERS)  # fmt: skip


def _rotated(root):
    write_dota(root, n=4, size=96)
    return RotatedDetectionDataModule(train=DOTA(root), val=DOTA(root), size=64, batch_size=2, drop_last=False,
                                      **WORKERS)  # fmt: skip


def _horizontal(root):
    write_dior(root, n_train=3, n_val=1, n_test=2, size=96)
    return DetectionDataModule(train=DIOR(root, "trainval"), val=DIOR(root, "test"), size=64, batch_size=2,
                               drop_last=False, **WORKERS)  # fmt: skip


def _classification(root):
    write_eurosat(root, layout="mtp", n_per_class=2, size=32, source_size=32)
    return ClassificationDataModule(EuroSAT(root, "train"), EuroSAT(root, "val"), img_size=32, batch_size=4, **WORKERS)


def _change(root):
    write_levir_cd(root, n_train=3, n_val=2, n_test=0, size=64)
    return ChangeDetectionDataModule(train=LEVIRCD(root, "train"), val=LEVIRCD(root, "val"), crop_size=(32, 32),
                                     batch_size=2, train_resize=None, **WORKERS)  # fmt: skip


@pytest.mark.timeout(240)
@pytest.mark.parametrize("build", [_segmentation, _rotated, _horizontal, _classification, _change])
def test_every_datamodule_loads_through_fresh_worker_processes(tmp_path, build):
    dm = build(tmp_path)
    assert dm.worker_start_method == "forkserver"
    _busy_opencv_threads()
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        assert loader.multiprocessing_context.get_start_method() == "forkserver"
        batches = list(loader)
        assert batches and all(isinstance(b["image"], torch.Tensor) for b in batches)
