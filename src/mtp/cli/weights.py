"""``mtp weights list|info|path|verify|convert|download``: the catalogue of official release files (mtp.weights)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mtp.weights import (
    CATALOGUE,
    WeightsError,
    catalogue_markdown,
    convert,
    download,
    expected_path,
    get_weights,
    list_weights,
    mtp_home,
    safetensors_path,
    verify,
)
from mtp.weights.store import forget, read_hashes

KINDS = ("backbone", "pretraining", "finetuned")


def _state(name: str, home: str | None) -> str:
    files = (("file", expected_path(name, home)), ("safetensors", safetensors_path(name, home)))
    have = [label for label, path in files if path.is_file()]
    return "+".join(have) if have else "missing"


def _list(args: argparse.Namespace) -> int:
    if args.markdown:
        print(catalogue_markdown(), end="")
        return 0
    names = list_weights(args.pattern, kind=args.kind, backbone=args.backbone)
    width = max((len(n) for n in names), default=4)
    print(f"{'name':<{width}}  {'on disk':<16}  {'paper metric':<26}  file (under {mtp_home(args.home)})")
    for name in names:
        w = CATALOGUE[name]
        metric = f"{w.metric[0]} {w.metric[1]:.2f}" if w.metric else ""
        print(f"{name:<{width}}  {_state(name, args.home):<16}  {metric:<26}  {w.relpath}")
    return 0


def _info(args: argparse.Namespace) -> int:
    w = get_weights(args.name)
    path = expected_path(w.name, args.home)
    record = read_hashes(args.home).get(path.relative_to(mtp_home(args.home)).as_posix(), {})
    if w.model:
        kwargs = "".join(f", {k}={v!r}" for k, v in w.create_kwargs.items())
        build = f'create_model("{w.model}"{kwargs}, pretrained="{w.name}")'
    else:
        build = f'create_backbone("{w.backbone}", img_size=..., pretrained="{w.name}")  # or any create_model(...)'
    rows = [
        ("name", w.name), ("what", w.label), ("official file", w.filename), ("location", path),
        ("on disk", _state(w.name, args.home)), ("sha256 (recorded)", record.get("sha256", "not recorded yet")),
        ("download from", w.where), *((f"  {label}", url) for label, url in w.pages),
        ("direct link", w.url or "none (download by hand)"), ("keys", w.keys), ("loader", w.loader),
        ("build", f"from mtp.models import {'create_model' if w.model else 'create_backbone'}; {build}"),
        ("official config", w.official_config or "-"), ("our configs", ", ".join(w.configs) or "-"),
        ("paper metric", f"{w.metric[0]} {w.metric[1]:.2f}" if w.metric else "-"),
    ]  # fmt: skip
    for key, value in rows:
        print(f"{key + ':':<19} {value}")
    return 0


def _path(args: argparse.Namespace) -> int:
    from mtp.weights import weights_path

    print(expected_path(args.name, args.home) if args.expected else weights_path(args.name, args.home))
    return 0


def _verify(args: argparse.Namespace) -> int:
    names = list_weights() if args.all else args.names
    if not names:
        raise WeightsError("give NAME ... or --all")
    checked = 0
    for name in names:
        if args.reset:
            dropped = forget(name, args.home)
            print(f"{name}: forgot {len(dropped)} recorded checksum(s)")
        if args.all and _state(name, args.home) == "missing":
            continue
        for check in verify(name, args.home):
            word = {"recorded": "recorded (first use)", "verified": "ok"}[check.status]
            print(f"{name}: {check.path}: sha256 {check.sha256} {word}")
            checked += 1
    if args.all:
        print(f"{checked} file(s) checked under {mtp_home(args.home)}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    for name in args.names:
        path, written = convert(name, args.home)
        print(f"{name}: {'wrote' if written else 'already converted:'} {path}")
    return 0


def _download(args: argparse.Namespace) -> int:
    print(download(args.name, args.home, url=args.url, timeout=args.timeout))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtp weights",
        description="The official MTP release files by name (mtp:vit_b_rvsa, loveda:upernet_vit_b_rvsa_mae_mtp, "
        "...), stored under $MTP_HOME (default ~/.cache/mtp). Names work wherever a checkpoint path does.",
    )
    parser.add_argument("--home", help="folder of the files (default: $MTP_HOME or ~/.cache/mtp)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,info,path,verify,convert,download}")
    p = sub.add_parser("list", help="catalogue names, whether each file is on disk, the paper metric")
    p.add_argument("pattern", nargs="?", help="shell pattern, e.g. '*loveda*' or 'mtp:*'")
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("--backbone")
    p.add_argument("--markdown", action="store_true", help="the table of docs/CHECKPOINTS.md")
    p.set_defaults(run=_list)
    p = sub.add_parser("info", help="everything known about one file: pages, keys, loader, create_model call")
    p.add_argument("name")
    p.set_defaults(run=_info)
    p = sub.add_parser("path", help="the file a name resolves to (error: what to download from where)")
    p.add_argument("name")
    p.add_argument("--expected", action="store_true", help="print the location even if the file is missing")
    p.set_defaults(run=_path)
    p = sub.add_parser("verify", help="sha256: record on first use, compare afterwards")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--all", action="store_true", help="every catalogue file present under the home folder")
    p.add_argument("--reset", action="store_true", help="forget the recorded checksums first (accept new files)")
    p.set_defaults(run=_verify)
    p = sub.add_parser("convert", help="write a .safetensors copy once (loads prefer it: fast, no unpickling)")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(run=_convert)
    p = sub.add_parser("download", help="fetch a file that has a direct link (or from --url, e.g. a mirror)")
    p.add_argument("name")
    p.add_argument("--url", help="download from this URL instead of the catalogue's direct link")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up")
    p.set_defaults(run=_download)
    return parser


def run_weights(argv: Sequence[str]) -> int:
    """``mtp weights ...``; catalogue and file errors print their message (no traceback) and exit 1."""
    args = build_parser().parse_args(list(argv))
    try:
        return args.run(args)
    except (WeightsError, ValueError, OSError) as err:
        print(f"mtp weights {args.command}: {err}", file=sys.stderr)
        return 1
