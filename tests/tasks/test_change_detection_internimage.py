"""Change detection with InternImage through the CLI: the Siamese tiny InternImage + UNet on synthetic LEVIR-CD
trains and tests (logits at the input resolution from the stride-4..32 maps); the trained weights written as an
official Open-CD file give the same results via --model.load_from."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from mtp.cli import main
from mtp.data.synthetic import write_levir_cd
from mtp.tasks.change_detection import ChangeDetectionTask
from tests.conftest import REPO
from tests.tasks.internimage import TINY

CONFIG = REPO / "configs" / "change_detection" / "tiny-levir-internimage-cpu.yaml"


def test_the_unet_sees_the_four_internimage_levels_and_predicts_at_input_resolution():
    task = ChangeDetectionTask("internimage_xl", img_size=64, backbone_kwargs=TINY, decoder_channels=(32, 16, 8, 8))
    task.eval()
    head = task.model.decode_head
    assert [b.conv1[0].in_channels for b in head.blocks] == [128 + 64, 32 + 32, 16 + 16, 8]  # deepest first + skips
    with torch.no_grad():
        assert task.model(torch.randn(2, 6, 64, 64)).shape == (2, 2, 64, 64)


def test_tiny_internimage_change_detector_fits_tests_and_loads_as_an_official_file(tmp_path):
    root, work = tmp_path / "levir", tmp_path / "work"
    write_levir_cd(root, n_train=2, n_val=0, n_test=2, size=64, seed=1)
    data = []
    for stage in ("train", "test"):
        spec = {
            "class_path": "mtp.data.datasets.change_detection.LEVIRCD",
            "init_args": {"root": str(root), "split": stage},
        }
        data += [f"--data.{stage}", json.dumps(spec)]
    args = [
        "--config", str(CONFIG), *data,
        "--data.num_workers", "0", "--data.persistent_workers", "false", "--data.batch_size", "2",
        "--data.crop_size", "[64, 64]", "--model.img_size", "64", "--model.warmup_epochs", "1",
        "--trainer.default_root_dir", str(work), "--trainer.callbacks.init_args.dirpath", str(work / "checkpoints"),
        "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
    ]  # fmt: skip
    assert main(["fit", *args, "--trainer.max_epochs", "1", "--model.output_dir", str(work / "test")]) == 0
    ckpt = work / "checkpoints" / "last.ckpt"
    assert main(["test", *args, "--ckpt_path", str(ckpt), "--model.output_dir", str(work / "test")]) == 0
    metrics = json.loads((work / "test" / "metrics.json").read_text())
    assert {"mIoU", "changed.F1", "IoU.changed"} <= set(metrics)
    labels = np.asarray(Image.open(work / "test" / "labels" / "test_1.png"))
    assert labels.shape == (64, 64) and set(np.unique(labels)) <= {0, 1}
    # The same weights as a released Open-CD file (one shared backbone.*, decode_head.*).
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    model = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    torch.save({"meta": {}, "state_dict": model}, tmp_path / "epoch_150.pth")
    out = work / "official"
    official_run = ["--model.load_from", str(tmp_path / "epoch_150.pth"), "--model.output_dir", str(out)]
    assert main(["test", *args, *official_run]) == 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
