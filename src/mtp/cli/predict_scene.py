"""``mtp predict-scene``: map a whole GeoTIFF scene with a task checkpoint (streamed, tiled, bounded memory).

Outputs per task family (``DIR/<name>_*``, ``<name>`` = the input file stem):

  segmentation      _classes.tif (uint8, colour table, class names; 255 no-data) [+ _probs.tif with --probs]
  change detection  _change.tif (0/1, 255 no-data) + _change.geojson (changed areas, area_m2); needs --input-b
  rotated detection _objects.geojson (rotated boxes in the scene CRS) + _task1/Task1_<class>.txt (pixels)
  detection / masks _objects.geojson (boxes or mask outlines) + _coco.json (pixels)
  classification    _grid.tif (class, score per tile) + _grid.geojson

Rasters have the input's CRS, transform and size. Ctrl-C leaves valid partial outputs; --resume continues.
See README "Map a scene" and mtp.inference.scene.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from mtp.inference.scene.bands import parse_bands, parse_scale

log = logging.getLogger("mtp.cli.predict_scene")

EXAMPLE = """example:
  mtp tool make-synthetic --format scene --out scenes --size 2048
  mtp predict-scene --config configs/segmentation/tiny-loveda-cpu.yaml --ckpt_path last.ckpt \\
      --input scenes/scene_0.tif --out maps --tile 128 --overlap 32 --batch-size 16
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtp predict-scene", description=__doc__, epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--config", required=True, help="the task's YAML config (its model section is used)")
    p.add_argument("--ckpt_path", "--ckpt-path", dest="ckpt_path", help="mtp checkpoint (last.ckpt ...)")
    p.add_argument("--input", required=True, help="scene GeoTIFF (or any GDAL raster)")
    p.add_argument("--input-b", help="second date for change detection (same CRS, overlapping extent)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", help="output file stem (default: the input's)")
    g = p.add_argument_group("tiling and model")
    g.add_argument("--tile", type=int, help="tile size in pixels (default: the task's crop / input size)")
    g.add_argument("--overlap", type=int, help="tile overlap in pixels (default: the task's; 0 for classification)")
    g.add_argument("--batch-size", type=int, default=8, help="tiles per forward (default 8)")
    g.add_argument("--blend", choices=["mean", "gaussian", "cosine"], default="mean",
                   help="overlap blending of logits (mean: the official slide rule)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    g.add_argument("--precision", default="32-true", choices=["32-true", "32", "bf16-mixed", "16-mixed"])
    g.add_argument("--devices", type=int, default=1, help="processes (Lightning DDP, one band of rows each)")
    g.add_argument("--accelerator", default="auto", help="with --devices > 1: cpu (gloo) or gpu (nccl)")
    g.add_argument("--workers", type=int, default=2, help="reader threads (default 2)")
    g = p.add_argument_group("bands and scaling (see mtp.inference.scene.bands)")
    g.add_argument("--bands", help="1-based bands in R,G,B order, e.g. 3,2,1 (default 1,2,3; 1,1,1 for one band)")
    g.add_argument("--scale", default="auto",
                   help="auto (uint8 as is, else percentile:2,98) | none | s2 | percentile:LO,HI | range:LO,HI")
    g.add_argument("--nodata", type=float, help="no-data value (default: the file's mask / nodata)")
    g = p.add_argument_group("outputs")
    g.add_argument("--probs", action="store_true", help="segmentation: also write _probs.tif")
    g.add_argument("--score-thr", type=float, default=0.0, help="detection: drop detections below this score")
    g.add_argument("--merge-iou", type=float, default=0.1, help="detection: cross-tile NMS IoU (DOTA rule 0.1)")
    g.add_argument("--keep-cut-objects", action="store_true",
                   help="detection: keep detections cut by an inner tile edge even when the next tile sees them whole")
    g.add_argument("--class-names", help="comma-separated class names (default: the checkpoint's / config's)")
    g.add_argument("--no-overviews", action="store_true", help="do not build internal overviews")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in the same --out")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: on a terminal; log lines otherwise)")
    return p


def _options(args: argparse.Namespace):
    from mtp.inference.scene import SceneOptions

    parse_bands(args.bands)
    parse_scale(args.scale)  # fail early with the option's name
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    return SceneOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, bands=args.bands,
                        scale=args.scale, nodata=args.nodata, device=device, precision=args.precision,
                        blend=args.blend, probs=args.probs, score_thr=args.score_thr, merge_iou=args.merge_iou,
                        drop_cut=not args.keep_cut_objects,
                        workers=args.workers, overviews=not args.no_overviews, progress=args.progress,
                        resume=args.resume, class_names=names, name=args.name)  # fmt: skip


def _fingerprint(args: argparse.Namespace, overrides) -> dict:
    def ident(path: str | None) -> dict | None:
        if path is None:
            return None
        p = Path(path)
        stat = p.stat() if p.is_file() else None
        return {"path": str(p.resolve()), "bytes": stat.st_size if stat else None,
                "mtime_ns": stat.st_mtime_ns if stat else None}  # fmt: skip

    return {"config": ident(args.config), "ckpt": ident(args.ckpt_path), "overrides": [list(o) for o in overrides]}


def _interrupt_on_sigterm() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not in the main thread
        signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str]) -> int:
    """Entry of ``mtp predict-scene ARGS``; returns the exit code (2: bad input, 130: interrupted)."""
    from mtp.inference.scene import SceneInputError, SceneInterrupted, load_task, parse_model_overrides
    from mtp.models.checkpoint_reader import CheckpointError

    parser = build_parser()
    args, rest = parser.parse_known_args(list(argv))
    try:
        overrides = parse_model_overrides(rest)
        options = _options(args)
        for path in (args.input, args.input_b):
            if path is not None and not Path(path).is_file():
                raise SceneInputError(f"{path}: file not found")
        task = load_task(args.config, args.ckpt_path, overrides)
        _interrupt_on_sigterm()
        extra = _fingerprint(args, overrides)
        if args.devices > 1:
            from mtp.inference.scene.distributed import predict_scene_distributed

            rank, part, paths = predict_scene_distributed(task, args.input, args.out, devices=args.devices,
                                                          accelerator=args.accelerator, input_b=args.input_b,
                                                          options=options, fingerprint_extra=extra)  # fmt: skip
            if rank != 0:
                return 0
            summary = {"family": part.family if part else None, "outputs": {k: str(v) for k, v in paths.items()},
                       "processes": args.devices}  # fmt: skip
        else:
            from mtp.inference.scene import predict_scene

            result = predict_scene(task, args.input, args.out, input_b=args.input_b, options=options,
                                   fingerprint_extra=extra)  # fmt: skip
            summary = {"family": result.family, "outputs": {k: str(v) for k, v in result.paths.items()},
                       "tiles": result.tiles, "tiles_run": result.tiles_run, "seconds": round(result.seconds, 2),
                       "tiles_per_second": round(result.tiles_per_second, 3)}  # fmt: skip
    except SceneInterrupted as err:
        print(f"mtp predict-scene: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("mtp predict-scene: interrupted", file=sys.stderr)
        return 130
    except (SceneInputError, CheckpointError, ValueError, OSError) as err:
        print(f"mtp predict-scene: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0
