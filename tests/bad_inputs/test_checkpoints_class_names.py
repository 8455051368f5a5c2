"""Class names travel in every checkpoint and are compared at test / predict time: a COCO test json with another
category order, or a dataset with other class names, stops with one message listing both orders (exit code 2);
``--model.allow_class_mismatch true`` evaluates anyway, with a warning. Before, checkpoints stored
``class_names: None`` and the per-class table was silently mislabelled."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import yaml

from mtp.data.synthetic import write_coco, write_loveda
from mtp.tasks.base import ClassNamesMismatchError
from tests.bad_inputs.training_helpers import QUIET, run_in_process, tiny_loveda_config
from tests.conftest import REPO

TINY = {"embed_dim": 32, "depth": 4, "num_heads": 2, "interval": 2, "out_indices": [0, 1, 2, 3]}


def _coco_config(tmp_path, root, work):
    config = yaml.safe_load((REPO / "configs" / "detection" / "tiny-coco-mask-rcnn-cpu.yaml").read_text())
    config["trainer"].update(QUIET, default_root_dir=str(work), max_steps=1, max_epochs=-1)
    checkpoints = {"dirpath": str(work / "checkpoints"), "save_last": True}
    config["trainer"]["callbacks"] = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": checkpoints}
    ]
    config["model"]["init_args"].update(detector="faster_rcnn", img_size=128, output_dir=str(work / "test"))
    data = config["data"]["init_args"]
    for split, part in (("train", "train"), ("val", "val"), ("test", "val")):
        data[split]["init_args"] = {"images_dir": str(root / part),
                                    "ann_file": str(root / "annotations" / f"instances_{part}.json")}  # fmt: skip
    data.update(size=128, batch_size=2, num_workers=0, persistent_workers=False, min_size=0)
    path = tmp_path / "coco.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_coco_test_json_in_another_category_order(tmp_path, capsys):
    root, work = tmp_path / "coco", tmp_path / "work"
    write_coco(root, n_train=2, n_val=2, size=128)
    config = _coco_config(tmp_path, root, work)
    code, out = run_in_process(capsys, "fit", "--config", config)
    assert code == 0, out[-3000:]
    ckpt = work / "checkpoints" / "last.ckpt"
    stored = torch.load(ckpt, weights_only=True)["hyper_parameters"]["class_names"]
    ann = json.loads((root / "annotations" / "instances_val.json").read_text())
    assert stored == [c["name"] for c in ann["categories"]]
    ann["categories"] = ann["categories"][::-1]  # same ids and annotations, another order -> other label indices
    reordered = tmp_path / "reordered.json"
    reordered.write_text(json.dumps(ann))
    test = ["test", "--config", config, "--ckpt_path", ckpt, "--data.test.init_args.ann_file", reordered]
    code, out = run_in_process(capsys, *test)
    assert code == 2 and "Traceback" not in out, out[-3000:]
    assert "class order mismatch: the model (config / checkpoint) has [0:" + stored[0] in out
    assert f"but the test dataset (COCODetection) has [0:{stored[-1]}" in out and "allow_class_mismatch" in out
    code, out = run_in_process(capsys, *test, "--model.allow_class_mismatch", "true")
    assert code == 0 and "using the dataset's names" in out, out[-3000:]
    assert (work / "test" / "metrics.json").is_file()


def test_segmentation_dataset_with_other_class_names(tmp_path, capsys):
    root, work = tmp_path / "loveda", tmp_path / "work"
    write_loveda(root, layout="release", n_train=2, n_val=2, n_test=1, size=128)
    config = tiny_loveda_config(tmp_path / "seg.yaml", root, work, every_n_train_steps=1)
    assert run_in_process(capsys, "fit", "--config", config, "--trainer.max_steps", "1")[0] == 0
    ckpt = work / "checkpoints" / "last.ckpt"
    names = torch.load(ckpt, weights_only=True)["hyper_parameters"]["class_names"]
    assert names[:2] == ["background", "building"] and len(names) == 7
    other = [f"landcover_{i}" for i in range(7)]
    folder = {"class_path": "mtp.data.datasets.segmentation.ImageMaskFolder",
              "init_args": {"images_dir": str(root / "Val" / "Urban" / "images_png"),
                            "masks_dir": str(root / "Val" / "Urban" / "masks_png"), "classes": other}}  # fmt: skip
    code, out = run_in_process(
        capsys, "test", "--config", config, "--ckpt_path", ckpt, "--data.test", json.dumps(folder)
    )
    assert code == 2, out[-3000:]
    assert "[0:background, 1:building" in out and "[0:landcover_0, 1:landcover_1" in out


def _attach(task, classes):
    """Stand-in trainer with a datamodule whose datasets have ``classes`` (what setup() looks at)."""
    dataset = SimpleNamespace(classes=tuple(classes), num_classes=len(classes), palette=None)
    task._trainer = SimpleNamespace(datamodule=SimpleNamespace(test_dataset=dataset), world_size=1)


@pytest.mark.parametrize("family", ["segmentation", "detection", "rotated_detection", "change_detection",
                                    "classification"])  # fmt: skip
def test_every_task_stores_its_class_names_and_refuses_a_checkpoint_with_others(family):
    from mtp.tasks.change_detection import ChangeDetectionTask
    from mtp.tasks.classification import ClassificationTask
    from mtp.tasks.detection import DetectionTask
    from mtp.tasks.rotated_detection import RotatedDetectionTask
    from mtp.tasks.segmentation import SemanticSegmentationTask

    build = {
        "segmentation": lambda: SemanticSegmentationTask(2, img_size=64, backbone_kwargs=TINY, decode_channels=16),
        "detection": lambda: DetectionTask(2, img_size=64, backbone_kwargs=TINY, fpn_channels=16),
        "rotated_detection": lambda: RotatedDetectionTask(2, img_size=64, backbone_kwargs=TINY, fpn_channels=16),
        "change_detection": lambda: ChangeDetectionTask(img_size=64, backbone_kwargs=TINY, decoder_channels=[8] * 4),
        "classification": lambda: ClassificationTask(2, img_size=64, backbone_kwargs=TINY),
    }[family]
    task = build()
    _attach(task, ["unchanged", "changed"])
    task.setup("test")
    assert task.hparams["class_names"] == ["unchanged", "changed"]  # what every checkpoint then holds
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": {"class_names": ["changed", "unchanged"]}}
    with pytest.raises(ClassNamesMismatchError, match=r"the checkpoint has \[0:changed, 1:unchanged\]"):
        task.on_load_checkpoint(checkpoint)
    task.allow_class_mismatch = True
    task.on_load_checkpoint(checkpoint)
    assert task.class_names == ["unchanged", "changed"]
