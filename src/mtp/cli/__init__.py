"""The ``mtp`` command line.

mtp fit|validate|test|predict --config CONFIG.yaml [--key value ...]   (LightningCLI)
mtp predict-scene --config CFG --ckpt_path CKPT --input scene.tif --out DIR [options]   (map a GeoTIFF scene)
mtp demo [--size full|small] [--out DIR]   (pretraining vs scratch, few labels, report.html)
mtp list-backbones
mtp tool NAME [args]     (dataset / checkpoint tools; ``mtp tool --help`` lists them)
mtp weights list|info|path|verify|convert|download   (the official release files by name)
mtp --version
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import mtp
from mtp.cli.lightning import SUBCOMMANDS, run_lightning

__all__ = ["main"]


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at each record (``main`` may run several times in one process, e.g. in
    tests that capture stderr, so the stream of the first call may be closed by now)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _setup_logging() -> None:
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package_log = logging.getLogger("mtp")
    if not package_log.handlers:
        package_log.addHandler(handler)
    package_log.setLevel(logging.INFO)


def _run_tool(argv: Sequence[str]) -> int:
    """``mtp tool [NAME] [args]``: without a name (or with -h / --help) list the tools."""
    from mtp.cli.tools import TOOLS, tool_listing

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mtp tool NAME [--help] [args]\n\ntools:\n" + tool_listing())
        return 0
    name, rest = argv[0], list(argv[1:])
    if name not in TOOLS:
        print(f"mtp tool: unknown tool {name!r}; tools:\n{tool_listing()}", file=sys.stderr)
        return 2
    return TOOLS[name](rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mtp`` console script (``argv=None``: read ``sys.argv``)."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    if argv and argv[0] in SUBCOMMANDS:
        return run_lightning(None if from_command_line else argv)
    if argv and argv[0] == "tool":
        return _run_tool(argv[1:])
    if argv and argv[0] == "weights":
        from mtp.cli.weights import run_weights

        return run_weights(argv[1:])
    if argv and argv[0] == "demo":
        from mtp.cli.demo import main as demo_main

        return demo_main(argv[1:])
    if argv and argv[0] == "predict-scene":
        from mtp.cli.predict_scene import main as predict_scene_main

        return predict_scene_main(argv[1:])
    parser = argparse.ArgumentParser(prog="mtp", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mtp {mtp.__version__}")
    commands = "{fit,validate,test,predict,predict-scene,demo,list-backbones,tool,weights}"
    sub = parser.add_subparsers(dest="command", metavar=commands)
    sub.add_parser("predict-scene", help="map a whole GeoTIFF scene (mtp predict-scene --help)")
    sub.add_parser("demo", help="does MTP pretraining help? the whole study on CPU (mtp demo --help)")
    sub.add_parser("list-backbones", help="names accepted by create_backbone")
    sub.add_parser("tool", help="dataset and checkpoint tools (mtp tool --help lists them)")
    sub.add_parser("weights", help="official release files by name: list, info, path, verify, convert, download")
    for name in SUBCOMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name} (mtp {name} --help)")
    args = parser.parse_args(argv)
    if args.command == "list-backbones":
        from mtp.models import list_backbones

        print("\n".join(list_backbones()))
        return 0
    parser.print_help()
    return 2
