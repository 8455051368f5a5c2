"""Scene classification with InternImage through the CLI: the tiny config on synthetic EuroSAT trains (with
validation) and tests; the trained weights written as an official mmpretrain file give the same results via
--model.load_from."""

from __future__ import annotations

import json

import torch

from mtp.cli import main
from mtp.data.synthetic import write_eurosat
from tests.conftest import REPO

CONFIG = REPO / "configs" / "classification" / "tiny-eurosat-internimage-cpu.yaml"


def test_tiny_internimage_classifier_fits_tests_and_loads_as_an_official_file(tmp_path):
    root, work = tmp_path / "eurosat", tmp_path / "work"
    write_eurosat(root, layout="mtp", n_per_class=2, size=32, source_size=64, seed=3)
    args = [
        "--config", str(CONFIG),
        *(f"--data.{s}.init_args.root={root}" for s in ("train", "val", "test")),
        "--data.num_workers", "0", "--data.persistent_workers", "false", "--data.batch_size", "7",
        "--model.img_size", "32", "--data.img_size", "32",
        "--trainer.default_root_dir", str(work), "--trainer.callbacks.init_args.dirpath", str(work / "checkpoints"),
        "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
    ]  # fmt: skip
    fit = ["--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1", "--model.output_dir", str(work)]
    assert main(["fit", *args, *fit]) == 0
    ckpt = work / "checkpoints" / "last.ckpt"
    assert main(["test", *args, "--ckpt_path", str(ckpt), "--model.output_dir", str(work / "test")]) == 0
    metrics = json.loads((work / "test" / "metrics.json").read_text())
    assert {"accuracy/top1", "accuracy/top5", "confusion_matrix"} <= set(metrics) and metrics["num_samples"] == 7
    # The same weights as a released mmpretrain file: backbone.* (official InternImage names) + head.fc.*
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    model = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    assert model["head.fc.weight"].shape == (7, 128)  # GAP of the last (stride-32) map
    torch.save({"meta": {}, "state_dict": model, "message_hub": {}}, tmp_path / "epoch_100.pth")
    out = work / "official"
    official_run = ["--model.load_from", str(tmp_path / "epoch_100.pth"), "--model.output_dir", str(out)]
    assert main(["test", *args, *official_run]) == 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
