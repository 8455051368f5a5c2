"""The ``mtp`` command line.

mtp fit|validate|test|predict --config CONFIG.yaml [--key value ...]   (LightningCLI)
mtp list-backbones
mtp tool NAME [args]     (dataset / checkpoint tools; ``mtp tool --help`` lists them)
mtp --version
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

import mtp

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def _parse_override(text: str) -> tuple[str, object]:
    """``key=value`` with a JSON value when it parses (``depth=2``, ``out_indices=[0,1,2,3]``)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def tool_backbone_shapes(argv: Sequence[str]) -> int:
    """Build a backbone, run a random batch through it and print the feature shapes."""
    import torch

    from mtp.models import create_backbone, list_backbones

    parser = argparse.ArgumentParser(prog="mtp tool backbone-shapes", description=tool_backbone_shapes.__doc__)
    parser.add_argument("--name", default="vit_b_rvsa", choices=list_backbones())
    parser.add_argument("--img-size", type=int, default=224, help="training size (pos-embed grid)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="input size (default: img-size)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--pretrained", help="checkpoint to load (MAE / MTP / fine-tuned)")
    parser.add_argument(
        "--set",
        dest="overrides",
        type=_parse_override,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constructor override, e.g. --set depth=2",
    )
    args = parser.parse_args(argv)
    model = create_backbone(args.name, img_size=args.img_size, pretrained=args.pretrained, **dict(args.overrides))
    model.eval()
    h, w = args.input_size or (args.img_size, args.img_size)
    with torch.no_grad():
        feats = model(torch.randn(args.batch_size, 3, h, w))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.name}: {n_params / 1e6:.2f} M parameters, input {args.batch_size}x3x{h}x{w}")
    for level, (stride, f) in enumerate(zip(model.strides, feats, strict=True)):
        print(f"  level {level}: stride {stride:2d} -> {tuple(f.shape)}")
    return 0


def tool_spacenet_to_masks(argv: Sequence[str]) -> int:
    """Convert the SpaceNet v1 release (GeoTIFF + GeoJSON) to 0/1 PNG masks with a seeded train/val split."""
    from mtp.data.tools.spacenet import convert_spacenet_v1

    parser = argparse.ArgumentParser(prog="mtp tool spacenet-to-masks", description=tool_spacenet_to_masks.__doc__)
    parser.add_argument("--src", required=True, help="release folder (searched for 3band_*.tif, Geo_*.geojson)")
    parser.add_argument("--out", required=True, help="output root: {train,val}/{images,labels}/*.png")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = convert_spacenet_v1(args.src, args.out, val_fraction=args.val_fraction, seed=args.seed)
    print(json.dumps({k: v for k, v in summary.items() if k != "skipped_files"}, indent=1))
    return 0


def tool_make_synthetic(argv: Sequence[str]) -> int:
    """Write a small synthetic dataset in an official file format (mtp.data.synthetic)."""
    from mtp.data.synthetic import FORMATS, write_dataset

    parser = argparse.ArgumentParser(prog="mtp tool make-synthetic", description=tool_make_synthetic.__doc__)
    parser.add_argument("--format", required=True, choices=sorted(FORMATS))
    parser.add_argument("--out", required=True, help="output root folder")
    parser.add_argument("--n", type=int, default=8, help="training images (per class for eurosat); val/test n//2")
    parser.add_argument("--size", type=int, help="image size in pixels (default: the writer's, 256; eurosat 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=["mtp", "release"], help="loveda / eurosat folder layout")
    parser.add_argument("--variant", choices=["sota", "sior", "fast"], help="samrs set")
    parser.add_argument("--object-scale", type=float, help="dota: multiply object sizes (1.0 ~ 0.5 m/px)")
    args = parser.parse_args(argv)
    chosen = (("layout", args.layout), ("variant", args.variant), ("object_scale", args.object_scale))
    options = {k: v for k, v in chosen if v is not None}
    print(write_dataset(args.format, args.out, n=args.n, size=args.size, seed=args.seed, **options))
    return 0


def tool_dota_split(argv: Sequence[str]) -> int:
    """Split DOTA images (+ labelTxt) into overlapping patches like mmrotate's splitter (ss / ms presets)."""
    from mtp.data.tools.dota_split import PRESETS, split_dota

    parser = argparse.ArgumentParser(prog="mtp tool dota-split", description=tool_dota_split.__doc__)
    parser.add_argument("--images", required=True, help="folder of the original images")
    parser.add_argument("--ann", help="folder of DOTA txt labels (omit for the test set)")
    parser.add_argument("--out", required=True, help="output root: images/*.png and annfiles/*.txt")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="ss", help="ss: 1024/200; ms: rates 0.5/1/1.5")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: in this process)")
    args = parser.parse_args(argv)
    summary = split_dota(args.images, args.ann, args.out, workers=args.workers, **PRESETS[args.preset])
    print(json.dumps(summary, indent=1))
    return 0


