"""Does bf16-mixed change what a run learns? The same tiny learning check trained in 32-true and in bf16-mixed.

The official MTP fine-tuning runs are fp32. This script trains configs/segmentation/tiny-loveda-cpu.yaml (synthetic
LoveDA, seeded) once per precision with the same seed and data, evaluates each on the held-out Val split and prints
mIoU / aAcc / final training loss / wall time as JSON lines. On CPU bf16 autocast is emulated (slower); the point is
the metric, not the speed. A difference of a few mIoU points between precisions is within what two fp32 runs with
different seeds differ by on this tiny set (``--seeds`` measures that spread).

CPU (2 cores, a few minutes):
    python benchmarks/precision.py --steps 100
GPU (a real-size check would use an official twin; this tiny one is what the CPU allows):
    python benchmarks/precision.py --steps 300 --accelerator gpu
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from mtp.cli import main  # noqa: E402
from mtp.data.synthetic import write_loveda  # noqa: E402

CONFIG = ROOT / "configs" / "segmentation" / "tiny-loveda-cpu.yaml"


def run(precision: str, seed: int, steps: int, data: Path, work: Path, accelerator: str) -> dict:
    args = [
        "--config", str(CONFIG),
        "--seed_everything", str(seed),
        "--data.train.init_args.root", str(data),
        "--data.test.init_args.root", str(data),
        "--data.num_workers", "0",
        "--data.persistent_workers", "false",
        "--trainer.max_steps", str(steps),
        "--trainer.accelerator", accelerator,
        "--trainer.precision", precision,
        "--trainer.default_root_dir", str(work),
        "--trainer.callbacks.init_args.dirpath", str(work / "checkpoints"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false",
        "--model.warmup_iters", "20",
        "--model.output_dir", str(work / "test"),
        "--model.save_predictions", "false",
    ]  # fmt: skip
    start = time.perf_counter()
    if main(["fit", *args]) != 0:
        raise SystemExit(f"fit failed ({precision})")
    train_s = time.perf_counter() - start
    if main(["test", *args, "--ckpt_path", str(work / "checkpoints" / "last.ckpt")]) != 0:
        raise SystemExit(f"test failed ({precision})")
    metrics = json.loads((work / "test" / "metrics.json").read_text())
    return {"precision": precision, "seed": seed, "steps": steps, "mIoU": metrics["mIoU"], "aAcc": metrics["aAcc"],
            "train_s": round(train_s, 1)}  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--accelerator", default="cpu")
    return parser.parse_args()


if __name__ == "__main__":
    opts = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "loveda"
        write_loveda(data, layout="release", n_train=48, n_val=12, n_test=4, size=128, seed=3)
        for seed in opts.seeds:
            for precision in opts.precisions:
                result = run(precision, seed, opts.steps, data, Path(tmp) / f"{precision}-{seed}", opts.accelerator)
                print(json.dumps(result), flush=True)
