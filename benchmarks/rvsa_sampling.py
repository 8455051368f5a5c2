"""RVSA key/value sampling alone: the float32 ``grid_sample`` of the "sdpa" path vs ``bilinear_gather`` ("flex").

Both produce the window-partitioned keys and values of one RVSA block from the ``qkv`` projection output
(B, H*W, 3C) and a sampling grid: "grid_sample" pads, permutes to NCHW, casts to float32, samples,
casts back and partitions the windows (what ``attn_impl="sdpa"`` does); "gather" samples the rows of the
projection output in place (``mtp.ops.bilinear.bilinear_gather``, what ``attn_impl="flex"`` does).
Reports forward and backward milliseconds (best of --repeats) and the bytes autograd keeps.

    python benchmarks/rvsa_sampling.py --device cpu --tokens 32 --batch 2 --threads 1
    python benchmarks/rvsa_sampling.py --device cuda --tokens 32 --batch 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mtp.ops.bilinear import bilinear_gather
from mtp.ops.windows import symmetric_window_padding, window_partition

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def grid_sample_path(qkv, grid, b, h, w, heads, hd, ws):
    c = heads * hd
    left, right, top, bottom = symmetric_window_padding(h, w, ws)
    hp, wp = h + top + bottom, w + left + right
    padded = F.pad(qkv.reshape(b, h, w, 3 * c), (0, 0, left, right, top, bottom))
    kv = padded[..., c:].reshape(b, hp, wp, 2, heads, hd).permute(0, 4, 3, 5, 1, 2).reshape(b * heads, 2 * hd, hp, wp)
    kv = F.grid_sample(kv.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    kv = kv.to(qkv.dtype).reshape(b, heads, 2 * hd, hp, wp).permute(0, 3, 4, 1, 2)
    kv = window_partition(kv.reshape(b, hp, wp, heads * 2 * hd), ws)
    return kv.reshape(-1, ws * ws, heads, 2, hd).permute(3, 0, 2, 1, 4)


def gather_path(qkv, grid, b, h, w, heads, hd, ws):
    left, right, top, bottom = symmetric_window_padding(h, w, ws)
    hp, wp = h + top + bottom, w + left + right
    nh, nw = hp // ws, wp // ws
    scale = grid.new_tensor([(wp - 1) / 2, (hp - 1) / 2])
    shift = grid.new_tensor([(wp - 1) / 2 - left, (hp - 1) / 2 - top])
    loc = torch.addcmul(shift, grid, scale).reshape(b, heads, nh, ws, nw, ws, 2)
    loc = loc.permute(0, 2, 4, 3, 5, 1, 6).reshape(1, -1, 2).expand(2, -1, 2).reshape(-1, 2)
    rows = 3 * heads
    base = torch.arange(1, 3, device=qkv.device).view(2, 1, 1, 1) * heads
    base = base + torch.arange(b, device=qkv.device).view(1, b, 1, 1) * (h * w * rows)
    base = (base + torch.arange(heads, device=qkv.device)).expand(2, b, nh * nw * ws * ws, heads).reshape(-1)
    kv = bilinear_gather(qkv.reshape(-1, hd), loc, base, (h, w), (w * rows, rows))
    return kv.view(2, b * nh * nw, ws * ws, heads, hd).transpose(2, 3)


def saved_mib(fn, *args) -> float:
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return sum(seen.values()) / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tokens", type=int, default=32, help="token grid side (512² -> 32)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    b, h, heads, hd, ws = args.batch, args.tokens, args.heads, args.head_dim, 7
    hp = h + sum(symmetric_window_padding(h, h, ws)[2:])

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    print(f"device {device}, torch {torch.__version__}, {b}x{h}x{h} tokens, {heads} heads x {hd}, window {ws}")
    print("| dtype | path | forward ms | backward ms | saved MiB |\n|---|---|---|---|---|")
    for name in args.dtypes:
        torch.manual_seed(0)
        qkv = torch.randn(b, h * h, 3 * heads * hd, device=device, dtype=DTYPES[name], requires_grad=True)
        grid = (torch.rand(b * heads, hp, hp, 2, device=device) * 2 - 1).requires_grad_()
        for label, fn in (("grid_sample", grid_sample_path), ("gather", gather_path)):
            forward = backward = float("inf")
            for _ in range(args.repeats + 1):
                sync()
                start = time.perf_counter()
                out = fn(qkv, grid, b, h, h, heads, hd, ws)
                sync()
                mid = time.perf_counter()
                out.float().sum().backward()
                sync()
                forward, backward = min(forward, mid - start), min(backward, time.perf_counter() - mid)
            saved = saved_mib(fn, qkv, grid, b, h, h, heads, hd, ws)
            print(f"| {name} | {label} | {forward * 1e3:.1f} | {backward * 1e3:.1f} | {saved:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
