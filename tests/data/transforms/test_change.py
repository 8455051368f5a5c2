"""Joint change-detection transforms: A, B and the label stay aligned under every geometric step; time
exchange swaps the dates; photometric distortion is drawn per image; the official pipelines' outputs."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from mtp.data.datamodules.change import ChangeDetectionDataModule
from mtp.data.datasets.change_detection import LEVIRCD
from mtp.data.synthetic import write_levir_cd
from mtp.data.transforms.change import (
    ExchangeTime,
    PerImage,
    RandomRotFlip,
    build_change_eval_transform,
    build_change_train_transform,
    split_pair,
)
from mtp.data.transforms.photometric import PhotoMetricDistortion
from mtp.data.transforms.segmentation import IMAGENET_MEAN, IMAGENET_STD


def _aligned_sample(h: int = 32, w: int = 48) -> dict:
    """A = a label-shaped pattern in every channel, B = 255 - A: alignment is checkable pixel by pixel."""
    g = torch.Generator().manual_seed(0)
    blocks = (torch.rand(h // 8, w // 8, generator=g) > 0.6).long()
    blocks[0, 0] = 1
    label = blocks.repeat_interleave(8, 0).repeat_interleave(8, 1)  # 8x8 blocks: few edge pixels
    a = (label * 200 + 20).to(torch.uint8).expand(3, h, w).clone()
    return {
        "image_a": tv_tensors.Image(a),
        "image_b": tv_tensors.Image(255 - a),
        "mask": tv_tensors.Mask(label),
        "image_path": "a.png",
        "image_b_path": "b.png",
    }


def _check_aligned(out: dict, rotated: bool) -> None:
    a, b, mask = out["image_a"].long(), out["image_b"].long(), out["mask"]
    assert a.shape[-2:] == b.shape[-2:] == mask.shape
    assert torch.equal(a + b, torch.full_like(a, 255)) or rotated  # bilinear edges aside
    changed = mask == 1
    inner = torch.zeros_like(changed)
    inner[3:-3, 3:-3] = True  # away from rotated corners
    # where the label says changed, A is bright (220) and B dark (35), and vice versa: same geometry
    if rotated:
        assert (a[0][changed & inner] > 120).float().mean() > 0.9
        assert (a[0][~changed & inner & (a[0] > 0)] < 120).float().mean() > 0.9
    else:
        assert torch.equal(a[0] == 220, changed) and torch.equal(b[0] == 35, changed)


@pytest.mark.parametrize("seed", range(12))
def test_rot_flip_keeps_a_b_and_label_aligned(seed):
    torch.manual_seed(seed)
    t = RandomRotFlip(rotate_prob=0.5, flip_prob=1.0)
    params = t.make_params([])
    torch.manual_seed(seed)
    out = t(_aligned_sample())
    _check_aligned(out, rotated=params["angle"] is not None)
    if params["angle"] is None and params["k"] % 2 == 1:
        assert out["mask"].shape == (48, 32)  # quarter turn of a non-square pair
    assert isinstance(out["mask"], tv_tensors.Mask) and isinstance(out["image_b"], tv_tensors.Image)


def test_rotation_uses_nearest_for_labels_and_black_unchanged_corners():
    torch.manual_seed(0)
    t = RandomRotFlip(rotate_prob=1.0, degree=(20.0, 20.0))
    out = t(_aligned_sample(40, 40))
    assert set(out["mask"].unique().tolist()) <= {0, 1}
    assert out["mask"][0, -1] == 0 and out["image_a"][:, 0, -1].tolist() == [0, 0, 0]


def test_exchange_time_swaps_images_and_paths_only():
    sample = _aligned_sample()
    swapped = ExchangeTime(p=1.0)(sample)
    assert torch.equal(swapped["image_a"], sample["image_b"]) and torch.equal(swapped["image_b"], sample["image_a"])
    assert swapped["image_path"] == "b.png" and torch.equal(swapped["mask"], sample["mask"])
    assert ExchangeTime(p=0.0)(sample)["image_a"] is sample["image_a"]


def test_photometric_distortion_is_drawn_per_image():
    torch.manual_seed(1)
    grey = torch.full((3, 16, 16), 100, dtype=torch.uint8)
    t = PerImage(PhotoMetricDistortion(10, (0.8, 1.2), (0.8, 1.2), 10))
    differs = 0
    for _ in range(20):
        out = t({"image_a": tv_tensors.Image(grey.clone()), "image_b": tv_tensors.Image(grey.clone()), "x": 1})
        differs += int(not torch.equal(out["image_a"], out["image_b"]))
        assert out["x"] == 1
    assert differs >= 10  # independent draws; identical copies only when both draw the same (rare)


def test_train_pipeline_output_and_alignment_end_to_end():
    torch.manual_seed(3)
    tf = build_change_train_transform((24, 24), photometric=False, rotate_prob=0.0, flip_prob=1.0)
    for _ in range(8):
        out = tf(_aligned_sample())
        assert out["image"].shape == (6, 24, 24) and out["image"].dtype == torch.float32
        assert out["mask"].shape == (24, 24)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        a, b = (x * std + mean for x in split_pair(out["image"]))
        changed = out["mask"] == 1
        bright_a = a[0].round() == 220
        # after a possible time exchange, the changed pixels are bright in exactly one of the dates
        assert torch.equal(bright_a, changed) or torch.equal(b[0].round() == 220, changed)


def test_eval_pipeline_resizes_images_only():
    out = build_change_eval_transform(resize_to=(64, 64))(_aligned_sample(32, 48))
    assert out["image"].shape == (6, 43, 64) and out["mask"].shape == (32, 48)  # mmcv keep-ratio rule


def test_datamodule_batches_stacked_pairs(tmp_path):
    write_levir_cd(tmp_path, n_train=3, n_val=0, n_test=2, size=64, seed=2)
    dm = ChangeDetectionDataModule(
        train=LEVIRCD(tmp_path, "train"),
        test=LEVIRCD(tmp_path, "test"),
        crop_size=(32, 32),
        batch_size=2,
        num_workers=0,
        train_resize=None,
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 6, 32, 32) and batch["mask"].shape == (2, 32, 32)
    test = next(iter(dm.test_dataloader()))
    assert test["image"].shape == (1, 6, 64, 64) and test["mask"].dtype == torch.int64
    again = next(iter(dm.train_dataloader()))
    assert torch.equal(again["image"], batch["image"])  # seeded: reproducible augmentation
