"""The official classification augmentation details that timm's defaults would get wrong."""

from __future__ import annotations

import torch

from mtp.data.transforms.classification import build_train_transform


def _random_erasing(transform):
    return next(t for t in transform.transforms if type(t).__name__ == "RandomErasing")


def test_random_erasing_fills_per_pixel_noise_as_the_official_config():
    """mmpretrain RandomErasing(mode='rand', fill_color=mean, fill_std=std) draws every erased pixel and channel
    from N(mean, std), i.e. N(0, 1) after normalisation: timm's re_mode='pixel'. timm's 'rand' would fill the whole
    box with one random colour per channel."""
    erasing = _random_erasing(build_train_transform(64))
    assert erasing.probability == 0.25 and erasing.per_pixel and not erasing.rand_color
    erasing.probability = 1.0
    torch.manual_seed(0)
    out = erasing(torch.zeros(3, 64, 64))
    changed = out != 0
    assert changed.any()
    box = out[:, changed.any(0)]  # (3, pixels in the erased box)
    assert box.shape[1] >= 0.02 * 64 * 64 * 0.9
    assert (box.std(dim=1) > 0.5).all() and box.mean().abs() < 0.3  # per-pixel N(0, 1), not one colour per channel
    assert not _random_erasing(build_train_transform(64, re_mode="rand")).per_pixel