def tool_dota_eval(argv: Sequence[str]) -> int:
    """Evaluate DOTA Task1 result files against labelTxt files (devkit or mmrotate rule), print per-class AP."""
    from mtp.metrics.dota.ap import format_ap_table
    from mtp.metrics.dota.submission import evaluate_task1_dirs

    parser = argparse.ArgumentParser(prog="mtp tool dota-eval", description=tool_dota_eval.__doc__)
    parser.add_argument("--det", required=True, help="folder of Task1_<class>.txt files")
    parser.add_argument("--ann", required=True, help="folder of DOTA labelTxt files (one per image)")
    parser.add_argument("--version", choices=["1.0", "1.5", "2.0"], default="1.0", help="DOTA class list")
    parser.add_argument("--classes", help="comma-separated class list (overrides --version)")
    parser.add_argument(
        "--mode", choices=["devkit", "mmrotate"], default="devkit", help="devkit: official server; mmrotate: local"
    )
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold (devkit: >, mmrotate: >=)")
    parser.add_argument("--ap", choices=["11points", "area"], default="11points", help="AP integration")
    parser.add_argument(
        "--difficult",
        choices=["auto", "ignore", "count"],
        default="auto",
        help="auto: devkit ignores difficult (v1.0/2.0 script) but counts it for 1.5; mmrotate counts it",
    )
    parser.add_argument("--json", help="write the result (AP per class, npos, mAP) to this json file")
    args = parser.parse_args(argv)
    if args.classes:
        class_names = [c.strip() for c in args.classes.split(",") if c.strip()]
    else:
        from mtp.data.datasets.rotated import DOTA_CLASSES

        class_names = list(DOTA_CLASSES[args.version])
    auto_ignore = args.mode == "devkit" and args.version != "1.5"  # the v1.5 script forces difficult = 0
    ignore = auto_ignore if args.difficult == "auto" else args.difficult == "ignore"
    result = evaluate_task1_dirs(
        args.det, args.ann, class_names, mode=args.mode, iou_thr=args.iou, ap_mode=args.ap, ignore_difficult=ignore
    )
    print(format_ap_table(result))
    if args.json:
        summary = {
            "mode": args.mode,
            "iou_thr": args.iou,
            "ap_mode": args.ap,
            "ignore_difficult": ignore,
            "classes": class_names,
            "mAP": result["mAP"],
            "AP": result["AP"],
            "npos": result["npos"],
            "num_dets": result["num_dets"],
            "recall": {k: float(v[-1]) if len(v) else 0.0 for k, v in result["recall"].items()},
        }
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


def tool_dior_to_coco(argv: Sequence[str]) -> int:
    """Convert DIOR horizontal VOC xml to DIOR_{trainval,test}_coco.json (the official converter's output)."""
    from mtp.data.tools.dior_coco import dior_to_coco

    parser = argparse.ArgumentParser(prog="mtp tool dior-to-coco", description=tool_dior_to_coco.__doc__)
    parser.add_argument("--root", required=True, help="DIOR root: ImageSets/Main, JPEGImages-*, Annotations")
    parser.add_argument("--out", required=True, help="output folder for the jsons (the root for the config layout)")
    splits = ["trainval", "train", "val", "test"]
    parser.add_argument("--splits", nargs="+", default=["trainval", "test"], choices=splits)
    parser.add_argument("--first-category-id", type=int, default=0, help="id of the first class (official: 0)")
    args = parser.parse_args(argv)
    summary = dior_to_coco(args.root, args.out, splits=args.splits, first_category_id=args.first_category_id)
    print(json.dumps(summary, indent=1))
    return 0


def tool_xview_to_coco(argv: Sequence[str]) -> int:
    """Tile the xView release (GeoJSON + GeoTIFFs) into 416-px PNGs with COCO jsons and a seeded train/val split."""
    from mtp.data.tools.xview import convert_xview

    parser = argparse.ArgumentParser(prog="mtp tool xview-to-coco", description=tool_xview_to_coco.__doc__)
    parser.add_argument("--geojson", required=True, help="xView_train.geojson")
    parser.add_argument("--images", required=True, help="folder of the release images (train_images/*.tif)")
    parser.add_argument("--out", required=True, help="output root: {train,val}/images/*.png, xview_*_coco_format.json")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--num-train", type=int, help="train images (overrides --val-fraction; official: 700)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=416)
    args = parser.parse_args(argv)
    summary = convert_xview(args.geojson, args.images, args.out, val_fraction=args.val_fraction, seed=args.seed,
                            num_train=args.num_train, tile=args.tile)  # fmt: skip
    print(json.dumps(summary, indent=1))
    return 0


