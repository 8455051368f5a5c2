"""DCNv3 core alone: the "gather" path vs the "reference" (grid_sample) path, on InternImage-XL shapes.

For an input of S x S pixels, level i of InternImage-XL runs the core on (B, S/2**(i+2), same, 192*2**i)
maps with 12*2**i groups (16 channels per group), 3x3 kernel, offset_scale 2. For each level this
times the forward alone and forward + backward (gradients for value, offset and mask; best of
--reps), and counts the bytes autograd keeps for backward (unique storages), both paths in the same
run; bf16 means value/offset in bf16 and the mask in fp32, as under autocast.

GPU:  python benchmarks/dcnv3.py --device cuda --img-size 512 --batch 8
CPU:  python benchmarks/dcnv3.py --device cpu --img-size 224 --batch 2 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mtp.ops.dcnv3 import DCN_IMPLS, dcnv3_core

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def inputs(batch: int, size: int, channels: int, groups: int, dtype: torch.dtype, device: torch.device):
    generator = torch.Generator().manual_seed(0)
    value = torch.randn(batch, size, size, channels, generator=generator).to(device, dtype)
    offset = (torch.randn(batch, size, size, groups * 18, generator=generator) * 2).to(device, dtype)
    mask = torch.randn(batch, size, size, groups, 9, generator=generator).softmax(-1).flatten(3).to(device)
    return [t.requires_grad_(True) for t in (value, offset, mask)]


def backward(forward, tensors: list[torch.Tensor], grad: torch.Tensor) -> None:
    torch.autograd.grad(forward(), tensors, grad)


def best_ms(fn, device: torch.device, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def saved_mib(fn) -> float:
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values()) / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--img-size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, input {args.img_size}²")
    if device.type != "cuda":
        print(f"GPU command: python benchmarks/dcnv3.py --device cuda --img-size {args.img_size} --batch {args.batch}")
    print(
        "\n| dtype | level | map | default fwd ms | reference fwd ms | fwd speed-up | default fwd+bwd ms "
        "| reference fwd+bwd ms | fwd+bwd speed-up | saved MiB default / reference |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dtype_name in args.dtypes:
        for level in range(4):
            size = -(-args.img_size // 2 ** (level + 2))
            channels, groups = 192 * 2**level, 12 * 2**level
            tensors = inputs(args.batch, size, channels, groups, DTYPES[dtype_name], device)
            grad = torch.randn(args.batch, size, size, channels, device=device).to(DTYPES[dtype_name])
            row = {}
            for impl in DCN_IMPLS:
                forward = partial(dcnv3_core, *tensors, group=groups, offset_scale=2.0, impl=impl)
                train = partial(backward, forward, tensors, grad)
                with torch.no_grad():
                    fwd = best_ms(forward, device, args.reps)
                row[impl] = (fwd, best_ms(train, device, args.reps), saved_mib(forward))
            (df, dt, ds), (rf, rt, rs) = row["gather"], row["reference"]
            print(
                f"| {dtype_name} | {level} | {args.batch}x{size}²x{channels} | {df:.1f} | {rf:.1f} | {rf / df:.2f}x "
                f"| {dt:.1f} | {rt:.1f} | {rt / dt:.2f}x | {ds:.0f} / {rs:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
