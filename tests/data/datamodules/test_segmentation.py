"""SegmentationDataModule: official transforms, batch dict shapes/dtypes, seeding, workers, YAML construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mtp.data.datamodules.segmentation import SegmentationDataModule, collate_segmentation
from mtp.data.datasets.segmentation import ImageMaskFolder

CLASSES = ("a", "b", "c")


def make_folder(root: Path, sizes: list[tuple[int, int]], labelled: bool = True) -> ImageMaskFolder:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    (root / "ann").mkdir()
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "img" / f"{i}.png")
        Image.fromarray(rng.choice(np.array([0, 1, 2, 255], np.uint8), (h, w))).save(root / "ann" / f"{i}.png")
    return ImageMaskFolder(root / "img", root / "ann" if labelled else None, classes=CLASSES)


@pytest.fixture
def folders(tmp_path):
    mixed = make_folder(tmp_path / "mixed", [(40, 50), (30, 70), (64, 64), (20, 20), (50, 40)])
    same = make_folder(tmp_path / "same", [(24, 24)] * 4)
    unlabelled = make_folder(tmp_path / "unl", [(24, 30), (16, 16)], labelled=False)
    return mixed, same, unlabelled


def dm_for(folders, **kw) -> SegmentationDataModule:
    mixed, same, unlabelled = folders
    args = dict(train=mixed, val=mixed, test=same, predict=unlabelled, crop_size=(32, 32), batch_size=2)
    args.update(eval_batch_size=2, num_workers=0, seed=3)
    args.update(kw)
    return SegmentationDataModule(**args)


def check_train_batch(batch: dict, b: int) -> None:
    assert batch["image"].dtype == torch.float32 and tuple(batch["image"].shape) == (b, 3, 32, 32)
    assert batch["mask"].dtype == torch.int64 and tuple(batch["mask"].shape) == (b, 32, 32)
    assert type(batch["image"]) is torch.Tensor and type(batch["mask"]) is torch.Tensor
    assert set(batch["mask"].unique().tolist()) <= {0, 1, 2, 255}
    assert len(batch["image_path"]) == b and len(batch["mask_path"]) == b and len(batch["ori_size"]) == b


def test_train_batches_num_workers_0(folders):
    dm = dm_for(folders)
    batches = list(dm.train_dataloader())
    assert [len(b["image_path"]) for b in batches] == [2, 2]  # a last batch of one sample is dropped (BatchNorm)
    for b in batches:
        check_train_batch(b, len(b["image_path"]))
    assert folders[0].transform is None  # the datasets passed in are not modified
    assert dm.num_classes == 3


def test_train_batches_num_workers_2_reproducible(folders):
    runs = []
    for _ in range(2):
        dm = dm_for(folders, num_workers=2, persistent_workers=False)
        runs.append(list(dm.train_dataloader()))
    for a, b in zip(*runs, strict=True):
        check_train_batch(a, len(a["image_path"]))
        assert a["image_path"] == b["image_path"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_main_process_augmentation_seeded_and_isolated(folders):
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    first = next(iter(dm_for(folders).train_dataloader()))
    assert torch.equal(torch.rand(4), expected)  # the global RNG was not consumed
    torch.manual_seed(999)
    again = next(iter(dm_for(folders).train_dataloader()))
    assert first["image_path"] == again["image_path"] and torch.equal(first["image"], again["image"])
    other = next(iter(dm_for(folders, seed=4).train_dataloader()))
    assert not torch.equal(first["image"], other["image"])


def test_eval_batches_lists_when_sizes_differ(folders):
    dm = dm_for(folders)
    val = next(iter(dm.val_dataloader()))
    assert isinstance(val["image"], list) and len(val["image"]) == 2
    assert [tuple(t.shape) for t in val["image"]] == [(3, 40, 50), (3, 30, 70)]
    assert [tuple(t.shape) for t in val["mask"]] == [(40, 50), (30, 70)]
    assert all(t.dtype == torch.float32 for t in val["image"]) and all(t.dtype == torch.int64 for t in val["mask"])
    test = next(iter(dm.test_dataloader()))
    assert tuple(test["image"].shape) == (2, 3, 24, 24) and tuple(test["mask"].shape) == (2, 24, 24)
    pred = list(dm.predict_dataloader())
    assert "mask" not in pred[0] and pred[0]["mask_path"] == [None, None]
    assert pred[0]["ori_size"] == [(24, 30), (16, 16)]


def test_val_resize_touches_the_image_only(folders):
    val = next(iter(dm_for(folders, val_resize=(16, 16)).val_dataloader()))
    assert tuple(val["image"].shape) == (2, 3, 16, 16)
    assert [tuple(t.shape) for t in val["mask"]] == [(40, 50), (30, 70)]


def test_missing_datasets(folders):
    dm = SegmentationDataModule(num_workers=0)
    assert dm.val_dataloader() == [] and dm.num_classes is None
    with pytest.raises(ValueError, match="train"):
        dm.train_dataloader()


def test_collate_stack_modes():
    a = {"image": torch.zeros(3, 2, 2), "image_path": "a"}
    b = {"image": torch.zeros(3, 2, 3), "image_path": "b"}
    assert isinstance(collate_segmentation([a, b])["image"], list)
    assert collate_segmentation([a, a])["image"].shape == (2, 3, 2, 2)
    assert isinstance(collate_segmentation([a, a], stack=False)["image"], list)
    with pytest.raises(ValueError, match="cannot stack 'image'"):
        collate_segmentation([a, b], stack=True)


def test_yaml_style_construction(tmp_path):
    from jsonargparse import ArgumentParser

    make_folder(tmp_path / "f", [(20, 20)])
    parser = ArgumentParser()
    parser.add_class_arguments(SegmentationDataModule, "data")
    cfg = parser.parse_object(
        {
            "data": {
                "train": {
                    "class_path": "mtp.data.datasets.segmentation.ImageMaskFolder",
                    "init_args": {
                        "images_dir": str(tmp_path / "f" / "img"),
                        "masks_dir": str(tmp_path / "f" / "ann"),
                        "classes": list(CLASSES),
                    },
                },
                "crop_size": [16, 16],
                "num_workers": 0,
            }
        }
    )
    init = parser.instantiate if hasattr(parser, "instantiate") else parser.instantiate_classes
    dm = init(cfg).data
    check = next(iter(dm.train_dataloader()))
    assert tuple(check["image"].shape) == (1, 3, 16, 16)


def test_trainer_max_steps_cycles_epochs_without_val(folders):
    import lightning

    class Tiny(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Conv2d(3, 3, 1)
            self.steps = 0

        def training_step(self, batch, _):
            self.steps += 1
            logits = self.net(batch["image"])
            return torch.nn.functional.cross_entropy(logits, batch["mask"], ignore_index=255)

        def validation_step(self, batch, _):
            raise AssertionError("no val dataset was given")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = dm_for(folders, val=None)  # 5 images, batch 2 → 3 batches per epoch
    model = Tiny()
    trainer = lightning.Trainer(
        max_steps=7,
        max_epochs=-1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert model.steps == 7 and trainer.current_epoch >= 2  # 3 batches per epoch: the loader cycled
