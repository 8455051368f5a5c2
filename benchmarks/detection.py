"""Horizontal detection: Faster R-CNN (DIOR setting) training step on ViT-B+RVSA, bf16 vs fp32.

Train step = torchvision Faster R-CNN forward with targets (RPN + RoI head losses) + backward + AdamW
(layer decay) on random 800² images with random boxes, batch 2.

GPU:  python benchmarks/detection.py --device cuda --attn-impls auto reference
CPU:  python benchmarks/detection.py --device cpu --img-size 512 --steps 2 --dtypes fp32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.paths import describe_impl, set_attn_impl, write_json

from mtp.models.detectors.horizontal.rcnn import build_faster_rcnn
from mtp.tasks.optim import build_adamw

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_targets(n_images: int, size: int, device) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    targets = []
    for _ in range(n_images):
        xy = torch.rand(20, 2, generator=g) * (size - 100)
        wh = 10 + torch.rand(20, 2, generator=g) * 90
        boxes = torch.cat([xy, xy + wh], 1)
        targets.append({"boxes": boxes.to(device), "labels": torch.randint(1, 21, (20,), generator=g).to(device)})
    return targets


def measure(args, dtype, device, steps: int, attn_impl: str = "auto") -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_faster_rcnn(
        "vit_b_rvsa", num_classes=20, img_size=args.img_size, drop_path_rate=0.3, use_checkpoint=args.checkpointing
    ).to(device)
    set_attn_impl(model, attn_impl)
    model.train()
    optimizer = build_adamw(model, lr=1e-4, weight_decay=0.05, layer_decay=0.9, prefix="backbone.body.")
    images = [torch.randn(3, args.img_size, args.img_size, device=device) for _ in range(args.batch)]
    targets = random_targets(args.batch, args.img_size, device)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            losses = model(images, targets)
        sum(losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return (time.perf_counter() - start) / steps, peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--img-size", type=int, default=800)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing (official DIOR: on)")
    parser.add_argument("--attn-impls", nargs="+", default=["auto"], help="ViT+RVSA attention paths to compare")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    steps = args.steps or (10 if device.type == "cuda" else 2)
    print(f"device {device}, ViT-B+RVSA Faster R-CNN {args.img_size}² batch {args.batch}")
    print("| dtype | attn_impl | train s/iter | peak GiB |\n|---|---|---|---|")
    records = []
    for name in args.dtypes:
        for impl in args.attn_impls:
            seconds, peak = measure(args, DTYPES[name], device, steps, impl)
            label = describe_impl(impl, device)
            records.append(
                dict(task="detection", dtype=name, attn_impl=label, batch=args.batch, img_size=args.img_size,
                     train_s_per_iter=seconds, train_peak_gib=peak)
            )  # fmt: skip
            print(f"| {name} | {label} | {seconds:.3f} | {peak:.2f} |", flush=True)
    write_json(args.json, records, command=" ".join(sys.argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
