"""Backbone throughput and memory: default path vs the straightforward (reference) path.

ViT+RVSA: ``attn_impl`` "auto" (the default: "sdpa" on CPU and, until measured otherwise, on CUDA), "sdpa",
"flex" vs "reference"; InternImage: ``dcn_impl`` "gather" vs "reference"
(the DCNv3 core, :mod:`mtp.ops.dcnv3`). Train step = forward + backward (sum of the feature maps)
+ AdamW step; inference = eval forward under no_grad. Reports images/s, peak memory (CUDA
allocator; GPU only) and the bytes saved for backward (autograd saved tensors, deduplicated by
storage: a device-independent measure of activation memory), then the ratios default / reference
measured in the same run. ``--compile-blocks`` adds regional ``torch.compile`` (ViT+RVSA ``compile_blocks``).

GPU (official comparison setting):
    python benchmarks/backbone.py --device cuda --impls reference sdpa flex
    python benchmarks/backbone.py --device cuda --models internimage_xl --img-size 512 224
CPU (2 cores; smaller settings so that it finishes in minutes; --tiny shrinks the models):
    python benchmarks/backbone.py --device cpu --img-size 224 --batch-train 2 --batch-infer 2 --dtypes fp32
    python benchmarks/backbone.py --device cpu --models internimage_xl --tiny --img-size 224 --batch-train 1
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.paths import describe_impl, write_json

from mtp.models import create_backbone

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
# Per family: the constructor switch, its values (default path first) and the --tiny overrides.
FAMILIES = {
    "vit": (
        "attn_impl",
        ("auto", "reference"),
        dict(embed_dim=192, depth=4, num_heads=3, interval=2, out_indices=(0, 1, 2, 3)),
    ),
    "internimage": (
        "dcn_impl",
        ("gather", "reference"),
        dict(channels=64, depths=(2, 2, 4, 2), groups=(4, 8, 16, 32)),  # 16 channels per group, as XL
    ),
}


def family(model: str) -> str:
    return "internimage" if model.startswith("internimage") else "vit"


@dataclass
class Result:
    model: str
    img_size: int
    dtype: str
    impl: str
    mode: str
    batch: int
    img_per_s: float
    peak_mem_gib: float | None
    saved_mib: float | None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def saved_activation_bytes(model, x, dtype, device) -> int:
    """Bytes autograd keeps for backward in one forward (unique storages, parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(device, dtype):
        feats = model(x)
    del feats
    return sum(seen.values())


def autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def bench(
    model, x, *, train: bool, dtype, device, steps: int, warmup: int, repeats: int = 1
) -> tuple[float, float | None]:
    """Images/s of the best of ``repeats`` timed blocks of ``steps`` steps, and the CUDA peak (GiB)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None
    model.train(train)

    def step():
        if train:
            with autocast(device, dtype):
                loss = sum(f.float().mean() for f in model(x))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), autocast(device, dtype):
                model(x)

    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    elapsed = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        elapsed = min(elapsed, time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return steps * x.shape[0] / elapsed, peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["vit_b_rvsa", "vit_l_rvsa"])
    parser.add_argument("--img-size", type=int, nargs="+", default=[512])
    parser.add_argument("--batch-train", type=int, default=8)
    parser.add_argument("--batch-infer", type=int, default=16)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=sorted(DTYPES))
    parser.add_argument("--impls", nargs="+", default=None, help="default: both paths of each model family")
    parser.add_argument("--tiny", action="store_true", help="small widths/depths (CPU runs); see FAMILIES")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 GPU, 2 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default: 5 GPU, 1 CPU)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed blocks, the best is kept (default: 1 GPU, 3 CPU: shared cores)"
    )
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing on")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    parser.add_argument(
        "--compile-blocks", action="store_true", help="ViT+RVSA: regional torch.compile of the blocks (compile_blocks)"
    )
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend (CPU dry runs: eager)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--saved-only",
        action="store_true",
        help="only measure the bytes saved for backward (one forward at --batch-train; no timing)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    steps = args.steps or (20 if gpu else 2)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    repeats = args.repeats or (1 if gpu else 3)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    results: list[Result] = []
    print(
        f"device {device} ({torch.cuda.get_device_name() if gpu else 'cpu'}), torch {torch.__version__}, "
        f"sizes {args.img_size}, steps {steps} x best of {repeats}, warmup {warmup}, "
        f"checkpointing {args.checkpointing}, tiny {args.tiny}",
        flush=True,
    )
    if not gpu:
        gpu_models = " ".join(args.models)
        print(f"GPU command: python benchmarks/backbone.py --device cuda --models {gpu_models} --img-size 512 224")
    for name, img_size, dtype_name in itertools.product(args.models, args.img_size, args.dtypes):
        switch, impls, tiny = FAMILIES[family(name)]
        for impl in args.impls or impls:
            torch.manual_seed(0)
            overrides = {switch: impl, "use_checkpoint": args.checkpointing, **(tiny if args.tiny else {})}
            model = create_backbone(name, img_size=img_size, **overrides).to(device)
            if args.compile:
                model = torch.compile(model, backend=args.compile_backend)
            if args.compile_blocks:
                model.compile_blocks(backend=args.compile_backend)
            label = describe_impl(impl, device) if family(name) == "vit" else impl
            label += "+compile" if args.compile or args.compile_blocks else ""
            dtype = DTYPES[dtype_name]
            modes = (
                [("train", args.batch_train)]
                if args.saved_only
                else [("train", args.batch_train), ("infer", args.batch_infer)]
            )
            for mode, batch in modes:
                x = torch.randn(batch, 3, img_size, img_size, device=device)
                try:
                    if args.saved_only:
                        ips, peak = float("nan"), None
                    else:
                        ips, peak = bench(
                            model,
                            x,
                            train=mode == "train",
                            dtype=dtype,
                            device=device,
                            steps=steps,
                            warmup=warmup,
                            repeats=repeats,
                        )
                    saved = None
                    if mode == "train":
                        model.train()
                        saved = saved_activation_bytes(model, x, dtype, device) / 2**20
                except torch.OutOfMemoryError:
                    ips, peak, saved = float("nan"), float("nan"), None
                results.append(Result(name, img_size, dtype_name, label, mode, batch, ips, peak, saved))
                print(
                    f"{name:14s} {img_size:4d} {dtype_name:4s} {label:9s} {mode:5s} b{batch:<3d} {ips:8.2f} img/s  "
                    f"peak {'-' if peak is None else f'{peak:.2f} GiB':>10s}  "
                    f"saved {'-' if saved is None else f'{saved:.0f} MiB':>9s}",
                    flush=True,
                )
            del model
            if gpu:
                torch.cuda.empty_cache()
    print_table(results)
    write_json(args.json, [asdict(r) for r in results], command=" ".join(sys.argv))
    return 0


def print_table(results: list[Result]) -> None:
    """One row per non-reference path, with its ratios to the reference path of the same setting."""
    print(
        "\n| model | size | dtype | mode | batch | path | img/s | reference img/s | speed-up | "
        "peak GiB | reference peak GiB | saved-for-backward MiB path / reference |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    index = {(r.model, r.img_size, r.dtype, r.mode, r.impl): r for r in results}
    for (model, size, dtype, mode, impl), r in index.items():
        ref = index.get((model, size, dtype, mode, "reference"))
        if impl == "reference" or ref is None:
            continue
        peak = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        saved = "-" if r.saved_mib is None or ref.saved_mib is None else f"{r.saved_mib:.0f} / {ref.saved_mib:.0f}"
        print(
            f"| {model} | {size} | {dtype} | {mode} | {r.batch} | {impl} | {r.img_per_s:.2f} | {ref.img_per_s:.2f} | "
            f"{r.img_per_s / ref.img_per_s:.2f}x | {peak(r.peak_mem_gib)} | {peak(ref.peak_mem_gib)} | {saved} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
