"""The demo's synthetic datasets, in the official formats, written once per set of parameters.

Layout under ``<out>/data``: ``samrs/`` (SOTA, SIOR and FAST in the layout of MTP's ``main_pretrain.py``),
``loveda-train/`` and ``loveda-held-out/`` (LoveDA release layout; the labelled tiles are the ``Train`` split of
the first, the held-out tiles the ``Val`` split of the second), ``levir-train/`` and ``levir-held-out/``
(LEVIR-CD layout: ``train`` split of the first, ``test`` split of the second). Every set comes from its own
generator seed, so no pretraining image is a downstream image and no held-out tile is a training tile.
A folder is rewritten only when its parameters (stored in ``params.json`` beside it) change.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mtp.data.synthetic.writers import write_dataset
from mtp.demo.settings import DemoSettings

SAMRS_SETS = ("sota", "sior", "fast")


@dataclass(frozen=True)
class DemoData:
    """Dataset roots of one demo run."""

    samrs: Path
    loveda_train: Path
    loveda_held_out: Path
    levir_train: Path
    levir_held_out: Path


def _write_once(root: Path, params: dict, write) -> None:
    stamp = root / "params.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return
    shutil.rmtree(root, ignore_errors=True)
    write(root)
    stamp.write_text(json.dumps(params, sort_keys=True))


def prepare_data(out: Path, settings: DemoSettings) -> DemoData:
    """Write (or re-use) every dataset of the demo under ``out / 'data'``."""
    base = out / "data"
    data = DemoData(base / "samrs", base / "loveda-train", base / "loveda-held-out", base / "levir-train",
                    base / "levir-held-out")  # fmt: skip

    def samrs(root: Path) -> None:
        for variant in SAMRS_SETS:
            write_dataset("samrs", root, n=settings.pretrain_images, size=settings.pretrain_size,
                          seed=settings.pretrain_seed, variant=variant)  # fmt: skip

    samrs_params = {"n": settings.pretrain_images, "size": settings.pretrain_size, "seed": settings.pretrain_seed}
    _write_once(data.samrs, samrs_params, samrs)
    seg, cd = settings.segmentation, settings.change_detection
    # the writers give val/test n // 2 images each: n = 2 x held-out gives exactly the held-out tiles
    for root, fmt, n, size, seed, extra in (
        (data.loveda_train, "loveda", seg.labelled, seg.tile, seg.train_seed, {"layout": "release"}),
        (data.loveda_held_out, "loveda", 2 * seg.held_out, seg.tile, seg.held_out_seed, {"layout": "release"}),
        (data.levir_train, "levir-cd", cd.labelled, cd.tile, cd.train_seed, {}),
        (data.levir_held_out, "levir-cd", 2 * cd.held_out, cd.tile, cd.held_out_seed, {}),
    ):
        params = {"format": fmt, "n": n, "size": size, "seed": seed, **extra}
        _write_once(root, params, partial(write_dataset, fmt, n=n, size=size, seed=seed, **extra))
    return data
