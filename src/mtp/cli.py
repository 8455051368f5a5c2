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
    args = parser.parse_args(argv)
    options = {k: v for k, v in (("layout", args.layout), ("variant", args.variant)) if v is not None}
    print(write_dataset(args.format, args.out, n=args.n, size=args.size, seed=args.seed, **options))
    return 0


TOOLS: dict[str, Callable[[Sequence[str]], int]] = {
    "backbone-shapes": tool_backbone_shapes,
    "spacenet-to-masks": tool_spacenet_to_masks,
    "make-synthetic": tool_make_synthetic,
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
