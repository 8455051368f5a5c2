"""MTP pretraining step: ViT-B / ViT-L + RVSA with all three task decoders on the three SAMRS datasets.

One iteration = encoder on the concatenated batch (batch per dataset x 3), UPerHead + per-dataset seg heads,
Mask R-CNN and Oriented R-CNN per dataset (with targets), the summed loss, backward, grad-norm clip 5 and an
AdamW step — what ``MultiTaskPretrainingTask.training_step`` runs. Compared: fp32 (the official run), bf16
autocast, bf16 autocast + activation checkpointing; each for the attention paths in
``--attn-impls``. Images are random, ground truths random boxes with matching masks,
rboxes and seg labels (20 per image). With a single process and one image per dataset, the UPerHead trunk
runs jointly over the datasets (``joint_semantic_trunk``; a per-dataset BatchNorm call needs > 1 value).

GPU (the issue's setting, 448², 1 image per dataset):
    python benchmarks/pretraining.py --device cuda --backbones vit_b_rvsa vit_l_rvsa --attn-impls auto reference
CPU (2 cores, reduced):
    python benchmarks/pretraining.py --device cpu --img-size 224 --steps 2 --backbones vit_b_rvsa
Data-loader throughput (to compare with the step time): benchmarks/pretraining_data.py.
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

from mtp.models.pretraining import build_mtp_model, total_loss
from mtp.tasks.optim import build_adamw

DATASETS = {"sota": 18, "sior": 20, "fast": 37}


def make_batch(num_classes: int, batch: int, size: int, objects: int, g: torch.Generator, device) -> dict:
    """Random images with ``objects`` axis-aligned squares per image (consistent targets for every task)."""
    image = torch.randn(batch, 3, size, size, generator=g)
    semantic = torch.zeros(batch, size, size, dtype=torch.long)
    out = {"boxes": [], "labels": [], "masks": [], "rboxes": [], "rlabels": []}
    for b in range(batch):
        xy = torch.randint(0, size - 48, (objects, 2), generator=g).float()
        wh = 8 + torch.randint(0, 40, (objects, 1), generator=g).float()
        labels = torch.randint(0, num_classes, (objects,), generator=g)
        boxes = torch.cat([xy, xy + wh], 1)
        masks = torch.zeros(objects, size, size, dtype=torch.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
            masks[i, y0:y1, x0:x1] = 1
            semantic[b, y0:y1, x0:x1] = labels[i] + 1
        out["boxes"].append(boxes.to(device))
        out["labels"].append(labels.to(device))
        out["masks"].append(masks.to(device))
        out["rboxes"].append(torch.cat([xy + wh / 2, wh, wh, torch.zeros(objects, 1)], 1).to(device))
        out["rlabels"].append(labels.to(device))
    return {"image": image.to(device), "semantic": semantic.to(device), "img_hw": [(size, size)] * batch, **out}


MODES = {"fp32": (False, False), "bf16": (True, False), "bf16+ckpt": (True, True)}  # (bf16, checkpointing)


def measure(args, backbone: str, mode: str, device, attn_impl: str = "auto") -> tuple[float, float]:
    torch.manual_seed(0)
    bf16, ckpt = MODES[mode]
    model = build_mtp_model(
        backbone, img_size=args.img_size, use_checkpoint=ckpt, joint_semantic_trunk=args.batch == 1
    ).to(device)
    set_attn_impl(model, attn_impl)
    optimizer = build_adamw(model, lr=6e-5, weight_decay=0.05, prefix="encoder.")
    g = torch.Generator().manual_seed(0)
    batches = {d: make_batch(c, args.batch, args.img_size, args.objects, g, device) for d, c in DATASETS.items()}

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = total_loss(model(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    for _ in range(args.warmup):  # allocations, autotuning
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return seconds, peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbones", nargs="+", default=["vit_b_rvsa"])
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16+ckpt"], choices=sorted(MODES))
    parser.add_argument("--img-size", type=int, default=448)
    parser.add_argument("--batch", type=int, default=1, help="images per dataset")
    parser.add_argument("--objects", type=int, default=20, help="ground-truth objects per image")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--attn-impls", nargs="+", default=["auto"], help="ViT+RVSA attention paths to compare")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device}, {args.img_size}², {args.batch} image(s) per dataset x 3 datasets, all tasks")
    print(f"{'backbone':<12} {'mode':<10} {'attn_impl':<12} {'s/iter':>8} {'peak GiB':>9}")
    records = []
    for backbone in args.backbones:
        for mode in args.modes:
            for impl in args.attn_impls:
                seconds, peak = measure(args, backbone, mode, device, impl)
                label = describe_impl(impl, device)
                records.append(
                    dict(task="pretraining", backbone=backbone, mode=mode, attn_impl=label, img_size=args.img_size,
                         images_per_dataset=args.batch, s_per_iter=seconds, peak_gib=peak)
                )  # fmt: skip
                print(f"{backbone:<12} {mode:<10} {label:<12} {seconds:8.3f} {peak:9.2f}", flush=True)
    write_json(args.json, records, command=" ".join(sys.argv))


if __name__ == "__main__":
    main()
