"""Segmentation transforms: mmseg semantics of resize / cat-max crop / flip / photometric / normalise / pad."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from mtp.data.transforms.segmentation import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    PadTo,
    PhotoMetricDistortion,
    RandomCropCatMax,
    RandomFlip,
    RandomResize,
    ResizeTo,
    build_test_transform,
    build_train_transform,
    rescale_size,
)


def make_sample(h: int, w: int, num_classes: int = 4) -> dict:
    """Image encodes pixel coordinates (ch0 = row, ch1 = col, mod 256) so image/mask alignment can be checked."""
    rows = torch.arange(h).view(-1, 1).expand(h, w)
    cols = torch.arange(w).view(1, -1).expand(h, w)
    image = torch.stack([rows % 256, cols % 256, (rows + cols) % 256]).to(torch.uint8)
    mask = (rows * 7 + cols * 3) % num_classes
    return {
        "image": tv_tensors.Image(image),
        "mask": tv_tensors.Mask(mask.clone()),
        "image_path": "img.png",
        "mask_path": "mask.png",
        "ori_size": (h, w),
    }


def mmcv_rescale(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """Oracle: mmcv rescale_size — f = min(long_max / long_edge, short_max / short_edge), round half up."""
    long_max, short_max = max(scale), min(scale)
    f = min(long_max / max(h, w), short_max / min(h, w))
    return int(h * f + 0.5), int(w * f + 0.5)


@pytest.mark.parametrize(
    ("hw", "scale", "expected"),
    [
        ((1024, 1024), (512, 512), (512, 512)),
        ((300, 500), (512, 512), (307, 512)),
        ((406, 438), (384, 384), (356, 384)),
    ],
)
def test_rescale_size_known_values(hw, scale, expected):
    assert rescale_size(hw, scale) == expected


@pytest.mark.parametrize("hw", [(1024, 1024), (406, 438), (300, 500), (37, 53), (512, 200)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_resize_matches_mmcv_rule(hw, seed):
    h, w = hw
    torch.manual_seed(seed)
    r = 0.5 + 1.5 * torch.rand(()).item()  # the ratio the transform draws first
    target = (int(512 * r), int(512 * r))
    torch.manual_seed(seed)
    out = RandomResize(scale=(512, 512), ratio_range=(0.5, 2.0))(make_sample(h, w))
    assert tuple(out["image"].shape) == (3, *mmcv_rescale(h, w, target))
    assert tuple(out["mask"].shape) == mmcv_rescale(h, w, target)
    assert out["image"].dtype == torch.uint8 and out["mask"].dtype == torch.int64
    assert isinstance(out["image"], tv_tensors.Image) and isinstance(out["mask"], tv_tensors.Mask)
    assert out["image_path"] == "img.png" and out["ori_size"] == (h, w)


def test_resize_keeps_mask_values_nearest():
    sample = make_sample(37, 53)
    sample["mask"] = tv_tensors.Mask(torch.tensor([0, 3, 7, 255])[torch.randint(0, 4, (37, 53))])
    for seed in range(5):
        torch.manual_seed(seed)
        out = RandomResize(scale=(64, 64), ratio_range=(0.5, 2.0))(sample)
        assert set(out["mask"].unique().tolist()) <= {0, 3, 7, 255}
    # exact ×2 upscale of the mask = pixel repetition
    up = ResizeTo((74, 106), resize_mask=True)(sample)["mask"]
    expected = sample["mask"].repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(up.as_subclass(torch.Tensor), expected.as_subclass(torch.Tensor))


def test_image_resize_is_cv2_bilinear():
    sample = make_sample(37, 53)
    out = ResizeTo((20, 29))(sample)["image"].permute(1, 2, 0).numpy().astype(int)
    ref = cv2.resize(sample["image"].permute(1, 2, 0).numpy(), (29, 20), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out - ref).max() <= 1


def test_resize_to_image_only_by_default():
    sample = make_sample(50, 70)
    out = ResizeTo((384, 384))(sample)
    assert tuple(out["image"].shape) == (3, 384, 384)
    assert tuple(out["mask"].shape) == (50, 70)
    keep = ResizeTo((384, 384), keep_ratio=True)(sample)
    assert tuple(keep["image"].shape) == (3, *mmcv_rescale(50, 70, (384, 384)))


def _crop_consistent(out: dict) -> tuple[int, int]:
    """Image and mask show the same window; returns its (top, left)."""
    img, mask = out["image"], out["mask"]
    top, left = int(img[0, 0, 0]), int(img[1, 0, 0])
    h, w = mask.shape
    full = make_sample(top + h, left + w)["mask"]  # same coordinate formula
    assert torch.equal(mask.as_subclass(torch.Tensor), full[top:, left:].as_subclass(torch.Tensor))
    return top, left


def test_random_crop_size_and_alignment():
    for seed in range(10):
        torch.manual_seed(seed)
        out = RandomCropCatMax((32, 48), cat_max_ratio=1.0)(make_sample(100, 120))
        assert tuple(out["image"].shape) == (3, 32, 48) and tuple(out["mask"].shape) == (32, 48)
        _crop_consistent(out)
    small = RandomCropCatMax((64, 64))(make_sample(20, 30))  # crop clipped to the image
    assert tuple(small["image"].shape) == (3, 20, 30) and tuple(small["mask"].shape) == (20, 30)


def _satisfies(mask: torch.Tensor, ratio: float = 0.75) -> bool:
    values, counts = torch.unique(mask, return_counts=True)
    counts = counts[values != 255]
    return counts.numel() > 1 and counts.max().item() / counts.sum().item() < ratio


def test_cat_max_ratio_prefers_balanced_crops():
    # class 1 in the first 16 of 64 columns: a 32×32 crop is acceptable only for left < 8 (about 1 in 4)
    sample = make_sample(64, 64)
    mask = torch.zeros(64, 64, dtype=torch.int64)
    mask[:, :16] = 1
    mask[:4] = 255  # ignored pixels are left out of the ratio
    sample["mask"] = tv_tensors.Mask(mask)
    n = 200
    with_rule = without_rule = 0
    for seed in range(n):
        torch.manual_seed(seed)
        with_rule += _satisfies(RandomCropCatMax(32, cat_max_ratio=0.75)(sample)["mask"])
        torch.manual_seed(seed)
        without_rule += _satisfies(RandomCropCatMax(32, cat_max_ratio=1.0)(sample)["mask"])
    assert without_rule / n < 0.4  # plain random crops rarely qualify
    assert with_rule / n > 0.85  # 1 - 0.76**10 ≈ 0.94 expected


def test_cat_max_ratio_single_class_keeps_fresh_crop_after_ten_rejections():
    sample = make_sample(64, 80)
    sample["mask"] = tv_tensors.Mask(torch.full((64, 80), 2, dtype=torch.int64))
    torch.manual_seed(5)
    boxes = [(int(torch.randint(0, 33, ()).item()), int(torch.randint(0, 49, ()).item())) for _ in range(11)]
    torch.manual_seed(5)
    out = RandomCropCatMax(32, cat_max_ratio=0.75)(sample)
    assert tuple(out["image"].shape) == (3, 32, 32)
    assert (int(out["image"][0, 0, 0]), int(out["image"][1, 0, 0])) == boxes[-1]
    all_ignored = dict(sample, mask=tv_tensors.Mask(torch.full((64, 80), 255)))
    assert tuple(RandomCropCatMax(32)(all_ignored)["mask"].shape) == (32, 32)


@pytest.mark.parametrize(("direction", "dims"), [("horizontal", [-1]), ("vertical", [-2]), ("diagonal", [-2, -1])])
def test_flip_is_joint(direction, dims):
    sample = make_sample(10, 14)
    out = RandomFlip(p=1.0, direction=direction)(sample)
    assert torch.equal(out["image"].as_subclass(torch.Tensor), sample["image"].flip(dims).as_subclass(torch.Tensor))
    assert torch.equal(out["mask"].as_subclass(torch.Tensor), sample["mask"].flip(dims).as_subclass(torch.Tensor))
    same = RandomFlip(p=0.0, direction=direction)(sample)
    assert torch.equal(same["image"], sample["image"]) and torch.equal(same["mask"], sample["mask"])
    with pytest.raises(ValueError, match="direction"):
        RandomFlip(direction="sideways")


def test_flip_probability():
    sample = make_sample(4, 6)
    flips = sum(not torch.equal(RandomFlip(0.5)(sample)["image"], sample["image"]) for _ in range(400))
    assert 150 < flips < 250


def _random_image(h=24, w=32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def test_photometric_uint8_mask_untouched_and_seeded():
    sample = {"image": tv_tensors.Image(_random_image()), "mask": tv_tensors.Mask(torch.randint(0, 5, (24, 32)))}
    pmd = PhotoMetricDistortion()
    outs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        outs.append([pmd(sample) for _ in range(5)])
    for out in outs[0]:
        assert out["image"].dtype == torch.uint8 and isinstance(out["image"], tv_tensors.Image)
        assert out["image"].shape == sample["image"].shape
        assert out["mask"] is sample["mask"]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(outs[0], outs[1], strict=True))
    assert not all(torch.equal(a["image"], b["image"]) for a, b in zip(outs[0], outs[2], strict=True))
    changed = sum(not torch.equal(o["image"], sample["image"]) for o in outs[0])
    assert changed >= 1


def _params(**kw) -> dict:
    return {"beta": None, "alpha": None, "sat": None, "hue": None, "contrast_first": True, **kw}


def test_photometric_steps_against_oracles():
    pmd = PhotoMetricDistortion()
    img = tv_tensors.Image(_random_image())
    bright = pmd.transform(img, _params(beta=40.7))
    assert torch.equal(bright.as_subclass(torch.Tensor), (img.float() + 40.7).clamp(0, 255).to(torch.uint8))
    contrast = pmd.transform(img, _params(alpha=1.37, contrast_first=False))
    assert torch.equal(contrast.as_subclass(torch.Tensor), (img.float() * 1.37).clamp(0, 255).to(torch.uint8))
    grey = pmd.transform(img, _params(sat=0.0))  # zero saturation → R = G = B
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    red = tv_tensors.Image(torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2).clone())
    cyan = pmd.transform(red, _params(hue=90))  # +90 on the 0..179 hue = +180°
    assert cyan[:, 0, 0].tolist() == [0, 255, 255]
    same = pmd.transform(img, _params())
    assert torch.equal(same, img)


def test_photometric_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        PhotoMetricDistortion()({"image": tv_tensors.Image(torch.rand(3, 4, 4))})


def test_normalize_and_pad():
    sample = make_sample(5, 7)
    out = Normalize()(sample)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert out["image"].dtype == torch.float32 and isinstance(out["image"], tv_tensors.Image)
    torch.testing.assert_close(out["image"].as_subclass(torch.Tensor), (sample["image"].float() - mean) / std)
    assert out["mask"] is sample["mask"]
    padded = PadTo((8, 10))(out)
    assert tuple(padded["image"].shape) == (3, 8, 10) and tuple(padded["mask"].shape) == (8, 10)
    assert torch.equal(padded["image"][:, :5, :7], out["image"])
    assert (padded["image"][:, 5:] == 0).all() and (padded["image"][:, :, 7:] == 0).all()
    assert torch.equal(padded["mask"][:5, :7], sample["mask"])
    assert (padded["mask"][5:] == 255).all() and (padded["mask"][:, 7:] == 255).all()
    assert padded["mask"].dtype == torch.int64 and isinstance(padded["mask"], tv_tensors.Mask)
    big = PadTo((3, 3), image_value=1.0, mask_value=9)(out)  # never crops
    assert tuple(big["image"].shape) == (3, 5, 7)


@pytest.mark.parametrize("hw", [(20, 30), (300, 200), (64, 64)])
def test_train_pipeline_shapes(hw):
    pipe = build_train_transform((64, 64))
    assert isinstance(pipe, v2.Compose)
    for _ in range(3):
        out = pipe(make_sample(*hw))
        assert tuple(out["image"].shape) == (3, 64, 64) and out["image"].dtype == torch.float32
        assert tuple(out["mask"].shape) == (64, 64) and out["mask"].dtype == torch.int64
        assert set(out["mask"].unique().tolist()) <= {0, 1, 2, 3, 255}


def test_test_pipeline():
    out = build_test_transform()(make_sample(50, 70))
    assert tuple(out["image"].shape) == (3, 50, 70) and out["image"].dtype == torch.float32
    val = build_test_transform(resize_to=(32, 32))(make_sample(50, 70))
    assert tuple(val["image"].shape) == (3, 32, 32) and tuple(val["mask"].shape) == (50, 70)
    unlabelled = build_test_transform()({"image": make_sample(8, 8)["image"], "mask_path": None})
    assert unlabelled["mask_path"] is None and "mask" not in unlabelled