def tool_samrs_to_coco(argv: Sequence[str]) -> int:
    """Convert SAMRS instance pickles ({label, mask RLE} per instance) to COCO jsons (official convert_pkl_json)."""
    from mtp.data.tools.samrs_coco import samrs_to_coco

    parser = argparse.ArgumentParser(prog="mtp tool samrs-to-coco", description=tool_samrs_to_coco.__doc__)
    parser.add_argument("--dataset", required=True, choices=["sota", "sior", "fast"], help="class list and json name")
    parser.add_argument("--lists", required=True, help="folder with the split lists {train,valid}.txt (image stems)")
    parser.add_argument("--images", required=True, help="image folder (<stem>.png; SIOR <stem>.jpg)")
    parser.add_argument("--pickles", required=True, help="instance pickles <stem>.pkl (rhbox_segs_init/ins)")
    parser.add_argument("--out", required=True, help="output folder (the set's base folder for SAMRSDataset)")
    parser.add_argument("--splits", nargs="+", default=["train", "valid"])
    parser.add_argument("--prefix", help="json name prefix (default: sota_rbb | sior | fast, as the reader expects)")
    args = parser.parse_args(argv)
    summary = samrs_to_coco(args.lists, args.images, args.pickles, args.out, args.dataset, splits=args.splits,
                            prefix=args.prefix)  # fmt: skip
    print(json.dumps(summary, indent=1))
    return 0


def tool_reuse_decoder(argv: Sequence[str]) -> int:
    """Turn an MTP pretraining checkpoint into a fine-tuning checkpoint (decoder reuse; change_ckpt)."""
    from mtp.models.pretraining.reuse import REUSE_TASKS, reuse_decoder
    from mtp.tasks.pretraining_checkpoints import atomic_torch_save

    parser = argparse.ArgumentParser(prog="mtp tool reuse-decoder", description=tool_reuse_decoder.__doc__)
    parser.add_argument("--ckpt", required=True, help="official Iter_*/last_* whole-model file or an mtp checkpoint")
    parser.add_argument(
        "--task",
        required=True,
        choices=REUSE_TASKS,
        help="rd: Oriented R-CNN, is: Mask R-CNN, hd: Faster R-CNN, ss: UperNet (256 channels)",
    )
    parser.add_argument("--dataset", choices=["sota", "sior", "fast"], help="also copy this dataset's final layers")
    parser.add_argument("--official", action="store_true", help="exact scripts/change_ckpt.py output (task rd)")
    parser.add_argument("--out", required=True, help="output .pth")
    args = parser.parse_args(argv)
    state = reuse_decoder(args.ckpt, args.task, dataset=args.dataset, official=args.official)
    atomic_torch_save({"state_dict": state}, args.out)
    print(f"wrote {args.out}: {len(state)} tensors for task {args.task}")
    return 0


TOOLS: dict[str, Callable[[Sequence[str]], int]] = {
    "backbone-shapes": tool_backbone_shapes,
    "spacenet-to-masks": tool_spacenet_to_masks,
    "make-synthetic": tool_make_synthetic,
    "dota-split": tool_dota_split,
    "dota-eval": tool_dota_eval,
    "dior-to-coco": tool_dior_to_coco,
    "xview-to-coco": tool_xview_to_coco,
    "samrs-to-coco": tool_samrs_to_coco,
    "reuse-decoder": tool_reuse_decoder,
}


def run_lightning(argv: Sequence[str] | None) -> int:
    """Hand ``fit|validate|test|predict ...`` to LightningCLI (any LightningModule/DataModule).

    ``argv=None`` lets LightningCLI read ``sys.argv`` itself (the console entry point).
    """
    from lightning.pytorch.cli import LightningCLI

    saved_argv = sys.argv
    if argv is not None:
        sys.argv = sys.argv[:1]  # explicit arguments only (LightningCLI warns when both are present)
    try:
        LightningCLI(
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=None if argv is None else list(argv),
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    finally:
        sys.argv = saved_argv
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package_log = logging.getLogger("mtp")
    if not package_log.handlers:
        package_log.addHandler(handler)
    package_log.setLevel(logging.INFO)
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        return run_lightning(None if from_command_line else argv)
    parser = argparse.ArgumentParser(prog="mtp", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mtp {mtp.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{fit,validate,test,predict,list-backbones,tool}")
    sub.add_parser("list-backbones", help="names accepted by create_backbone")
    tool = sub.add_parser("tool", help="dataset and checkpoint tools", add_help=False)
    tool.add_argument("name", nargs="?", choices=sorted(TOOLS))
    tool.add_argument("rest", nargs=argparse.REMAINDER)
    for name in LIGHTNING_SUBCOMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name} (mtp {name} --help)")
    args = parser.parse_args(argv)
    if args.command == "list-backbones":
        from mtp.models import list_backbones

        print("\n".join(list_backbones()))
        return 0
    if args.command == "tool":
        if args.name is None:
            print(
                "mtp tool NAME [--help]; tools:\n" + "\n".join(f"  {n}: {f.__doc__}" for n, f in sorted(TOOLS.items()))
            )
            return 0 if not args.rest else 2
        return TOOLS[args.name](args.rest)
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
