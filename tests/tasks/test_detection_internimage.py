"""Horizontal detection with InternImage through the CLI: Faster R-CNN and RetinaNet (FPN on the InternImage maps)
on synthetic DIOR train and test; the trained weights written as an official mmdet file (inverse key map, background
rows as mmdet stores them) give the same results via --model.load_from."""

from __future__ import annotations

import json

import pytest
import torch

from mtp.cli import main
from mtp.data.synthetic import write_dior
from tests.conftest import REPO
from tests.models.detectors.test_horizontal import to_official
from tests.tasks.internimage import assert_same_weights, task_from_config

CONFIG = REPO / "configs" / "detection" / "tiny-dior-faster-rcnn-internimage-cpu.yaml"


@pytest.fixture(scope="module")
def dior(tmp_path_factory):
    root = tmp_path_factory.mktemp("dior")
    write_dior(root, n_train=4, n_val=0, n_test=2, size=128, seed=3, object_scale=2.0)
    return root


@pytest.mark.parametrize("detector", ["faster_rcnn", "retinanet"])
def test_tiny_internimage_detector_fits_tests_and_loads_as_an_official_file(dior, tmp_path, detector):
    work = tmp_path / "work"
    data = []
    for split, name in (("train", "trainval"), ("val", "test"), ("test", "test")):
        spec = {"class_path": "mtp.data.datasets.horizontal.DIOR", "init_args": {"root": str(dior), "split": name}}
        data += [f"--data.{split}", json.dumps(spec)]
    args = [
        "--config", str(CONFIG), *data, "--model.detector", detector,
        "--model.img_size", "128", "--data.size", "128", "--data.batch_size", "2",
        "--data.num_workers", "0", "--data.persistent_workers", "false",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.default_root_dir", str(work), "--trainer.callbacks.init_args.dirpath", str(work / "checkpoints"),
        "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
    ]  # fmt: skip
    assert main(["fit", *args, "--model.output_dir", str(work / "test")]) == 0
    ckpt = work / "checkpoints" / "last.ckpt"
    assert main(["test", *args, "--ckpt_path", str(ckpt), "--model.output_dir", str(work / "test")]) == 0
    metrics = json.loads((work / "test" / "metrics.json").read_text())
    assert {"bbox_mAP", "bbox_mAP_50"} <= set(metrics)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    model = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    official = to_official(model, retinanet=detector == "retinanet")
    levels = [16, 32, 64, 128] if detector == "faster_rcnn" else [32, 64, 128]  # RetinaNet: from stride 8
    assert [official[f"neck.lateral_convs.{i}.conv.weight"].shape[1] for i in range(len(levels))] == levels
    torch.save({"meta": {}, "state_dict": official}, tmp_path / "epoch_12.pth")
    out = work / "official"
    official_run = ["--model.load_from", str(tmp_path / "epoch_12.pth"), "--model.output_dir", str(out)]
    assert main(["test", *args, *official_run]) == 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
    loaded = task_from_config(CONFIG, detector=detector, img_size=128, load_from=str(tmp_path / "epoch_12.pth"))
    assert_same_weights(loaded.model, model, skip_rows={"roi_heads.box_predictor.bbox_pred": 4})
