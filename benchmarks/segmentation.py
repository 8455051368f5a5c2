"""Segmentation throughput: RVSA + UperNet training step and sliding-window inference on a big scene.

Train step = forward + CE loss + backward + AdamW step (layer decay groups) on random crops.
Inference = official slide inference (crop 512, stride 384) over one large scene.

GPU (the issue's setting; --attn-impls auto reference adds the reference path to the same run):
    python benchmarks/segmentation.py --device cuda --attn-impls auto reference
CPU (2 cores, reduced so that it finishes in minutes):
    python benchmarks/segmentation.py --device cpu --img-size 256 --batch 2 --scene 1024 --steps 2 --dtypes fp32
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

from mtp.inference.segmentation import slide_inference
from mtp.models.segmentor import build_upernet
from mtp.tasks.optim import build_adamw

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gib(device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def reset_peak(device) -> None:
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def train_throughput(model, args, auto: dict, device, steps: int) -> tuple[float, float]:
    """Images/s and peak GiB of full training steps (forward, CE, backward, AdamW)."""
    optimizer = build_adamw(model, lr=6e-5, weight_decay=0.05, layer_decay=0.9)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
    y = torch.randint(0, 7, (args.batch, args.img_size, args.img_size), device=device)

    def step():
        with torch.autocast(**auto):
            logits = model(x)
        logits = F.interpolate(logits.float(), size=y.shape[-2:], mode="bilinear", align_corners=False)
        F.cross_entropy(logits, y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    step()
    reset_peak(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * args.batch / (time.perf_counter() - start), peak_gib(device)


def slide_seconds(model, args, auto: dict, device) -> tuple[float, float]:
    """Seconds and peak GiB of official slide inference over one (scene x scene) image."""
    model.eval()
    scene = torch.randn(1, 3, args.scene, args.scene, device=device)
    batch_windows = 16 if device.type == "cuda" else 2
    with torch.no_grad(), torch.autocast(**auto):
        slide_inference(model, scene[..., : args.crop * 2, : args.crop * 2], crop=args.crop, stride=args.stride)
        reset_peak(device)
        start = time.perf_counter()
        slide_inference(model, scene, crop=args.crop, stride=args.stride, batch_windows=batch_windows)
        sync(device)
    return time.perf_counter() - start, peak_gib(device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="vit_b_rvsa")
    parser.add_argument("--img-size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--scene", type=int, default=4096, help="side of the square scene for slide inference")
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--stride", type=int, default=384)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--attn-impls", nargs="+", default=["auto"], help="ViT+RVSA attention paths to compare")
    parser.add_argument("--no-slide", action="store_true", help="training step only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    steps = args.steps or (20 if gpu else 2)
    torch.backends.cuda.matmul.allow_tf32 = True
    print(
        f"device {device}, {args.backbone} + UperNet, train {args.img_size}² b{args.batch}, "
        f"slide {args.scene}² crop {args.crop} stride {args.stride}",
        flush=True,
    )
    print("| dtype | attn_impl | train img/s | train peak GiB | slide scene s | slide Mpx/s | slide peak GiB |")
    print("|---|---|---|---|---|---|---|")
    records = []
    for name in args.dtypes:
        for impl in args.attn_impls:
            torch.manual_seed(0)
            model = build_upernet(
                args.backbone,
                num_classes=7,
                img_size=args.img_size,
                drop_path_rate=0.3,
                use_checkpoint=args.checkpointing,
            ).to(device)
            set_attn_impl(model, impl)
            auto = dict(device_type=device.type, dtype=DTYPES[name], enabled=DTYPES[name] != torch.float32)
            train_ips, train_peak = train_throughput(model, args, auto, device, steps)
            seconds, slide_peak = float("nan"), float("nan")
            if not args.no_slide:
                seconds, slide_peak = slide_seconds(model, args, auto, device)
            label = describe_impl(impl, device)
            records.append(
                dict(task="segmentation", dtype=name, attn_impl=label, batch=args.batch, img_size=args.img_size,
                     train_img_per_s=train_ips, train_peak_gib=train_peak, slide_s=seconds, slide_peak_gib=slide_peak)
            )  # fmt: skip
            print(
                f"| {name} | {label} | {train_ips:.2f} | {train_peak:.2f} | {seconds:.2f} | "
                f"{args.scene**2 / seconds / 1e6:.3f} | {slide_peak:.2f} |",
                flush=True,
            )
            del model
    write_json(args.json, records, command=" ".join(sys.argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
