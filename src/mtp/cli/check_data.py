"""``mtp tool check-data``: find every bad file of a configured dataset before a run, in one listing.

    mtp tool check-data --config CONFIG.yaml [--config MORE.yaml] [--level quick|full] [--workers N]

Reads the ``data:`` section of the same config(s) ``mtp fit`` takes, builds each dataset and scans all of them
(:mod:`mtp.data.datamodules.config_check`): 'quick' reads headers, partner files and annotations, 'full' decodes
every file and checks label values. Prints one line per dataset and one line per problem (file: problem); exit
code 1 when there is any problem, 0 otherwise, 2 for a bad command line or an unreadable config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mtp.cli.arguments import nonnegative_int

__all__ = ["load_data_section", "tool_check_data"]


def _merge(base: dict, update: Mapping) -> dict:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and "class_path" not in value:
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_data_section(configs: Sequence[str | Path]) -> dict:
    """The ``data:`` section of one or more YAML configs (later files override earlier ones, as with repeated
    ``--config``); ``ValueError`` naming the file for unreadable YAML or a missing section."""
    import yaml

    merged: dict = {}
    for path in configs:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: cannot read the YAML config: {e}") from e
        if not isinstance(content, Mapping):
            raise ValueError(f"{path}: a config must be a mapping of sections (trainer, model, data, ...)")
        _merge(merged, content)
    data = merged.get("data")
    if not isinstance(data, Mapping) or "class_path" not in data:
        raise ValueError(f"{', '.join(map(str, configs))}: no `data:` section with a class_path")
    return dict(data)


def _indent(message: str) -> str:
    return message.replace("\n", "\n      ")


def tool_check_data(argv: Sequence[str]) -> int:
    """Scan the datasets of a config for bad files (headers or full decode) and list every problem at once."""
    parser = argparse.ArgumentParser(
        prog="mtp tool check-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", action="append", required=True, help="the YAML config of `mtp fit` (repeatable)")
    parser.add_argument(
        "--level",
        choices=["quick", "full"],
        default="quick",
        help="quick: headers, sizes, partner files, annotations; full: also decode every file and check values",
    )
    parser.add_argument(
        "--workers", type=nonnegative_int, help="threads (quick) / processes (full); 0 or 1: none (default: CPUs, <= 8)"
    )
    args = parser.parse_args(argv)
    try:
        section = load_data_section(args.config)
    except (OSError, ValueError) as e:
        print(f"mtp tool check-data: error: {e}", file=sys.stderr)
        return 2
    from mtp.data.datamodules.config_check import check_data_section  # torch, Lightning: after the config is read

    logging.getLogger("mtp.data.datasets.checks").setLevel(logging.WARNING)  # the table below says it
    result = check_data_section(section, args.level, args.workers)
    print(f"check-data ({result.level}, {result.workers} worker(s)): {section.get('class_path')}")
    for report in result.reports:
        n = len(report.problems)
        print(f"  {report.name:<10} {report.num_items:>8} item(s) {report.seconds:8.2f} s  {n} problem(s)")
    problems = result.problems
    if problems:
        print(f"{len(problems)} problem(s):")
        for problem in problems:
            print(f"  [{problem.dataset}] {_indent(problem.message)}")
        print(f"mtp tool check-data: {len(problems)} problem(s) found ({result.seconds:.1f} s)", file=sys.stderr)
        return 1
    items = sum(r.num_items for r in result.reports)
    print(f"OK: {items} item(s) in {len(result.reports)} dataset(s), no problem ({result.seconds:.1f} s)")
    return 0
