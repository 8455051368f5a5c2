"""Segmentation with InternImage through the CLI: the tiny config on synthetic LoveDA (release layout) trains and
tests, and the trained weights written as an official mmseg file give the same test results via --model.load_from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtp.cli import main
from mtp.data.synthetic import write_loveda
from tests.conftest import REPO

CONFIG = REPO / "configs" / "segmentation" / "tiny-loveda-internimage-cpu.yaml"


def official_file(ckpt: Path, out: Path) -> Path:
    """An mmseg (mmengine) checkpoint of the trained model: ``meta``, ``state_dict`` with the official names."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    model = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    torch.save({"meta": {"mmseg_version": "1.1.1"}, "state_dict": model, "message_hub": {}, "optimizer": {}}, out)
    return out


@pytest.fixture(scope="module")
def loveda(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loveda")
    write_loveda(root, layout="release", n_train=6, n_val=3, n_test=0, size=128, seed=3)
    return root


def test_tiny_internimage_upernet_fits_tests_and_loads_as_an_official_file(loveda, tmp_path):
    work = tmp_path / "work"
    args = [
        "--config", str(CONFIG),
        "--data.train.init_args.root", str(loveda), "--data.test.init_args.root", str(loveda),
        "--data.num_workers", "0", "--data.persistent_workers", "false", "--data.batch_size", "2",
        "--trainer.default_root_dir", str(work), "--trainer.callbacks.init_args.dirpath", str(work / "checkpoints"),
        "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
    ]  # fmt: skip
    assert main(["fit", *args, "--trainer.max_steps", "3", "--model.output_dir", str(work / "test")]) == 0
    ckpt = work / "checkpoints" / "last.ckpt"
    hparams = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hparams["backbone"] == "internimage_xl" and hparams["backbone_kwargs"]["channels"] == 16
    assert main(["test", *args, "--ckpt_path", str(ckpt), "--model.output_dir", str(work / "test")]) == 0
    metrics = json.loads((work / "test" / "metrics.json").read_text())
    assert {"mIoU", "aAcc", "IoU.building"} <= set(metrics)
    assert len(list((work / "test" / "show").glob("*_overlay.png"))) == 3
    # The same weights as a released mmseg file (backbone.* = the official InternImage names, decode_head.*).
    official = official_file(ckpt, tmp_path / "iter_80000.pth")
    assert main(["test", *args, "--model.load_from", str(official), "--model.output_dir", str(work / "official")]) == 0
    assert json.loads((work / "official" / "metrics.json").read_text()) == metrics
