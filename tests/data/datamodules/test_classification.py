"""Classification datamodule: official timm transforms (shapes, eval geometry, normalisation), seeding."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from mtp.data.datamodules.classification import ClassificationDataModule
from mtp.data.datasets.classification import ClassFolder, EuroSAT
from mtp.data.synthetic import write_eurosat
from mtp.data.transforms.classification import MEAN, STD, _posterize, build_eval_transform, build_train_transform


@pytest.fixture(scope="module")
def eurosat(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eurosat")
    write_eurosat(root, layout="mtp", n_per_class=4, size=48, source_size=64, seed=2)
    return root


def module(root: Path, **kwargs) -> ClassificationDataModule:
    defaults = dict(img_size=32, batch_size=4, eval_batch_size=3, num_workers=0)
    return ClassificationDataModule(
        EuroSAT(root, "train"), EuroSAT(root, "val"), EuroSAT(root, "val"), **defaults | kwargs
    )


def test_train_and_eval_batches(eurosat):
    dm = module(eurosat)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and batch["label"].shape == (4,) and len(batch["image_path"]) == 4
    test = next(iter(dm.test_dataloader()))
    assert test["image"].shape == (3, 3, 32, 32) and test["label"].tolist() == [0, 1, 2]
    assert dm.classes == EuroSAT(eurosat, "val").classes and dm.num_classes == 7
    # the official train pipeline, in order
    names = [type(t).__name__ for t in build_train_transform(224).transforms]
    assert names == [
        "RandomResizedCropAndInterpolation",
        "RandomHorizontalFlip",
        "RandAugment",
        "MaybeToTensor",
        "Normalize",
        "RandomErasing",
    ]


def test_eval_transform_is_resize_short_edge_then_centre_crop_and_normalise():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    out = build_eval_transform(32, crop_pct=0.875)(image)
    side = math.floor(32 / 0.875)  # 36: the official 224 / (224/256) = 256
    expected = TF.center_crop(TF.resize(image, side, interpolation=TF.InterpolationMode.BICUBIC), [32, 32])
    expected = (TF.pil_to_tensor(expected).float() / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[
        :, None, None
    ]
    torch.testing.assert_close(out, expected)
    # official constants on the 0-255 scale
    grey = Image.new("RGB", (32, 32), (124, 116, 104))
    values = build_eval_transform(32)(grey)[:, 0, 0]
    official = [(124 - 123.675) / 58.395, (116 - 116.28) / 57.12, (104 - 103.53) / 57.375]
    torch.testing.assert_close(values, torch.tensor(official), atol=1e-5, rtol=0)


def test_seeded_augmentation_is_reproducible_and_leaves_global_rngs_alone(eurosat):
    def first_batch(seed: int) -> torch.Tensor:
        return next(iter(module(eurosat, seed=seed).train_dataloader()))["image"]

    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    a = first_batch(0)
    after = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    assert (torch.rand(3).tolist(), random.random(), np.random.rand()) == (after[0].tolist(), *after[1:])
    torch.testing.assert_close(first_batch(0), a)
    assert not torch.equal(first_batch(1), a)


def test_class_lists_must_agree_and_posterize_zero_bits(eurosat, tmp_path):
    other = ClassFolder(eurosat / "val", classes=["Water", "Forest"])
    with pytest.raises(ValueError, match="val dataset's classes"):
        ClassificationDataModule(EuroSAT(eurosat, "train"), other, num_workers=0)
    image = Image.new("RGB", (4, 4), (200, 100, 50))
    assert _posterize(image, 0).getpixel((0, 0)) == (0, 0, 0)
    assert _posterize(image, 1).getpixel((0, 0)) == (128, 0, 0)
    assert _posterize(image, 8) is image
