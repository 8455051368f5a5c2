"""Device-independent cost of a ViT+RVSA training step per attention path: FLOPs, saved activations, op counts.

For each ``attn_impl`` (default: reference, sdpa, flex) one training step (bf16 autocast or fp32 forward,
backward of the sum of the 4 feature maps) of the backbone at ``--img-size``, batch ``--batch``:

* FLOPs (``torch.utils.flop_counter.FlopCounterMode``: matmuls, convolutions and attention kernels), total
  and the attention share (``scaled_dot_product_attention``, ``bmm`` and the dense score-mod matmuls);
* bytes autograd saves for backward (unique storages, parameters excluded: the activation memory);
* the ops a step dispatches (``torch.profiler``; leaf ``aten::`` ops), split into views (no kernel),
  copies (``aten::copy_``: layout changes and casts) and the rest; on CUDA the device kernels launched.

On CPU this is the evidence that can be had without a GPU; the same command on CUDA adds the kernel count.
    python benchmarks/backbone_cost.py --device cpu --models vit_b_rvsa --img-size 512 --batch 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import (
    FlopCounterMode,
    flop_registry,
    register_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.backbone import DTYPES, FAMILIES, saved_activation_bytes
from benchmarks.paths import write_json

from mtp.models import create_backbone

# Ops that return a view or metadata: no kernel on any device.
VIEW_OPS = {
    "aten::view", "aten::_unsafe_view", "aten::as_strided", "aten::permute", "aten::transpose", "aten::t",
    "aten::expand", "aten::slice", "aten::select", "aten::unsqueeze", "aten::squeeze", "aten::alias",
    "aten::unbind", "aten::split", "aten::chunk", "aten::detach", "aten::narrow", "aten::_reshape_alias",
    "aten::view_as", "aten::unflatten", "aten::flatten", "aten::reshape", "aten::diagonal", "aten::lift_fresh",
    "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::resolve_conj", "aten::resolve_neg",
    "aten::result_type", "aten::is_nonzero", "aten::_has_compatible_shallow_copy_type", "aten::split_with_sizes",
}  # fmt: skip
ATTENTION_FLOP_OPS = ("_scaled_dot_product", "bmm", "flex_attention")


# PyTorch counts the CUDA attention kernels but not the CPU flash kernel that sdpa dispatches to here.
def _cpu_flash_flop(query, key, value, *args, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_backward_flop(grad_out, query, key, value, *args, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


for _op, _formula in (
    (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu, _cpu_flash_flop),
    (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward, _cpu_flash_backward_flop),
):
    if _op not in flop_registry:
        register_flop_formula(_op)(_formula)


def train_step(model, x, dtype, device) -> None:
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        feats = model(x)
    sum(f.float().sum() for f in feats).backward()
    model.zero_grad(set_to_none=True)


def flops(model, x, dtype, device) -> tuple[int, int]:
    """(total, attention) FLOPs of one training step."""
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(model, x, dtype, device)
    per_op = counter.get_flop_counts()["Global"]
    attention = sum(v for k, v in per_op.items() if any(name in str(k) for name in ATTENTION_FLOP_OPS))
    return counter.get_total_flops(), attention


def op_counts(model, x, dtype, device) -> dict:
    """Leaf aten ops of one training step (views, copies, others) and, on CUDA, device kernels."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train_step(model, x, dtype, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
    leaves = [
        e
        for e in prof.events()
        if e.name.startswith("aten::") and not any(c.name.startswith("aten::") for c in e.cpu_children)
    ]
    views = sum(e.name in VIEW_OPS for e in leaves)
    copies = sum(e.name == "aten::copy_" for e in leaves)
    counts = {"leaf_ops": len(leaves), "views": views, "copies": copies, "compute_ops": len(leaves) - views}
    if device.type == "cuda":
        counts["cuda_kernels"] = sum(e.device_type == torch.autograd.DeviceType.CUDA for e in prof.events())
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["vit_b_rvsa"])
    parser.add_argument("--img-size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtypes", nargs="+", default=["bf16"], choices=sorted(DTYPES))
    parser.add_argument("--impls", nargs="+", default=["reference", "sdpa", "flex"])
    parser.add_argument("--tiny", action="store_true", help="small widths/depths (see backbone.py FAMILIES)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {args.img_size}², batch {args.batch}, one training step")
    print(
        "| model | dtype | attn_impl | GFLOP (attention) | saved MiB | leaf ops | views | copies | compute ops | "
        "CUDA kernels |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    records = []
    for name in args.models:
        tiny = FAMILIES["vit"][2] if args.tiny else {}
        for dtype_name in args.dtypes:
            dtype = DTYPES[dtype_name]
            for impl in args.impls:
                torch.manual_seed(0)
                model = create_backbone(name, img_size=args.img_size, attn_impl=impl, drop_path_rate=0.0, **tiny).to(
                    device
                )
                model.train()
                x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
                train_step(model, x, dtype, device)  # warm-up: caches, lazy initialisation
                total, attention = flops(model, x, dtype, device)
                saved = saved_activation_bytes(model, x, dtype, device) / 2**20
                counts = op_counts(model, x, dtype, device)
                records.append(
                    dict(model=name, dtype=dtype_name, attn_impl=impl, img_size=args.img_size, batch=args.batch,
                         gflop=total / 1e9, attention_gflop=attention / 1e9, saved_mib=saved, **counts)
                )  # fmt: skip
                print(
                    f"| {name} | {dtype_name} | {impl} | {total / 1e9:.1f} ({attention / 1e9:.1f}) | {saved:.0f} | "
                    f"{counts['leaf_ops']} | {counts['views']} | {counts['copies']} | {counts['compute_ops']} | "
                    f"{counts.get('cuda_kernels', '-')} |",
                    flush=True,
                )
                del model
    write_json(args.json, records, command=" ".join(sys.argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
