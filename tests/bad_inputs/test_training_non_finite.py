"""A non-finite loss stops training in every task, before the update, with a non-zero exit code and a message
naming the step, the non-finite loss terms, the batch files, the config and the last checkpoint (whose weights are
all finite); no checkpoint with non-finite weights is ever written.

End to end: ``mtp fit`` with lr 1e6 on the tiny LoveDA config (the loss is NaN from step 2; before, ``last.ckpt``
got 143 of 157 tensors non-finite, ``test`` reported mIoU 8.6 and the exit code was 0). Per task: each
``training_step`` fed a NaN loss (the mechanism :meth:`mtp.tasks.base.MTPTask.stop_if_non_finite`).
"""

from __future__ import annotations

import pytest
import torch

from mtp.data.synthetic import write_loveda
from mtp.tasks.base import NonFiniteLossError
from tests.bad_inputs.conftest import assert_clear_error, run_mtp
from tests.bad_inputs.training_helpers import tiny_loveda_config

TINY = {"embed_dim": 32, "depth": 4, "num_heads": 2, "interval": 2, "out_indices": [0, 1, 2, 3]}
NAN = float("nan")


@pytest.mark.timeout(240)
def test_lr_1e6_stops_segmentation_with_the_step_terms_files_and_a_finite_checkpoint(tmp_path):
    root, work = tmp_path / "loveda", tmp_path / "work"
    write_loveda(root, layout="release", n_train=8, n_val=2, n_test=1, size=128, seed=4)
    config = tiny_loveda_config(tmp_path / "nan.yaml", root, work, every_n_train_steps=1, lr=1.0e6, warmup_iters=1)
    result = run_mtp("fit", "--config", config, "--trainer.max_steps", "50")
    out = assert_clear_error(result, "mtp fit: error:", "non-finite training loss", "loss_seg=nan",
                             "images_png", str(config), max_lines=12)  # fmt: skip
    assert result.returncode == 1
    step = int(out.split("at global step ")[1].split()[0])
    assert 1 <= step < 50
    named = out.split("last checkpoint (all weights finite): ")[1].split(". Training stopped")[0]
    assert named == str(work / "checkpoints" / "last.ckpt")
    for ckpt in (work / "checkpoints").glob("*.ckpt"):  # every file written holds finite weights only
        state = torch.load(ckpt, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), ckpt
    assert torch.load(named, weights_only=True)["global_step"] == step


def _tasks():
    from mtp.tasks.change_detection import ChangeDetectionTask
    from mtp.tasks.classification import ClassificationTask
    from mtp.tasks.detection import DetectionTask
    from mtp.tasks.rotated_detection import RotatedDetectionTask
    from mtp.tasks.segmentation import SemanticSegmentationTask

    image = torch.zeros(1, 3, 64, 64)
    common = {"image_path": ["scene_7.png"], "img_hw": [(64, 64)]}
    return {
        "segmentation": (
            SemanticSegmentationTask(num_classes=3, img_size=64, backbone_kwargs=TINY, decode_channels=16),
            {"image": image, "mask": torch.zeros(1, 64, 64, dtype=torch.long), **common},
            lambda x: (torch.full((1, 3, 16, 16), NAN), None),
            "forward_with_aux",
            "loss_seg=nan",
        ),
        "classification": (
            ClassificationTask(num_classes=3, img_size=64, backbone_kwargs=TINY),
            {"image": image, "label": torch.zeros(1, dtype=torch.long), **common},
            lambda x: torch.full((1, 3), NAN),
            "forward",
            "loss_cls=nan",
        ),
        "change_detection": (
            ChangeDetectionTask(img_size=64, backbone_kwargs=TINY, decoder_channels=[16, 16, 16, 16]),
            {"image": torch.zeros(1, 6, 64, 64), "mask": torch.zeros(1, 64, 64, dtype=torch.long), **common},
            lambda x: torch.full((1, 2, 64, 64), NAN),
            "forward",
            "loss_seg=nan",
        ),
        "detection": (
            DetectionTask(num_classes=3, img_size=64, backbone_kwargs=TINY, fpn_channels=16),
            {"image": image, "boxes": [torch.zeros(0, 4)], "labels": [torch.zeros(0, dtype=torch.long)], **common},
            lambda images, targets: {"loss_classifier": torch.tensor(NAN), "loss_box_reg": torch.tensor(0.5)},
            "forward",
            "loss_classifier=nan",
        ),
        "rotated_detection": (
            RotatedDetectionTask(num_classes=3, img_size=64, backbone_kwargs=TINY, fpn_channels=16),
            {"image": image, "rboxes": [torch.zeros(0, 5)], "labels": [torch.zeros(0, dtype=torch.long)], **common},
            lambda *args: {"loss_rpn_cls": torch.tensor(0.3), "loss_bbox": torch.tensor(float("inf"))},
            "forward",
            "loss_bbox=inf",
        ),
    }


@pytest.mark.parametrize("name", ["segmentation", "classification", "change_detection", "detection",
                                  "rotated_detection"])  # fmt: skip
def test_every_task_stops_on_a_non_finite_loss(name, monkeypatch):
    task, batch, fake_forward, method, term = _tasks()[name]
    monkeypatch.setattr(task.model, method, fake_forward)
    with pytest.raises(NonFiniteLossError) as raised:
        task.training_step(batch, 3)
    message = str(raised.value)
    assert "at global step 0 (epoch 0, batch 3" in message and term in message
    assert "scene_7.png" in message and "none written yet" in message
