"""RotatedDetectionDataModule: batch keys and shapes (num_workers 0), train-only filter_empty, evaluation ground
truth in original pixels, rect-class names, padding of mixed sizes in the collate."""

from __future__ import annotations

import pytest
import torch

from mtp.data.datamodules.rotated import RotatedDetectionDataModule, collate_rotated
from mtp.data.datasets.rotated import DOTA
from mtp.data.synthetic import write_dota
from mtp.ops.rotated.boxes import poly2rbox

KEYS = {"image", "rboxes", "boxes", "labels", "difficult", "image_id", "image_path", "scale_factor", "img_hw",
        "ori_hw"}  # fmt: skip


@pytest.fixture(scope="module")
def dota(tmp_path_factory):
    root = tmp_path_factory.mktemp("dota")
    write_dota(root, seed=0, n=4, size=128)  # 1, 3, 1, 2 objects
    (root / "labelTxt" / "P0003.txt").write_text("imagesource:GoogleEarth\ngsd:0.5\n")  # no objects
    return root


def test_batches(dota):
    ds = DOTA(dota)
    dm = RotatedDetectionDataModule(train=ds, val=ds, size=64, rotate=True, rect_classes=["storage-tank", "roundabout"],
                                    batch_size=2, eval_batch_size=3, num_workers=0, seed=1)  # fmt: skip
    assert dm.rect_classes == (9, 11) and dm.num_classes == 15 and dm.classes[0] == "plane"
    assert len(dm.train_dataset) == 3 and len(dm.val_dataset) == 4 and len(ds) == 4  # filter_empty on a copy
    batches = list(dm.train_dataloader())
    assert [b["image"].shape[0] for b in batches] == [2]  # a last batch of one sample is dropped (BatchNorm)
    for batch in batches:
        assert set(batch) == KEYS
        assert batch["image"].dtype == torch.float32 and tuple(batch["image"].shape[1:]) == (3, 64, 64)
        for rb, poly, lab, diff in zip(
            batch["rboxes"], batch["boxes"], batch["labels"], batch["difficult"], strict=True
        ):
            n = len(lab)
            assert n > 0 and rb.shape == (n, 5) and rb.dtype == torch.float32 and poly.shape == (n, 8)
            assert lab.dtype == torch.int64 and diff.dtype == torch.bool and diff.shape == (n,)
        assert batch["img_hw"] == [(64, 64)] * len(batch["image_id"])
        assert batch["ori_hw"] == [(128, 128)] * len(batch["image_id"])
        assert batch["scale_factor"] == [pytest.approx((0.5, 0.5))] * len(batch["image_id"])
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (3, 3, 64, 64) and val["image_id"] == ["P0000", "P0001", "P0002"]
    # evaluation ground truth stays in original pixels
    for i in range(3):
        torch.testing.assert_close(val["boxes"][i], ds[i]["boxes"].as_subclass(torch.Tensor))
        torch.testing.assert_close(val["rboxes"][i], poly2rbox(ds[i]["boxes"].as_subclass(torch.Tensor)))
    assert dm.test_dataloader() == [] and dm.predict_dataloader() == []


def test_seeded_train_batches_are_reproducible(dota):
    def first_batch():
        dm = RotatedDetectionDataModule(train=DOTA(dota), size=64, rotate=True, batch_size=3, num_workers=0, seed=5)
        return next(iter(dm.train_dataloader()))

    a, b = first_batch(), first_batch()
    assert a["image_id"] == b["image_id"] and torch.equal(a["image"], b["image"])
    for x, y in zip(a["rboxes"], b["rboxes"], strict=True):
        assert torch.equal(x, y)


def test_collate_pads_to_the_batch_maximum():
    samples = [
        {"image": torch.ones(3, 40, 70), "rboxes": torch.zeros(0, 5), "labels": torch.zeros(0, dtype=torch.int64)},
        {"image": torch.ones(3, 64, 30), "rboxes": torch.ones(2, 5), "labels": torch.ones(2, dtype=torch.int64)},
    ]
    batch = collate_rotated(samples)
    assert batch["image"].shape == (2, 3, 64, 96)
    assert batch["image"][0, :, :40, :70].eq(1).all() and batch["image"][0, :, 40:].eq(0).all()
    assert batch["image"][1, :, :, 30:].eq(0).all()
    assert batch["img_hw"] == [(40, 70), (64, 30)] and batch["scale_factor"] == [(1.0, 1.0)] * 2
    assert [r.shape for r in batch["rboxes"]] == [(0, 5), (2, 5)]


def test_bad_rect_class_name(dota):
    with pytest.raises(ValueError, match="rect class 'tank'"):
        RotatedDetectionDataModule(train=DOTA(dota), rect_classes=["tank"], num_workers=0)
