"""Rotated detection with InternImage through the CLI: Oriented R-CNN (FPN on the InternImage maps) on synthetic
DIOR-R trains and tests; the trained weights written as an official mmrotate 1.x file give the same results via
--model.load_from."""

from __future__ import annotations

import json

import torch

from mtp.cli import main
from mtp.data.synthetic import write_dior
from mtp.models.detectors.oriented_rcnn.model import official_to_ours
from tests.conftest import REPO
from tests.official_keys import official_keys
from tests.tasks.internimage import assert_same_weights, task_from_config

CONFIG = REPO / "configs" / "rotated_detection" / "tiny-dota-internimage-cpu.yaml"


def test_tiny_internimage_oriented_rcnn_fits_tests_and_loads_as_an_official_file(tmp_path):
    root, work = tmp_path / "dior", tmp_path / "work"
    write_dior(root, n_train=4, n_val=0, n_test=2, size=128, seed=3)
    data = []
    for split, name in (("train", "trainval"), ("val", "test"), ("test", "test")):
        spec = {"class_path": "mtp.data.datasets.rotated.DIORR", "init_args": {"root": str(root), "split": name}}
        data += [f"--data.{split}", json.dumps(spec)]
    args = [
        "--config", str(CONFIG), *data, "--data.rect_classes", "[]", "--model.num_classes", "20",
        "--model.img_size", "128", "--data.size", "128", "--data.batch_size", "2",
        "--data.num_workers", "0", "--data.persistent_workers", "false",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        # an untrained detector scores every class ~1/21: cap the candidates so CPU NMS stays quick
        "--model.rpn_settings", "{nms_pre: 300, max_per_img: 100}",
        "--model.rcnn_settings", "{num_samples: 64, score_thr: 0.1}",
        "--trainer.default_root_dir", str(work), "--trainer.callbacks.init_args.dirpath", str(work / "checkpoints"),
        "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
    ]  # fmt: skip
    assert main(["fit", *args, "--model.output_dir", str(work / "test")]) == 0
    ckpt = work / "checkpoints" / "last.ckpt"
    assert main(["test", *args, "--ckpt_path", str(ckpt), "--model.output_dir", str(work / "test")]) == 0
    metrics = json.loads((work / "test" / "metrics.json").read_text())
    assert "mAP" in metrics and "AP_vehicle" in metrics
    # The same weights as a released mmrotate 1.x file: backbone.* (official InternImage names), neck.* (mmdet FPN
    # names), rpn_head.*, roi_head.bbox_head.*.
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    model = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    inverse = {official_to_ours(k): k for k in official_keys("oriented_rcnn_diorr_vit_b")}
    official = {inverse.get(k, k): v for k, v in model.items()}
    assert [official[f"neck.lateral_convs.{i}.conv.weight"].shape[1] for i in range(4)] == [16, 32, 64, 128]
    torch.save({"meta": {}, "state_dict": official}, tmp_path / "epoch_12.pth")
    out = work / "official"
    official_run = ["--model.load_from", str(tmp_path / "epoch_12.pth"), "--model.output_dir", str(out)]
    assert main(["test", *args, *official_run]) == 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
    loaded = task_from_config(CONFIG, num_classes=20, img_size=128, load_from=str(tmp_path / "epoch_12.pth"))
    assert_same_weights(loaded.model, model)
