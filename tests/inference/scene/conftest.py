"""Fixtures of the scene tests: small scenes with known objects, tiny real task configs and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests.inference.scene.scenes import write_scene

TINY_BACKBONE = {"embed_dim": 32, "depth": 4, "num_heads": 2, "interval": 2, "out_indices": [0, 1, 2, 3],
                 "drop_path_rate": 0.0}  # fmt: skip

#: model sections of tiny real task configs (random weights; the family decides the outputs).
TINY_MODELS = {
    "segmentation": {"class_path": "mtp.tasks.segmentation.SemanticSegmentationTask",
                     "init_args": {"num_classes": 4, "img_size": 64, "backbone_kwargs": TINY_BACKBONE,
                                   "decode_channels": 16, "crop_size": [64, 64], "stride": [48, 48],
                                   "class_names": ["ground", "building", "road", "water"],
                                   "palette": [[0, 0, 0], [255, 0, 0], [128, 128, 128], [0, 0, 255]]}},
    "change_detection": {"class_path": "mtp.tasks.change_detection.ChangeDetectionTask",
                         "init_args": {"img_size": 64, "backbone_kwargs": TINY_BACKBONE,
                                       "decoder_channels": [32, 16, 16, 8]}},
    "classification": {"class_path": "mtp.tasks.classification.ClassificationTask",
                       "init_args": {"num_classes": 3, "img_size": 64, "backbone_kwargs": TINY_BACKBONE,
                                     "class_names": ["a", "b", "c"]}},
    "rotated_detection": {"class_path": "mtp.tasks.rotated_detection.RotatedDetectionTask",
                          "init_args": {"num_classes": 3, "img_size": 64, "backbone_kwargs": TINY_BACKBONE,
                                        "fpn_channels": 16, "rpn_settings": {"nms_pre": 50, "max_per_img": 20},
                                        "rcnn_settings": {"score_thr": 0.3}}},
    "detection": {"class_path": "mtp.tasks.detection.DetectionTask",
                  "init_args": {"num_classes": 3, "detector": "mask_rcnn", "img_size": 64,
                                "backbone_kwargs": TINY_BACKBONE, "fpn_channels": 16}},
}  # fmt: skip


def write_config(path: Path, model: dict) -> Path:
    path.write_text(yaml.safe_dump({"model": model, "trainer": {"accelerator": "cpu"}}))
    return path


def oracle_config(path: Path, name: str, **init_args) -> Path:
    """Config naming an oracle of :mod:`tests.inference.scene.oracles`."""
    return write_config(path, {"class_path": f"tests.inference.scene.oracles.{name}", "init_args": init_args})


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    """256 x 224 px scene with :data:`~tests.inference.scene.scenes.OBJECTS`, EPSG:32633, no-data corner."""
    return write_scene(tmp_path / "scene.tif")


@pytest.fixture
def tiny_task_files(tmp_path: Path):
    """``make(family) -> (config, checkpoint)`` for a tiny real task with seeded random weights."""

    def make(family: str) -> tuple[Path, Path]:
        from mtp.inference.scene import load_task

        config = write_config(tmp_path / f"{family}.yaml", TINY_MODELS[family])
        torch.manual_seed(0)
        task = load_task(config)
        ckpt = tmp_path / f"{family}.ckpt"
        torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}, ckpt)
        return config, ckpt

    return make
