"""``mtp tool`` commands about models and checkpoints: backbone-shapes, reuse-decoder."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from mtp.cli.arguments import positive_int


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
    parser.add_argument("--img-size", type=positive_int, default=224, help="training size (pos-embed grid)")
    parser.add_argument(
        "--input-size", type=positive_int, nargs=2, metavar=("H", "W"), help="input size (default: img-size)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=1)
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


def tool_reuse_decoder(argv: Sequence[str]) -> int:
    """Turn an MTP pretraining checkpoint into a fine-tuning checkpoint (decoder reuse; change_ckpt)."""
    from mtp.models.checkpoint_writer import atomic_torch_save
    from mtp.models.pretraining.reuse import REUSE_TASKS, reuse_decoder

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
