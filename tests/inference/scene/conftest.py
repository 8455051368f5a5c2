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
                                        "rcnn_settings": {"score_thr": 0.26}}},
    "detection": {"class_path": "mtp.tasks.detection.DetectionTask",
                  "init_args": {"num_classes": 3, "detector": "mask_rcnn", "img_size": 64,
                                "backbone_kwargs": TINY_BACKBONE, "fpn_channels": 16}},
}  # fmt: skip


def _spread_classes(task, channels: int) -> None:
    """A random decoder's features hardly vary in space, so its class map is constant: give ``conv_seg`` large
    weights and centre its output on a random image, so that the maps the tests compare are varied."""
    head = task.model.decode_head.conv_seg
    seen = {}
    hook = head.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0]))
    with torch.no_grad():
        image = torch.randn(1, 3, 64, 64)
        pair = torch.cat([image, 0.9 * image + 0.3 * torch.randn_like(image)], dim=1)  # two similar dates
        task.model.eval()(pair if channels == 6 else image)
        hook.remove()
        mean = seen["x"].mean(dim=(0, 2, 3))
        head.weight.normal_(0.0, 100.0)
        head.bias.copy_(-(head.weight[:, :, 0, 0] @ mean))


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


def tiny_task_checkpoint(folder: Path, family: str) -> tuple[Path, Path]:
    """``(config, checkpoint)`` of a tiny real task of ``family`` with seeded random weights (see the helpers above)."""
    from mtp.inference.scene import load_task

    config = write_config(folder / f"{family}.yaml", TINY_MODELS[family])
    torch.manual_seed(0)
    task = load_task(config)
    if family in ("segmentation", "change_detection"):
        _spread_classes(task, 6 if family == "change_detection" else 3)
    if family == "detection":  # a random R-CNN keeps 100 boxes per tile: make background likelier (a few left)
        with torch.no_grad():
            task.model.roi_heads.box_predictor.cls_score.bias[0] += 3.0
    ckpt = folder / f"{family}.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}, ckpt)
    return config, ckpt


@pytest.fixture
def tiny_task_files(tmp_path: Path):
    """``make(family) -> (config, checkpoint)``: :func:`tiny_task_checkpoint` in the test's folder."""
    return lambda family: tiny_task_checkpoint(tmp_path, family)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The tiny models run fastest on one thread on the shared CI cores (no OpenMP spinning against the readers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
