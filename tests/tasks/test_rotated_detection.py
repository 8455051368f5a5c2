"""Rotated detection end to end on data in the official formats (synthetic scenes).

DOTA (split with the mmrotate splitter, merged back, Task1 files scored by `mtp tool dota-eval`),
DIOR-R (xml) and FAIR1M-2.0 (release xml, FAIR1M submission xml) through `mtp fit` / `mtp test`;
an overfitting check that the whole detector can learn; the official configs.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from mtp.cli import main
from mtp.data.datamodules.rotated import collate_rotated
from mtp.data.datasets.rotated import DOTA
from mtp.data.synthetic import write_dior, write_dota, write_fair1m
from mtp.data.tools.dota_split import split_dota
from mtp.data.transforms.rotated import build_rotated_test_transform
from mtp.metrics.dota.metric import DOTAMeanAP
from mtp.models.detectors.oriented_rcnn.model import build_oriented_rcnn
from mtp.models.detectors.oriented_rcnn.roi_head import RCNNConfig
from mtp.models.detectors.oriented_rcnn.rpn import RPNConfig
from tests.conftest import REPO

CONFIGS = REPO / "configs" / "rotated_detection"
TINY = CONFIGS / "tiny-dota-cpu.yaml"
FAST = [
    "--trainer.enable_progress_bar", "false",
    "--trainer.logger", "false",
    "--trainer.max_epochs", "1",
    "--trainer.limit_train_batches", "2",
    "--data.num_workers", "0",
    "--data.persistent_workers", "false",
    "--data.batch_size", "2",
    # an untrained detector scores every class ~1/16 > 0.05: cap the candidates so CPU NMS stays quick
    "--model.rpn_settings", "{nms_pre: 300, max_per_img: 100}",
    "--model.rcnn_settings", "{num_samples: 64, score_thr: 0.1}",
]  # fmt: skip


def dataset_args(kind: str, **init_args) -> list[str]:
    out = []
    for split in ("train", "val", "test"):
        spec = {"class_path": f"mtp.data.datasets.rotated.{kind}", "init_args": init_args[split]}
        out += [f"--data.{split}", json.dumps(spec)]
    return out


def common(work: Path, size: int, num_classes: int) -> list[str]:
    return [
        "--config", str(TINY), *FAST,
        "--trainer.default_root_dir", str(work),
        "--trainer.callbacks.init_args.dirpath", str(work / "checkpoints"),
        "--model.num_classes", str(num_classes),
        "--model.img_size", str(size),
        "--model.output_dir", str(work / "test"),
        "--data.size", str(size),
    ]  # fmt: skip


def test_dota_split_fit_test_merge_submission_and_official_evaluation(tmp_path):
    raw, split, work = tmp_path / "raw", tmp_path / "split", tmp_path / "work"
    write_dota(raw, n=4, size=256, seed=2, object_scale=2.0)
    summary = split_dota(raw / "images", raw / "labelTxt", split, sizes=(128,), gaps=(32,))
    assert summary
    patches = sorted((split / "images").glob("*.png"))
    assert patches and all("__128__" in p.name for p in patches)
    spec = {"root": str(split), "version": "1.0", "images_dir": "images", "ann_dir": "annfiles"}
    args = common(work, 128, 15) + dataset_args("DOTA", train=spec, val=spec, test=spec)
    assert main(["fit", *args]) == 0
    test_args = [
        *args,
        "--ckpt_path",
        str(work / "checkpoints" / "last.ckpt"),
        "--model.submission",
        "dota",
        "--model.merge_patches",
        "true",
        "--model.save_predictions",
        "true",
    ]
    assert main(["test", *test_args]) == 0
    metrics = json.loads((work / "test" / "metrics.json").read_text())
    assert 0.0 <= metrics["mAP"] <= 1.0
    task1 = sorted((work / "test" / "submission").glob("Task1_*.txt"))
    assert len(task1) == 15
    ids = {line.split()[0] for f in task1 for line in f.read_text().splitlines()}
    assert ids <= {f"P{k:04d}" for k in range(4)}  # merged back to the original images
    assert sorted((work / "test" / "show").glob("*.png"))
    report = tmp_path / "eval.json"
    assert main(["tool", "dota-eval", "--det", str(work / "test" / "submission"), "--ann", str(raw / "labelTxt"),
                 "--json", str(report)]) == 0  # fmt: skip
    assert "mAP" in json.loads(report.read_text())


def test_dior_r_fit_and_test(tmp_path):
    root, work = tmp_path / "dior", tmp_path / "work"
    write_dior(root, n_train=4, n_val=2, n_test=2, size=128, seed=3)
    args = common(work, 128, 20) + dataset_args(
        "DIORR",
        train={"root": str(root), "split": "trainval"},
        val={"root": str(root), "split": "test"},
        test={"root": str(root), "split": "test"},
    )
    args += ["--data.rect_classes", "[]"]
    assert main(["fit", *args]) == 0
    assert main(["test", *args, "--ckpt_path", str(work / "checkpoints" / "last.ckpt")]) == 0
    assert "AP_vehicle" in json.loads((work / "test" / "metrics.json").read_text())


def test_fair1m_release_xml_to_submission_xml(tmp_path):
    root, work = tmp_path / "fair1m", tmp_path / "work"
    write_fair1m(root, n_train=4, n_val=2, size=128, seed=4)
    train = {"root": str(root), "split": "train", "format": "xml"}
    test = {"root": str(root), "split": "validation", "format": "xml"}
    args = common(work, 128, 37) + dataset_args("FAIR1M", train=train, val=test, test=test)
    args += ["--data.rect_classes", "[]"]
    assert main(["fit", *args]) == 0
    assert main(["test", *args, "--ckpt_path", str(work / "checkpoints" / "last.ckpt"),
                 "--model.submission", "fair1m"]) == 0  # fmt: skip
    xmls = sorted((work / "test" / "submission").glob("*.xml"))
    assert len(xmls) == 2
    root_el = ET.parse(xmls[0]).getroot()
    assert root_el.find("source/filename").text.endswith(".tif")
    assert root_el.find("size/width").text == "128"


@pytest.mark.timeout(1200)  # a short learning run: minutes on a busy machine
def test_the_detector_can_fit_a_few_images(tmp_path):
    """Overfitting 2 images: a broken target, coder, RoI op or post-processing would not reach this."""
    torch.manual_seed(0)
    write_dota(tmp_path, n=2, size=192, seed=4, object_scale=2.0)
    dataset = DOTA(tmp_path, version="1.0", transform=build_rotated_test_transform(192))
    batch = collate_rotated([dataset[0], dataset[1]])
    assert sum(len(r) for r in batch["rboxes"]) == 10
    model = build_oriented_rcnn(
        "vit_b_rvsa", num_classes=15, img_size=192, embed_dim=64, depth=4, num_heads=2, interval=2,
        out_indices=(0, 1, 2, 3), drop_path_rate=0.0, fpn_channels=32,
        rpn_cfg=RPNConfig(nms_pre=500, max_per_img=300), rcnn_cfg=RCNNConfig(num_samples=64),
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.05)
    for _ in range(160):
        losses = model(batch["image"], batch["img_hw"], batch["rboxes"], batch["labels"])
        optimizer.zero_grad()
        sum(v for k, v in losses.items() if k.startswith("loss")).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        results = model(batch["image"], batch["img_hw"])
    metric = DOTAMeanAP(15)
    metric.update(
        results, [{"rboxes": r, "labels": lab} for r, lab in zip(batch["rboxes"], batch["labels"], strict=True)]
    )
    assert metric.compute()["mAP"] >= 0.6


def test_official_configs_parse_with_the_official_hyperparameters(capsys):
    configs = sorted(CONFIGS.glob("oriented-rcnn-rvsa-*.yaml"))  # InternImage twins: test_internimage_twins.py
    assert len(configs) == 16
    for config in configs:
        with pytest.raises(SystemExit) as exit_:
            main(["fit", "--config", str(config), "--print_config"])
        assert exit_.value.code == 0, config
        printed = capsys.readouterr().out
        classes = {"diorr": 20, "dota10": 15, "dota20": 18, "fair1m20": 37}[config.stem.rsplit("-", 1)[1]]
        assert f"num_classes: {classes}" in printed and "lr: 0.0001" in printed and "layer_decay: 0.9" in printed
        assert "global_rel_pos" not in printed or "global_rel_pos: false" in printed
        assert ("max_epochs: 40" in printed) == ("dota20" in config.stem)
        assert "use_checkpoint: true" in printed and "drop_path_rate: 0.3" in printed


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_learning_check_on_held_out_synthetic_dota(tmp_path):
    """The issue's learning check (about 10 minutes on 2 cores, so marked slow; run with `-m slow`):
    the tiny config on 160 synthetic DOTA scenes reaches held-out DOTA mAP >= 0.7 (measured: 0.761)."""
    data, work = tmp_path / "dota-tiny", tmp_path / "work"
    write_dota(data / "train", n=160, size=256, seed=0, object_scale=2.0)
    write_dota(data / "val", n=40, size=256, seed=1, object_scale=2.0)
    spec_train = {"root": str(data / "train"), "version": "1.0"}
    spec_val = {"root": str(data / "val"), "version": "1.0"}
    args = [
        "--config", str(TINY),
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(work),
        "--trainer.callbacks.init_args.dirpath", str(work / "checkpoints"),
        "--model.output_dir", str(work / "test"),
        *dataset_args("DOTA", train=spec_train, val=spec_val, test=spec_val),
    ]  # fmt: skip
    assert main(["fit", *args]) == 0
    assert main(["test", *args, "--ckpt_path", str(work / "checkpoints" / "last.ckpt")]) == 0
    assert json.loads((work / "test" / "metrics.json").read_text())["mAP"] >= 0.7
