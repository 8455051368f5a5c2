"""How long the data check takes (``mtp tool check-data`` and the datamodules' ``check`` option), on a synthetic
LoveDA-style set (RGB PNG images, uint8 PNG masks).

For each level and worker count: seconds per 1000 image/mask pairs, and, for scale, one plain sequential pass
that decodes every pair (what one training epoch spends on reading alone). Every process uses one torch thread.
The quick check reads headers and the last bytes of each file; the full check decodes everything (its process
pool pays a start-up of a few seconds, so small sets run in one process).

    python benchmarks/check_data.py --n 400 --size 512 --workers 1 2          # CPU (2 cores): a minute or two
    python benchmarks/check_data.py --n 2000 --size 1024 --workers 1 4 8 16   # a larger machine
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mtp.data.datasets.checks import scan_dataset
from mtp.data.datasets.segmentation import LoveDA
from mtp.data.synthetic import write_loveda


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400, help="training pairs")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--root", help="reuse / keep the synthetic set here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread per process, as in DataLoader workers and the check's processes
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp) / f"loveda_{args.n}_{args.size}"
        if not (root / "trainval").is_dir():
            start = time.perf_counter()
            write_loveda(root, n_train=args.n, n_val=0, n_test=0, size=args.size, seed=0)
            print(f"wrote {args.n} pairs of {args.size}² in {time.perf_counter() - start:.1f} s under {root}")
        dataset = LoveDA(root, "trainval")
        n = len(dataset)
        rows = []
        start = time.perf_counter()
        for i in range(n):
            dataset.load_sample(i)
        decode = time.perf_counter() - start
        rows.append({"check": "decode every pair once (reference)", "workers": 1, "s_per_1000": 1000 * decode / n})
        for level in ("quick", "full"):
            for workers in args.workers:
                report = scan_dataset(dataset, level, workers, "train")
                assert not report.problems, report.problems[:3]
                rows.append({"check": level, "workers": workers, "s_per_1000": 1000 * report.seconds / n})
        print(f"\n{n} pairs of {args.size}x{args.size} (PNG image + PNG mask)\n")
        print("| check | workers | s / 1000 pairs |\n|---|---|---|")
        for row in rows:
            print(f"| {row['check']} | {row['workers']} | {row['s_per_1000']:.2f} |")
        if args.json:
            Path(args.json).write_text(json.dumps({"n": n, "size": args.size, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
