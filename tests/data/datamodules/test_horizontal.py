"""DetectionDataModule: batch keys and shapes (num_workers 0), the train-only mmdet filter (empty + min_size 32),
evaluation ground truth in original pixels, masks per image, padding of mixed sizes in the collate, seeding."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from mtp.data.datamodules.horizontal import DetectionDataModule, collate_detection
from mtp.data.datasets.horizontal import DIOR, COCODetection
from mtp.data.synthetic import write_coco, write_dior
from mtp.data.synthetic.writers_common import save_image

KEYS = {"image", "boxes", "labels", "masks", "image_id", "image_path", "scale_factor", "img_hw", "ori_hw"}


@pytest.fixture(scope="module")
def dior(tmp_path_factory):
    root = tmp_path_factory.mktemp("dior")
    write_dior(root, seed=0, n_train=3, n_val=1, n_test=2, size=128)  # test image 00006 has no object
    return root


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    write_coco(root, seed=0, n_train=4, n_val=1, size=96)
    return root


def test_batches(dior):
    dm = DetectionDataModule(train=DIOR(dior, "trainval"), val=DIOR(dior, "test"), size=64, batch_size=3,
                             eval_batch_size=2, num_workers=0, seed=1)  # fmt: skip
    assert dm.num_classes == 20 and dm.classes[0] == "airplane" and dm.size == 64
    assert len(dm.train_dataset) == 4 and len(dm.val_dataset) == 2
    batches = list(dm.train_dataloader())
    assert [b["image"].shape[0] for b in batches] == [3]  # a last batch of one sample is dropped (BatchNorm)
    for batch in batches:
        assert set(batch) == KEYS and batch["masks"] is None
        assert batch["image"].dtype == torch.float32 and tuple(batch["image"].shape[1:]) == (3, 64, 64)
        for boxes, labels in zip(batch["boxes"], batch["labels"], strict=True):
            assert boxes.shape == (len(labels), 4) and boxes.dtype == torch.float32 and labels.dtype == torch.int64
            assert len(labels) > 0 and float(boxes.max()) <= 64 and float(boxes.min()) >= 0
        assert batch["img_hw"] == [(64, 64)] * len(batch["image_id"])
        assert batch["ori_hw"] == [(128, 128)] * len(batch["image_id"])
        assert batch["scale_factor"] == [pytest.approx((0.5, 0.5))] * len(batch["image_id"])
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (2, 3, 64, 64) and val["image_id"] == ["00005", "00006"]
    ds = DIOR(dior, "test")
    for i in range(2):  # evaluation ground truth stays in original pixels
        torch.testing.assert_close(val["boxes"][i], ds[i]["boxes"].as_subclass(torch.Tensor))
    assert dm.test_dataloader() == [] and dm.predict_dataloader() == []


def test_train_filter_is_on_a_copy(dior):
    ds = DIOR(dior, "test")
    dm = DetectionDataModule(train=ds, val=ds, size=64, num_workers=0)
    assert len(dm.train_dataset) == 1 and dm.train_dataset.num_filtered == {"empty": 1, "small": 0}
    assert len(ds) == 2 and len(dm.val_dataset) == 2 and ds.transform is None
    dm = DetectionDataModule(train=ds, size=64, num_workers=0, filter_empty_train=False)
    assert len(dm.train_dataset) == 2
    with pytest.raises(ValueError, match="none of the 2 images"):
        DetectionDataModule(train=ds, size=64, num_workers=0, min_size=129)


def test_min_size_filter_in_training(dior, tmp_path):
    root = tmp_path / "dior"
    shutil.copytree(dior, root)
    save_image(root / "JPEGImages-trainval" / "00001.jpg", np.zeros((20, 128, 3), np.uint8))
    (root / "Annotations" / "Horizontal Bounding Boxes" / "00001.xml").write_text(
        "<annotation><size><width>128</width><height>20</height></size><object><name>ship</name>"
        "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>9</xmax><ymax>12</ymax></bndbox></object></annotation>"
    )
    dm = DetectionDataModule(train=DIOR(root, "trainval"), size=64, num_workers=0)
    assert len(dm.train_dataset) == 3 and dm.train_dataset.num_filtered == {"empty": 0, "small": 1}
    dm = DetectionDataModule(train=DIOR(root, "trainval"), size=64, num_workers=0, min_size=0)
    assert len(dm.train_dataset) == 4


def test_masks_in_batches(coco):
    ds = COCODetection(coco / "train", coco / "annotations" / "instances_train.json", with_masks=True)
    dm = DetectionDataModule(train=ds, val=ds, size=80, batch_size=4, eval_batch_size=2, num_workers=0)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (len(dm.train_dataset), 3, 96, 96)
    for masks, boxes, hw in zip(batch["masks"], batch["boxes"], batch["img_hw"], strict=True):
        assert hw == (80, 80) and masks.dtype == torch.uint8 and tuple(masks.shape) == (len(boxes), 96, 96)
        assert not masks[:, 80:].any() and not masks[:, :, 80:].any()
    assert all(isinstance(i, int) for i in batch["image_id"])
    val = next(iter(dm.val_dataloader()))
    assert [tuple(m.shape[1:]) for m in val["masks"]] == [(96, 96), (96, 96)]  # original size
    torch.testing.assert_close(val["masks"][0], ds[0]["masks"].as_subclass(torch.Tensor))


def test_collate_pads_mixed_sizes_to_multiples_of_32():
    def sample(h, w, n):
        return {"image": tv_tensors.Image(torch.ones(3, h, w)), "labels": torch.zeros(n, dtype=torch.int64),
                "boxes": torch.zeros(n, 4), "image_id": f"{h}x{w}"}  # fmt: skip

    batch = collate_detection([sample(40, 70, 1), sample(64, 33, 0)])
    assert batch["image"].shape == (2, 3, 64, 96) and batch["masks"] is None
    assert batch["image"][0, :, :40, :70].eq(1).all() and batch["image"][0, :, 40:].eq(0).all()
    assert batch["img_hw"] == [(40, 70), (64, 33)] and batch["scale_factor"] == [(1.0, 1.0)] * 2


def test_seeded_train_batches_are_reproducible(dior):
    def first_batch(seed):
        dm = DetectionDataModule(train=DIOR(dior, "trainval"), size=64, batch_size=4, num_workers=0, seed=seed)
        return next(iter(dm.train_dataloader()))

    a, b = first_batch(5), first_batch(5)
    assert a["image_id"] == b["image_id"] and torch.equal(a["image"], b["image"])
    assert all(torch.equal(x, y) for x, y in zip(a["boxes"], b["boxes"], strict=True))
