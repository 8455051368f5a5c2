"""Segmentation end to end through the CLI on data in the official formats (synthetic scenes).

LoveDA release layout and SpaceNet v1 GeoTIFF + GeoJSON (converted with the mtp tool), tiny
configs from configs/segmentation, `mtp fit` -> `mtp test` -> `mtp predict`, plus a learning check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mtp.cli import main
from mtp.data.synthetic import write_loveda, write_spacenet
from mtp.tasks.segmentation import SemanticSegmentationTask
from tests.conftest import REPO

CONFIGS = REPO / "configs" / "segmentation"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]


def loveda_args(root: Path, work: Path, steps: int) -> list[str]:
    return [
        "--config", str(CONFIGS / "tiny-loveda-cpu.yaml"),
        "--data.train.init_args.root", str(root),
        "--data.test.init_args.root", str(root),
        "--data.num_workers", "0",
        "--data.persistent_workers", "false",
        "--trainer.max_steps", str(steps),
        "--trainer.default_root_dir", str(work),
        "--trainer.callbacks.init_args.dirpath", str(work / "checkpoints"),
        "--model.output_dir", str(work / "test"),
        *QUIET,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def loveda_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loveda")
    write_loveda(root, layout="release", n_train=48, n_val=12, n_test=4, size=128, seed=3)
    return root


def test_loveda_fit_test_predict_writes_every_output(loveda_root, tmp_path):
    work = tmp_path / "work"
    args = loveda_args(loveda_root, work, steps=3)
    assert main(["fit", *args, "--data.batch_size", "2"]) == 0
    ckpt = work / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    assert main(["test", *args, "--ckpt_path", str(ckpt), "--model.submission", "loveda"]) == 0
    metrics = json.loads((work / "test" / "metrics.json").read_text())
    assert {"mIoU", "aAcc", "mFscore", "IoU.building"} <= set(metrics)
    assert "building" in (work / "test" / "per_class.txt").read_text()
    val_images = sorted((loveda_root / "Val").rglob("images_png/*.png"))
    shown = sorted((work / "test" / "show").glob("*_overlay.png"))
    assert len(shown) == len(val_images) == 12
    submission = sorted((work / "test" / "submission").glob("*.png"))
    assert len(submission) == 12
    labels = np.asarray(Image.open(submission[0]))
    assert labels.dtype == np.uint8 and labels.max() <= 6 and labels.shape == (128, 128)
    predict_args = [*args, "--data.predict", json.dumps(
        {"class_path": "mtp.data.datasets.segmentation.LoveDA",
         "init_args": {"root": str(loveda_root), "split": "test", "layout": "release"}}
    ), "--model.output_dir", str(work / "predict")]  # fmt: skip
    assert main(["predict", *predict_args, "--ckpt_path", str(ckpt)]) == 0
    assert len(list((work / "predict" / "show").glob("*_overlay.png"))) == 4


def test_spacenet_release_to_masks_fit_with_validation_and_test(tmp_path):
    raw, data, work = tmp_path / "raw", tmp_path / "spacenet", tmp_path / "work"
    write_spacenet(raw, n=10, size=96, seed=1)
    assert main(["tool", "spacenet-to-masks", "--src", str(raw), "--out", str(data), "--val-fraction", "0.3"]) == 0
    args = [
        "--config", str(CONFIGS / "tiny-spacenetv1-cpu.yaml"),
        "--data.train.init_args.root", str(data),
        "--data.val.init_args.root", str(data),
        "--data.test.init_args.root", str(data),
        "--trainer.max_steps", "4",
        "--trainer.val_check_interval", "2",
        "--trainer.default_root_dir", str(work),
        "--model.output_dir", str(work / "test"),
        *QUIET,
    ]  # fmt: skip
    assert main(["fit", *args]) == 0
    ckpts = sorted(work.rglob("*.ckpt"))
    assert ckpts
    assert main(["test", *args, "--ckpt_path", str(ckpts[-1])]) == 0
    metrics = json.loads((work / "test" / "metrics.json").read_text())
    assert "IoU.building" in metrics and 0 <= metrics["aAcc"] <= 100


@pytest.mark.timeout(1200)  # a short learning run: minutes on a busy machine
def test_short_training_clearly_learns(loveda_root, tmp_path):
    """150 CPU steps on 48 synthetic scenes: held-out mIoU well above what a blind model gets."""
    work = tmp_path / "work"
    args = loveda_args(loveda_root, work, steps=150)
    assert main(["fit", *args, "--model.warmup_iters", "20"]) == 0
    assert main(["test", *args, "--ckpt_path", str(work / "checkpoints" / "last.ckpt")]) == 0
    metrics = json.loads((work / "test" / "metrics.json").read_text())
    assert metrics["mIoU"] >= 45.0, metrics


def test_official_configs_parse_with_the_official_hyperparameters(capsys):
    for config in sorted(CONFIGS.glob("rvsa-*.yaml")):
        with pytest.raises(SystemExit) as exit_:
            main(["fit", "--config", str(config), "--print_config"])
        assert exit_.value.code == 0, config
        printed = capsys.readouterr().out
        name = config.stem
        loveda = "loveda" in name
        assert f"num_classes: {7 if loveda else 2}" in printed
        assert "lr: 6.0e-05" in printed and "layer_decay: 0.9" in printed and "max_steps: 80000" in printed
        assert f"stride:\n    - {384 if loveda else 256}" in printed
        assert ("vit_l_rvsa" if "rvsa-l" in name else "vit_b_rvsa") in printed
        size = "l" if "rvsa-l" in name else "b"  # catalogue names (mtp.weights)
        assert f"pretrained: {'mtp' if 'mae-mtp' in name else 'mae'}:vit_{size}_rvsa\n" in printed, name
    assert len(list(CONFIGS.glob("rvsa-*.yaml"))) == 8


def test_checkpoint_for_other_classes_and_dataset_class_mismatch_fail(tmp_path):
    small = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=[0, 1, 2, 3])
    task = SemanticSegmentationTask(num_classes=7, img_size=64, backbone_kwargs=small, decode_channels=16)
    torch.save({"state_dict": task.model.state_dict()}, tmp_path / "seven.pth")
    with pytest.raises(ValueError, match="checkpoint for 7 classes, model has 2"):
        SemanticSegmentationTask(
            num_classes=2, img_size=64, backbone_kwargs=small, decode_channels=16, load_from=str(tmp_path / "seven.pth")
        )
    with pytest.raises(ValueError, match="test_mode"):
        SemanticSegmentationTask(num_classes=2, img_size=64, backbone_kwargs=small, test_mode="tiles")
