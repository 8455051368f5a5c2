"""``mtp demo``: does MTP pretraining help downstream? The whole study in one command (docs/DEMO.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path


def main(argv: Sequence[str]) -> int:
    """Run the demo; exit 0 when the gated gain is at least 2σ above zero, 1 when it is not, 2 on bad input."""
    from mtp.demo.settings import DemoSettings, small_settings

    parser = argparse.ArgumentParser(prog="mtp demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder (default outputs/demo)")
    parser.add_argument("--size", choices=("full", "small"), default="full",
                        help="full: the documented protocol (~10 min on 2 cores); small: a quick version")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", help="fine-tuning seeds (default 0 1 2)")
    parser.add_argument("--jobs", type=int, help="fine-tuning runs in parallel, one thread each (default 2)")
    parser.add_argument("--fresh", action="store_true", help="pretrain again even if the cached run matches")
    args = parser.parse_args(list(argv))
    settings = DemoSettings() if args.size == "full" else small_settings()
    if args.seeds is not None:
        if len(set(args.seeds)) < 2:
            parser.error("--seeds needs at least two different seeds (the verdict needs a standard deviation)")
        settings = replace(settings, seeds=tuple(args.seeds))
    if args.jobs is not None:
        if args.jobs < 1:
            parser.error("--jobs must be >= 1")
        settings = replace(settings, jobs=args.jobs)

    from mtp.demo.report import format_table
    from mtp.demo.study import run_study

    results = run_study(args.out, settings, fresh=args.fresh, say=lambda line: print(line, flush=True))
    print()
    print(format_table(results))
    print(f"\nPictures and curves: {results['report']}")
    print(f"Numbers: {args.out / 'results.json'}   (whole run {results['seconds']:.0f} s)")
    if not results["verdict"]["passed"]:
        print("FAILED: the MTP encoder's gain is not 2σ above zero (see the table above)", file=sys.stderr)
        return 1
    return 0
