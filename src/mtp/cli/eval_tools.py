"""``mtp tool`` commands that score result files: dota-eval."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from mtp.cli.arguments import probability


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
    parser.add_argument("--iou", type=probability, default=0.5, help="IoU threshold (devkit: >, mmrotate: >=)")
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
