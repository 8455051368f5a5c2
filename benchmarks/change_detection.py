"""Change-detection throughput: Siamese ViT+RVSA + UNet head, training step and whole-image inference.

Train step = forward of both dates (one 2B batch through the shared backbone) + |A-B| fusion + UNet head +
CE loss at label size + backward + AdamW step (layer decay groups), official size 256 and batch 4 pairs
(per GPU). Inference = official whole-image mode, batch 1. "img/s" counts image *pairs*. Official anchor
(``RS_Tasks_Finetune/Change_Detection/logs``, docs/RECIPES.md#official-logs; unknown accelerator, fp32): ViT-B
1.30 s / iteration of 4 pairs (≈ 3.1 pairs/s), 5,622 MB.

GPU (the issue's setting):
    python benchmarks/change_detection.py --device cuda --attn-impls auto reference
CPU (2 cores, reduced so that it finishes in minutes):
    python benchmarks/change_detection.py --device cpu --img-size 128 --batch 2 --steps 2 --infer 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.paths import describe_impl, set_attn_impl, write_json

from mtp.inference.segmentation import whole_inference
from mtp.models.change_detector import build_change_detector
from mtp.tasks.optim import build_adamw

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: torch.device) -> None:
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def train_throughput(model, args, auto: dict, device: torch.device, steps: int) -> tuple[float, float]:
    """Pairs/s and peak GiB of full training steps."""
    optimizer = build_adamw(model, lr=6e-5, weight_decay=0.05, layer_decay=0.9)
    x = torch.randn(args.batch, 6, args.img_size, args.img_size, device=device)
    y = torch.randint(0, 2, (args.batch, args.img_size, args.img_size), device=device)

    def step() -> None:
        with torch.autocast(**auto):
            logits = model(x)
        logits = F.interpolate(logits.float(), size=y.shape[-2:], mode="bilinear", align_corners=False)
        F.cross_entropy(logits, y, ignore_index=255).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    step()  # warm-up (allocator, kernels)
    reset_peak(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * args.batch / (time.perf_counter() - start), peak_gib(device)


def infer_throughput(model, args, auto: dict, device: torch.device) -> tuple[float, float]:
    """Pairs/s and peak GiB of whole-image inference, one pair per forward (the official test batch)."""
    model.eval()
    x = torch.randn(1, 6, args.img_size, args.img_size, device=device)
    with torch.no_grad(), torch.autocast(**auto):
        whole_inference(model, x)
        reset_peak(device)
        start = time.perf_counter()
        for _ in range(args.infer):
            whole_inference(model, x)
        sync(device)
    return args.infer / (time.perf_counter() - start), peak_gib(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="vit_b_rvsa")
    parser.add_argument("--img-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--infer", type=int, default=None, help="inference forwards to time")
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--attn-impls", nargs="+", default=["auto"], help="ViT+RVSA attention paths to compare")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    steps = args.steps or (20 if gpu else 2)
    args.infer = args.infer or (50 if gpu else 2)
    torch.backends.cuda.matmul.allow_tf32 = True
    print(
        f"device {device}, {args.backbone} Siamese + UNet, {args.img_size}² pairs, train batch {args.batch}", flush=True
    )
    print("| dtype | attn_impl | train pairs/s | train peak GiB | whole-inference pairs/s | inference peak GiB |")
    print("|---|---|---|---|---|---|")
    records = []
    for name in args.dtypes:
        for impl in args.attn_impls:
            torch.manual_seed(0)
            model = build_change_detector(
                args.backbone, img_size=args.img_size, use_checkpoint=args.checkpointing, drop_path_rate=0.3
            ).to(device)
            set_attn_impl(model, impl)
            auto = dict(device_type=device.type, dtype=DTYPES[name], enabled=DTYPES[name] != torch.float32)
            train_ips, train_peak = train_throughput(model, args, auto, device, steps)
            infer_ips, infer_peak = infer_throughput(model, args, auto, device)
            label = describe_impl(impl, device)
            records.append(
                dict(task="change_detection", dtype=name, attn_impl=label, batch=args.batch, img_size=args.img_size,
                     train_pairs_per_s=train_ips, train_peak_gib=train_peak, infer_pairs_per_s=infer_ips,
                     infer_peak_gib=infer_peak)
            )  # fmt: skip
            print(
                f"| {name} | {label} | {train_ips:.2f} | {train_peak:.2f} | {infer_ips:.2f} | {infer_peak:.2f} |",
                flush=True,
            )
            del model
    write_json(args.json, records, command=" ".join(sys.argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
