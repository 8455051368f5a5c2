"""Rotated detection: Oriented R-CNN training step on ViT-B+RVSA, and rotated IoU / NMS throughput.

Train step = forward (backbone, FPN, oriented RPN with targets, RoI head with 512 sampled RoIs) +
backward + AdamW step on random images with random ground-truth rboxes. Official anchor (A40,
fp32, batch 2, 1024²): 1.19 s/iter, 8.9 GB per GPU; targets on an H100: <= 0.35 s/iter, <= 8 GB.

GPU (the issue's setting):
    python benchmarks/rotated_detection.py --device cuda --attn-impls auto reference
CPU (2 cores, reduced):
    python benchmarks/rotated_detection.py --device cpu --img-size 512 --steps 2 --dtypes fp32 --boxes 1000
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.paths import describe_impl, set_attn_impl, write_json

from mtp.models.detectors.oriented_rcnn.model import build_oriented_rcnn
from mtp.ops.rotated.iou import rotated_iou
from mtp.ops.rotated.nms import rotated_nms
from mtp.tasks.optim import build_adamw

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_rboxes(n: int, size: int, generator: torch.Generator, device) -> torch.Tensor:
    centre = torch.rand(n, 2, generator=generator) * size
    wh = 8 + torch.rand(n, 2, generator=generator) * 120
    theta = (torch.rand(n, 1, generator=generator) - 0.5) * math.pi
    return torch.cat([centre, wh, theta], 1).to(device)


def train_step_time(args, dtype, device, steps: int, attn_impl: str = "auto") -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_oriented_rcnn(
        "vit_b_rvsa", num_classes=15, img_size=args.img_size, drop_path_rate=0.3, use_checkpoint=args.checkpointing
    ).to(device)
    set_attn_impl(model, attn_impl)
    optimizer = build_adamw(model, lr=1e-4, weight_decay=0.05, layer_decay=0.9)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
    gts = [random_rboxes(30, args.img_size, g, device) for _ in range(args.batch)]
    labels = [torch.randint(0, 15, (30,), generator=g).to(device) for _ in range(args.batch)]
    hw = [(args.img_size, args.img_size)] * args.batch

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            losses = model(images, hw, gts, labels)
        sum(v for k, v in losses.items() if k.startswith("loss")).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
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


def ops_time(n: int, device) -> tuple[float, float]:
    g = torch.Generator().manual_seed(1)
    a, b = random_rboxes(n, 1024, g, device), random_rboxes(n, 1024, g, device)
    rotated_iou(a[:10], b[:10])
    sync(device)
    start = time.perf_counter()
    rotated_iou(a, b)
    sync(device)
    iou_s = time.perf_counter() - start
    scores = torch.rand(n, generator=g).to(device)
    rotated_nms(a[:10], scores[:10], 0.1)
    sync(device)
    start = time.perf_counter()
    rotated_nms(a, scores, 0.1)
    sync(device)
    return iou_s, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--img-size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--boxes", type=int, default=2000, help="N for the N x N rotated IoU and NMS timing")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing (official: on)")
    parser.add_argument("--attn-impls", nargs="+", default=["auto"], help="ViT+RVSA attention paths to compare")
    parser.add_argument("--no-ops", action="store_true", help="skip the rotated IoU / NMS timing")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    steps = args.steps or (10 if device.type == "cuda" else 2)
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"device {device}, ViT-B+RVSA Oriented R-CNN {args.img_size}² batch {args.batch}, "
          f"checkpointing {args.checkpointing}", flush=True)  # fmt: skip
    print("| dtype | attn_impl | train s/iter | peak GiB |\n|---|---|---|---|")
    records = []
    for name in args.dtypes:
        for impl in args.attn_impls:
            seconds, peak = train_step_time(args, DTYPES[name], device, steps, impl)
            label = describe_impl(impl, device)
            records.append(
                dict(task="rotated_detection", dtype=name, attn_impl=label, batch=args.batch, img_size=args.img_size,
                     train_s_per_iter=seconds, train_peak_gib=peak)
            )  # fmt: skip
            print(f"| {name} | {label} | {seconds:.3f} | {peak:.2f} |", flush=True)
    if not args.no_ops:
        iou_s, nms_s = ops_time(args.boxes, device)
        records.append(dict(task="rotated_ops", boxes=args.boxes, iou_s=iou_s, nms_s=nms_s))
        n = args.boxes
        print(f"\nrotated IoU {n}x{n}: {iou_s:.3f} s; rotated NMS of {n} boxes: {nms_s:.3f} s")
    write_json(args.json, records, command=" ".join(sys.argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
