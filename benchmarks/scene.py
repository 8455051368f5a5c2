"""Scene mapping (`mtp predict-scene`): peak host memory and tiles/s on synthetic GeoTIFF scenes of several sizes.

For every size a tiled, deflate-compressed RGB GeoTIFF (EPSG:32633, 10 % no-data) is written block by block by
``mtp.data.synthetic.write_scene_geotiff`` (never the whole raster in memory), then mapped in a *fresh process*
whose peak resident memory (ru_maxrss, from ``os.wait4``) is recorded:

* ``tiny``: a 7-class UperNet segmentation task on a small ViT+RVSA (LoveDA classes, random weights); output
  ``_classes.tif`` (``--probs``: also ``_probs.tif``).
* ``io``: the same pipeline with a model that returns constant logits: what reading, stitching and writing alone
  sustain (on a GPU the model should be the bottleneck, i.e. ``tiny``/real tiles/s << ``io`` tiles/s).
* ``--config CFG [--ckpt CKPT]``: any task config instead (e.g. the official LoveDA twin on a GPU).

CPU (2 shared cores, the numbers in docs/PERFORMANCE.md):
    python benchmarks/scene.py --sizes 10000 20000 --models tiny io --out outputs/bench-scene
GPU:
    python benchmarks/scene.py --sizes 20000 --device cuda --precision bf16-mixed --batch-size 16 \\
        --models io --config configs/segmentation/rvsa-b-upernet-512-mae-loveda.yaml --tile 512 --overlap 128
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

TINY = {"class_path": "mtp.tasks.segmentation.SemanticSegmentationTask", "init_args": {
    "num_classes": 7, "img_size": 256, "decode_channels": 32, "crop_size": [1024, 1024], "stride": [768, 768],
    "backbone_kwargs": {"embed_dim": 48, "depth": 4, "num_heads": 3, "interval": 2, "out_indices": [0, 1, 2, 3],
                        "drop_path_rate": 0.0}}}  # fmt: skip


class ConstantLogits(nn.Module):
    """(B, 3, H, W) -> (B, 7, H/4, W/4) constant logits: the pipeline without a model."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        return images.new_zeros(b, 7, h // 4, w // 4) + torch.arange(7, device=images.device).view(1, 7, 1, 1)


def child(args: argparse.Namespace) -> None:
    """Map one scene in this process and print the result as JSON (the parent measures our peak memory)."""
    from mtp.inference.scene import SceneOptions, load_task, predict_scene

    torch.set_num_threads(args.threads)
    if args.config:
        task = load_task(args.config, args.ckpt)
    else:
        import yaml

        config = Path(args.out) / "tiny.yaml"
        config.write_text(yaml.safe_dump({"model": TINY}))
        task = load_task(config)
        if args.model == "io":
            task.model = ConstantLogits()
            task.scene_family = "segmentation"
    options = SceneOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, device=args.device,
                           precision=args.precision, probs=args.probs, progress=False,
                           workers=args.workers)  # fmt: skip
    result = predict_scene(task, args.scene, Path(args.out) / f"{args.model}-{Path(args.scene).stem}", options=options)
    sizes = {k: p.stat().st_size for k, p in result.paths.items() if p.is_file()}
    print(json.dumps({"tiles": result.tiles, "tiles_run": result.tiles_run, "seconds": result.seconds,
                      "tiles_per_second": result.tiles_per_second, "bytes": sizes}))  # fmt: skip


def run_child(argv: list[str]) -> tuple[dict, float]:
    """Run ``benchmarks/scene.py --child ...``; returns its JSON result and its peak RSS in MiB."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    proc = subprocess.Popen([sys.executable, __file__, "--child", *argv], stdout=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}): {' '.join(argv)}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 20000], help="scene sides in pixels")
    parser.add_argument("--models", nargs="+", default=["tiny", "io"], choices=["tiny", "io"])
    parser.add_argument("--config", help="a task config instead of the built-in tiny model ('tiny' runs it)")
    parser.add_argument("--ckpt")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--probs", action="store_true", help="also write _probs.tif (7 uint8 bands)")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--out", default="outputs/bench-scene")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="tiny", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from mtp.data.synthetic import write_scene_geotiff

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        scene = out / f"scene_{size}.tif"
        if not scene.is_file():
            start = time.monotonic()
            write_scene_geotiff(scene, height=size, width=size, seed=0)
            print(f"wrote {scene} ({scene.stat().st_size / 2**20:.0f} MiB) in {time.monotonic() - start:.0f} s",
                  flush=True)  # fmt: skip
        for model in args.models:
            argv = ["--scene", str(scene), "--model", model, "--out", str(out), "--tile", str(args.tile),
                    "--overlap", str(args.overlap), "--batch-size", str(args.batch_size), "--device", args.device,
                    "--precision", args.precision, "--threads", str(args.threads),
                    "--workers", str(args.workers)] + (["--probs"] if args.probs else [])  # fmt: skip
            if args.config:
                argv += ["--config", args.config] + (["--ckpt", args.ckpt] if args.ckpt else [])
            result, rss = run_child(argv)
            rows.append((size, model, result, rss))
            print(f"{size}² {model}: {result['tiles']} tiles in {result['seconds']:.0f} s = "
                  f"{result['tiles_per_second']:.2f} tiles/s, peak RSS {rss:.0f} MiB", flush=True)  # fmt: skip
    print("\n| scene | model | tiles | seconds | tiles/s | Mpx/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for size, model, r, rss in rows:
        mpx = size * size / 1e6 / r["seconds"]
        print(f"| {size} x {size} | {model} | {r['tiles']} | {r['seconds']:.0f} | {r['tiles_per_second']:.2f} | "
              f"{mpx:.2f} | {rss:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
