"""Catalogue of the official MTP release files, by name, wherever a checkpoint path is accepted.

>>> from mtp.models import create_backbone, create_model
>>> net = create_backbone("vit_b_rvsa", img_size=512, pretrained="mtp:vit_b_rvsa")       # MAE+MTP encoder
>>> seg = create_model("upernet_vit_b_rvsa", pretrained="loveda:upernet_vit_b_rvsa_mae_mtp")  # fine-tuned, whole

A name resolves to ``$MTP_HOME`` (default ``~/.cache/mtp``) / the official file name (fine-tuned files in a folder
named after their official config); a missing file fails with what to download from which page and where to put
it. Names: ``<pretraining>:<backbone>`` (``mae:``, ``imp:``, ``mtp:``), ``mtp-whole:<backbone>`` and
``<dataset>:<create_model name>_<route>`` (:mod:`mtp.weights.catalogue`). Checksums are recorded on first use
and checked afterwards; ``.safetensors`` copies (``convert``) are preferred when present
(:mod:`mtp.weights.store`). The command line: ``mtp weights list|info|path|verify|convert|download``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

from mtp.weights.catalogue import CATALOGUE, Weights
from mtp.weights.store import (
    UnknownWeightsError,
    WeightsError,
    WeightsIntegrityError,
    WeightsNotFoundError,
    convert,
    download,
    expected_path,
    get_weights,
    missing_message,
    mtp_home,
    safetensors_path,
    verify,
    weights_path,
)

__all__ = [
    "CATALOGUE",
    "UnknownWeightsError",
    "Weights",
    "WeightsError",
    "WeightsIntegrityError",
    "WeightsNotFoundError",
    "catalogue_markdown",
    "convert",
    "download",
    "expected_path",
    "get_weights",
    "is_weights_name",
    "list_weights",
    "missing_message",
    "mtp_home",
    "resolve_checkpoint",
    "safetensors_path",
    "verify",
    "weights_path",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*:[a-z0-9_]+$")
_SOURCES = {name.split(":", 1)[0] for name in CATALOGUE}


def list_weights(pattern: str | None = None, *, kind: str | None = None, backbone: str | None = None) -> list[str]:
    """Catalogue names (sorted), optionally filtered by a shell pattern (``"*loveda*"``), ``kind``
    ('backbone', 'pretraining', 'finetuned') and ``backbone``."""
    names = sorted(CATALOGUE)
    if pattern:
        names = fnmatch.filter(names, pattern)
    return [
        n
        for n in names
        if (kind is None or CATALOGUE[n].kind == kind) and (backbone is None or CATALOGUE[n].backbone == backbone)
    ]


def is_weights_name(source: object) -> bool:
    """True when ``source`` is a string spelled like a catalogue name (``mtp:vit_b_rvsa``) and no such file exists.

    ``Path`` objects are always paths. A string with a known source prefix is a name even when it is not in the
    catalogue (so a typo fails with close matches instead of 'file not found').
    """
    if not isinstance(source, str) or not _NAME.match(source) or os.path.exists(source):
        return False
    return source.split(":", 1)[0] in _SOURCES


def resolve_checkpoint(source: str | os.PathLike, home: str | os.PathLike | None = None) -> Path:
    """A checkpoint argument as a file path: catalogue names via :func:`weights_path`, paths as they are."""
    if is_weights_name(source):
        return weights_path(str(source), home)
    return Path(source)


def catalogue_markdown() -> str:
    """The catalogue as the Markdown table of docs/CHECKPOINTS.md (``mtp weights list --markdown``): backbone
    files, whole pretraining models, then fine-tuned models."""
    rows = [
        "| name | file (under `$MTP_HOME`) | what | loads with | paper metric | download | our config |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {"backbone": 0, "pretraining": 1, "finetuned": 2}
    for name in sorted(CATALOGUE, key=lambda n: (order[CATALOGUE[n].kind], n)):
        w = CATALOGUE[name]
        loads = f'`create_model("{w.model}")`' if w.model else f'`create_backbone("{w.backbone}")`'
        metric = f"{w.metric[0]} {w.metric[1]:.2f}" if w.metric else ""
        pages = " · ".join(f"[{label.split(' (')[0]}]({url})" for label, url in w.pages)
        config = f"`{w.configs[0]}`" + (" …" if len(w.configs) > 1 else "") if w.configs else ""
        rows.append(f"| `{name}` | `{w.relpath}` | {w.label} | {loads} | {metric} | {pages} | {config} |")
    return "\n".join(rows) + "\n"
