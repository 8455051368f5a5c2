"""Stage 2 of the demo: the three-task MTP pretraining, run through ``mtp fit`` and cached.

The run is the tiny CPU recipe of ``configs/pretraining/tiny-samrs-cpu.yaml`` (a 4-block ViT+RVSA on SOTA, SIOR and
FAST, semantic segmentation + instance segmentation + rotated detection), written out as
``<out>/pretrain/config.yaml`` so it can be re-run by hand with ``mtp fit --config``. Its products are the
official files ``<out>/pretrain/official/last_vit_b_rvsa_ss_is_rd_pretrn_model{,_encoder}.pth``, which the
fine-tuning arms load exactly as a user loads the released weights.

Caching: ``cache.json`` records a key made of the config, the data parameters, the mtp version and a hash of
the package's source; while the key and both files are unchanged the pretraining is re-used
(``mtp demo --fresh`` or ``make demo-clean`` start over).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

import mtp
from mtp.demo.settings import TINY_VIT, DemoSettings

STEM = "vit_b_rvsa_ss_is_rd_pretrn_model"


@dataclass(frozen=True)
class PretrainingResult:
    """``encoder``: the official ``*_encoder.pth``; ``whole``: the whole-model file (decoder reuse);
    ``seconds``: wall time of the pretraining when it ran (recorded at that time when re-used)."""

    encoder: Path
    whole: Path
    seconds: float
    cached: bool


def pretraining_config(out: Path, samrs_root: Path, settings: DemoSettings) -> dict:
    """The ``mtp fit`` config of the demo pretraining (the tiny-samrs-cpu recipe, demo paths and length)."""
    root = out / "pretrain"
    return {
        "seed_everything": 2023,
        "trainer": {
            "max_steps": settings.pretrain_steps,
            "accelerator": "cpu",
            "devices": 1,
            "precision": "32-true",
            "gradient_clip_val": 5.0,
            "gradient_clip_algorithm": "norm",
            "default_root_dir": str(root),
            "limit_val_batches": 0,
            "log_every_n_steps": 25,
            "enable_model_summary": False,
            "enable_progress_bar": False,
            "logger": False,
            "enable_checkpointing": False,
            "callbacks": [
                {
                    "class_path": "mtp.tasks.pretraining_checkpoints.OfficialPretrainCheckpoints",
                    "init_args": {"dirpath": str(root / "official"), "interval": settings.pretrain_steps},
                }
            ],
        },
        "model": {
            "class_path": "mtp.tasks.pretraining.MultiTaskPretrainingTask",
            "init_args": {
                "backbone": "vit_b_rvsa",
                "img_size": 128,
                "datasets": ["sota", "sior", "fast"],
                "tasks": ["ss", "is", "rd"],
                "backbone_kwargs": dict(TINY_VIT),
                "channels": 64,
                "joint_semantic_trunk": True,
                "budget": {"proposals": 300, "rcnn_samples": 128},
                "lr": 5.0e-4,
                "weight_decay": 0.05,
            },
        },
        "data": {
            "class_path": "mtp.data.datamodules.PretrainingDataModule",
            "init_args": {
                "root": str(samrs_root),
                "datasets": ["sota", "sior", "fast"],
                "image_size": 128,
                "batch_size": 3,
                "batch_size_val": 3,
                "batch_mode": "avg",
                "num_workers": 0,
            },
        },
    }


def source_stamp() -> str:
    """sha256 over the package's Python sources (a code change invalidates the cached pretraining)."""
    digest = hashlib.sha256()
    package = Path(mtp.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def pretrain(out: Path, samrs_root: Path, settings: DemoSettings, *, fresh: bool = False) -> PretrainingResult:
    """Run (or re-use) the demo pretraining (``python -m mtp.cli fit``, output in ``pretrain/fit.log``); raises
    RuntimeError with the log's tail when it fails."""
    root = out / "pretrain"
    config = pretraining_config(out, samrs_root, settings)
    samrs_params = json.loads((samrs_root / "params.json").read_text())
    key = {"config": config, "data": samrs_params, "version": mtp.__version__, "source": source_stamp()}
    encoder, whole = root / "official" / f"last_{STEM}_encoder.pth", root / "official" / f"last_{STEM}.pth"
    cache = root / "cache.json"
    if not fresh and cache.is_file() and encoder.is_file() and whole.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return PretrainingResult(encoder, whole, float(stored["seconds"]), cached=True)
    cache.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = root / "fit.log"
    start = time.perf_counter()
    with log.open("w") as stream:  # the real command, in its own process (all cores, memory freed after)
        code = subprocess.run([sys.executable, "-m", "mtp.cli", "fit", "--config", str(config_path)],
                              stdout=stream, stderr=subprocess.STDOUT, check=False).returncode  # fmt: skip
    seconds = time.perf_counter() - start
    if code != 0 or not encoder.is_file():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise RuntimeError(f"the demo pretraining failed (exit {code}; log {log}):\n{tail}"
                           f"rerun by hand: mtp fit --config {config_path}")  # fmt: skip
    cache.write_text(json.dumps({"key": key, "seconds": seconds}, indent=1))
    return PretrainingResult(encoder, whole, seconds, cached=False)
