"""One training step of one official twin per task family, as given, at the official size, on CPU.

Each case lays out synthetic data where the config expects it (``data/...`` relative paths) and a random
encoder file in the official MTP layout where its ``pretrained`` name points (``mtp:vit_b_rvsa`` =
``$MTP_HOME/last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth``), then runs ``mtp fit --config
configs/...`` in that folder with only ``--trainer.max_steps 1`` (and no DataLoader workers). The segmentation twin
(8 GPUs x 1 image with SyncBN in the official recipe) is first run as given on one device: it must stop at
start-up with the batch-size advice, not at the first step with torch's BatchNorm error; then it trains with
``--data.batch_size 2``.

Slow (ViT-B at 512-1024 px on CPU, minutes each): ``pytest -m slow tests/test_official_twins_slow.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtp.data.synthetic import write_dior, write_dota, write_eurosat, write_levir_cd, write_loveda
from tests.conftest import REPO
from tests.official_keys import official_keys

PRETRAINED = "mtp_home/last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth"


def _official_encoder(path: Path) -> None:
    """Random tensors under the official ViT-B+RVSA encoder keys and shapes (the MTP release layout)."""
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) * 0.02 for k, shape in official_keys("vit_b_rvsa_512_keys").items()}
    for key in state:
        if key.endswith("norm1.weight") or key.endswith("norm2.weight"):
            state[key] = torch.ones_like(state[key])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state}, path)


def _data(family: str, root: Path) -> str:
    if family == "segmentation":
        write_loveda(root / "data/loveda_dataset", layout="mtp", n_train=2, n_val=1, n_test=1, size=1024)
        return "segmentation/rvsa-b-upernet-512-mae-mtp-loveda.yaml"
    if family == "rotated_detection":
        for split, n in (("trainval", 2), ("val", 1), ("test", 1)):
            write_dota(root / "data/split_ms_dotav1" / split, n=n, size=1024, seed=len(split))
        return "rotated_detection/oriented-rcnn-rvsa-b-1024-mae-mtp-dota10.yaml"
    if family == "detection":
        write_dior(root / "data/dior", n_train=2, n_val=1, n_test=1, size=800)
        return "detection/faster-rcnn-rvsa-b-800-mae-mtp-dior.yaml"
    if family == "classification":
        write_eurosat(root / "data/eurosat", layout="mtp", n_per_class=2, size=64)
        return "classification/vit-rvsa-b-224-mae-mtp-eurosat.yaml"
    write_levir_cd(root / "data/levir_patch_dataset", n_train=4, n_val=1, n_test=1, size=256)
    return "change_detection/rvsa-b-unet-256-mae-mtp-levir.yaml"


def _fit(config: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["fit", "--config", str(REPO / "configs" / config), "--trainer.max_steps", "1", "--data.num_workers", "0"]
    env = {"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "PATH": "/usr/bin:/bin", "HOME": str(cwd),
           "MTP_HOME": str(cwd / "mtp_home")}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "mtp.cli", *args, *extra], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1500)  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("family", ["segmentation", "rotated_detection", "detection", "classification",
                                    "change_detection"])  # fmt: skip
def test_one_official_twin_step_at_the_official_size(family, tmp_path):
    config = _data(family, tmp_path)
    _official_encoder(tmp_path / PRETRAINED)
    extra: list[str] = []
    if family == "segmentation":
        as_given = _fit(config, tmp_path)
        assert as_given.returncode == 2, as_given.stderr[-3000:]
        assert "--data.batch_size 8" in as_given.stderr and "Traceback" not in as_given.stderr
        assert "Expected more than 1 value per channel" not in as_given.stderr
        extra = ["--data.batch_size", "2"]
    result = _fit(config, tmp_path, *extra)
    assert result.returncode == 0, result.stderr[-4000:]
    assert re.search(r"max_steps=1` reached", result.stdout + result.stderr), result.stderr[-2000:]
