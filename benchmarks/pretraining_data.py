"""SAMRS pretraining data loading: images/s of the official training pipeline (flip, resize 0.5–2, crop, mask
recompute, photometric, normalise, pad) per worker process, and of the whole PretrainingDataModule with workers.

Synthetic SOTA / FAST tiles at the official 1024² and SIOR at 800² are written once into ``--root``.
"Per worker" = one process, one torch / OpenCV thread (what a DataLoader worker runs); ``lazy`` decodes only the
instances overlapping the crop (the datamodule's path), ``eager`` decodes every mask of the image first.

python benchmarks/pretraining_data.py                       # 448², 24 samples per dataset, 2 workers per loader
python benchmarks/pretraining_data.py --size 448 --samples 48 --workers 0 2 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mtp.data.datamodules.pretraining import PretrainingDataModule
from mtp.data.datasets.samrs import SAMRS_LAYOUTS, SAMRSDataset
from mtp.data.synthetic import write_samrs
from mtp.data.transforms.samrs import SAMRSTrainTransform

TILE = {"sota": 1024, "sior": 800, "fast": 1024}


def make_data(root: Path, n: int) -> None:
    for k, variant in enumerate(TILE):
        if not SAMRS_LAYOUTS[variant].json_path(root, "train").is_file():
            write_samrs(root, variant=variant, seed=k, n_train=n, n_val=1, size=TILE[variant])


def per_worker(root: Path, variant: str, size: int, samples: int, lazy: bool) -> tuple[float, float, float]:
    """(images/s wall clock, images per CPU-second, mean instances per source image) for one process with one
    thread; the CPU-time rate is what a worker reaches on an otherwise idle core."""
    ds = SAMRSDataset(root, variant, "train", SAMRSTrainTransform(size), lazy_masks=lazy)
    torch.manual_seed(0)
    ds[0]
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(samples):
        ds[i % len(ds)]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return samples / wall, samples / cpu, len(ds.store.labels) / len(ds)


def loader_throughput(root: Path, size: int, workers: int, steps: int) -> float:
    """Images/s of ``train_dataloader()`` (3 datasets × 1 image per step, ``workers`` per dataset loader)."""
    dm = PretrainingDataModule(str(root), image_size=size, batch_size=3, num_workers=workers, persistent_workers=False)
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)  # worker start-up not counted
    start, n = time.perf_counter(), 0
    while n < steps:
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            continue
        n += 1
    return 3 * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="synthetic SAMRS folder (written if missing; default: a temp dir)")
    parser.add_argument("--images", type=int, default=8, help="synthetic train images per dataset")
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--samples", type=int, default=24, help="samples per dataset for the per-worker rate")
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="workers per loader for the loader rate")
    parser.add_argument("--steps", type=int, default=16)
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="samrs_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    make_data(root, args.images)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    print(f"data: {root}; target {args.size}²; torch {torch.__version__}, OpenCV {cv2.__version__}")
    for variant in TILE:
        lazy, lazy_cpu, inst = per_worker(root, variant, args.size, args.samples, lazy=True)
        eager, eager_cpu, _ = per_worker(root, variant, args.size, args.samples, lazy=False)
        print(f"per worker  {variant} ({TILE[variant]}², {inst:.0f} instances/img): lazy masks {lazy:5.1f} img/s "
              f"({lazy_cpu:5.1f} per CPU-s), eager masks {eager:5.1f} img/s ({eager_cpu:5.1f} per CPU-s)")  # fmt: skip
    for w in args.workers:
        rate = loader_throughput(root, args.size, w, args.steps)
        print(f"datamodule  3 loaders x {w} worker(s): {rate:6.1f} img/s ({rate / 3:.1f} steps/s at 1 img/dataset)")


if __name__ == "__main__":
    main()
