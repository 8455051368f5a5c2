"""Token-major vs channel-major residual stream of ViT+RVSA (the "sdpa" path either way), one training step.

The patch embedding's ``flatten(2).transpose(1, 2)`` is a strided view; element-wise ops keep that layout, so
without a copy the whole residual stream stays channel-major (strides (N*C, 1, N)), as in the official code,
and LayerNorm / Linear / window reshapes copy or run on strided memory. The fast paths copy once after the
embedding. This script runs the same model both ways (the channel-major run switches that single copy off)
and reports the ``aten::copy_`` calls and elements of one training step, and the LayerNorm time.

    python benchmarks/residual_layout.py --img-size 224 --batch 2
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch.profiler import profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import mtp.models.backbones.vit_rvsa as vit_rvsa
from mtp.models import create_backbone

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def measure(channel_major: bool, dtype: torch.dtype, args) -> tuple[int, float, float]:
    """(copy_ calls, million elements copied, LayerNorm forward + backward ms) of one training step."""
    resolve = vit_rvsa.resolve_attn_impl
    if channel_major:  # the stream copy is skipped for the reference path only: pretend to be it there
        vit_rvsa.resolve_attn_impl = lambda impl, device: "reference"
    try:
        torch.manual_seed(0)
        model = create_backbone(args.model, img_size=args.img_size, attn_impl="sdpa", drop_path_rate=0.0)
        x = torch.randn(args.batch, 3, args.img_size, args.img_size)

        def step():
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                feats = model(x)
            sum(f.float().sum() for f in feats).backward()

        step()
        with profile(record_shapes=True) as prof:
            step()
    finally:
        vit_rvsa.resolve_attn_impl = resolve
    copies = [e for e in prof.events() if e.name == "aten::copy_"]
    elements = sum(math.prod(e.input_shapes[0]) for e in copies if e.input_shapes and e.input_shapes[0])
    norms = ("aten::native_layer_norm", "aten::native_layer_norm_backward")
    norm_ms = sum(e.cpu_time_total for e in prof.events() if e.name in norms) / 1e3
    return len(copies), elements / 1e6, norm_ms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b_rvsa")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    args = parser.parse_args(argv)
    print(f"cpu, torch {torch.__version__}, {args.model} {args.img_size}² batch {args.batch}, one training step")
    print("| dtype | stream | copy_ calls | elements copied (M) | LayerNorm fwd+bwd ms |\n|---|---|---|---|---|")
    for name in args.dtypes:
        for channel_major in (True, False):
            calls, elements, norm_ms = measure(channel_major, DTYPES[name], args)
            stream = "channel-major (official)" if channel_major else "token-major (fast paths)"
            print(f"| {name} | {stream} | {calls} | {elements:.1f} | {norm_ms:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
