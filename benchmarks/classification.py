"""Scene-classification training throughput: ViT+RVSA classification copy + GAP + linear head at 224².

Train step = forward + CE loss + backward + AdamW step (layer-decay groups, the official optimiser) on a
random batch. Reports images/s, peak memory (CUDA allocator; GPU only) and the bytes autograd saves for
backward in one forward (unique storages, parameters excluded: a device-independent activation measure;
under bf16 autocast it includes the bf16 copies of the weights that autocast makes, about 2 bytes per
parameter, ~170 MiB for ViT-B, so bf16 activations proper are that much smaller than the column says).
The official logs (``RS_Tasks_Finetune/Scene_Classification/logs/eurosat``; docs/RECIPES.md#official-logs) give
ViT-B EuroSAT: 0.39 s/iteration at batch 8, 3,133 MB per GPU.

GPU (the issue's setting):
    python benchmarks/classification.py --device cuda --attn-impls auto reference
CPU (2 cores, reduced so that it finishes in minutes):
    python benchmarks/classification.py --device cpu --batch 2 --steps 2
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

from mtp.models.classifier import build_classifier
from mtp.tasks.optim import build_adamw

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def saved_for_backward_mib(model, x, auto: dict) -> float:
    """MiB autograd keeps for backward in one training forward (unique storages, parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast(**auto):
        logits = model(x)
    del logits
    return sum(seen.values()) / 2**20


def train_throughput(model, x, y, auto: dict, device, steps: int) -> tuple[float, float]:
    """Images/s and peak GiB (NaN off GPU) of full training steps after one warm-up step."""
    optimizer = build_adamw(model, lr=6e-5, weight_decay=0.05, layer_decay=0.9)

    def step():
        with torch.autocast(**auto):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
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
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return steps * x.shape[0] / elapsed, peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="vit_b_rvsa")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8, help="per-device batch (official: 8)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing of every block")
    parser.add_argument("--attn-impls", nargs="+", default=["auto"], help="ViT+RVSA attention paths to compare")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    steps = args.steps or (30 if gpu else 2)
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"device {device}, {args.backbone} classifier, train {args.img_size}² batch {args.batch}, {steps} steps")
    print("| dtype | attn_impl | train img/s | s/iteration | peak GiB | saved for backward MiB |")
    print("|---|---|---|---|---|---|")
    records = []
    for name in args.dtypes:
        for impl in args.attn_impls:
            torch.manual_seed(0)
            model = build_classifier(
                args.backbone,
                num_classes=args.num_classes,
                img_size=args.img_size,
                drop_path_rate=0.3,
                use_checkpoint=args.checkpointing,
            ).to(device)
            set_attn_impl(model, impl)
            x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
            y = torch.randint(0, args.num_classes, (args.batch,), device=device)
            auto = dict(device_type=device.type, dtype=DTYPES[name], enabled=DTYPES[name] != torch.float32)
            saved = saved_for_backward_mib(model, x, auto)
            ips, peak = train_throughput(model, x, y, auto, device, steps)
            label = describe_impl(impl, device)
            records.append(
                dict(task="classification", dtype=name, attn_impl=label, batch=args.batch, img_size=args.img_size,
                     train_img_per_s=ips, train_peak_gib=peak, saved_mib=saved)
            )  # fmt: skip
            print(f"| {name} | {label} | {ips:.2f} | {args.batch / ips:.3f} | {peak:.2f} | {saved:.0f} |", flush=True)
            del model
    write_json(args.json, records, command=" ".join(sys.argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
