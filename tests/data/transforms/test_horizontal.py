"""Horizontal-detection transforms: mmdet keep-ratio resize sizes and scale factors, box clamping, a drawn rectangle
staying consistent with its box and mask through resize / flip, padding, the train / test pipelines."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from mtp.data.transforms.horizontal import (
    Normalize,
    PadToMultiple,
    RandomFlip,
    ResizeKeepRatio,
    build_detection_test_transform,
    build_detection_train_transform,
)


def rectangle_sample(h: int, w: int, box: tuple[int, int, int, int]) -> dict:
    """A black image with a white filled rectangle covering pixels [x1, x2) × [y1, y2), its box and mask."""
    x1, y1, x2, y2 = box
    image = torch.zeros((3, h, w), dtype=torch.uint8)
    image[:, y1:y2, x1:x2] = 255
    mask = torch.zeros((1, h, w), dtype=torch.uint8)
    mask[0, y1:y2, x1:x2] = 1
    return {
        "image": tv_tensors.Image(image),
        "boxes": tv_tensors.BoundingBoxes(torch.tensor([box], dtype=torch.float32), format="XYXY", canvas_size=(h, w)),
        "labels": torch.tensor([3]),
        "masks": tv_tensors.Mask(mask),
        "image_id": "x",
        "ori_hw": (h, w),
    }


def bright_box(image: torch.Tensor) -> list[float]:
    """Pixel-edge box [x1, y1, x2, y2] of the pixels brighter than mid-grey."""
    ys, xs = torch.nonzero(image.as_subclass(torch.Tensor)[0] > 127, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@pytest.mark.parametrize(
    ("hw", "size", "new_hw"),
    [((100, 200), 800, (400, 800)), ((300, 500), 416, (250, 416)), ((800, 800), 800, (800, 800)),
     ((333, 1000), 800, (266, 800)), ((1000, 333), 800, (800, 266)), ((10, 30), 416, (139, 416))],
)  # fmt: skip
def test_resize_keep_ratio_sizes_and_scale_factor(hw, size, new_hw):
    out = ResizeKeepRatio(size)(rectangle_sample(*hw, (2, 2, 8, 8)))
    assert tuple(out["image"].shape[-2:]) == new_hw and out["img_hw"] == new_hw
    # factor S / long side (square scale), new size int(x·f + 0.5), scale_factor after that rounding
    f = size / max(hw)
    assert new_hw == (int(hw[0] * f + 0.5), int(hw[1] * f + 0.5))
    assert out["scale_factor"] == pytest.approx((new_hw[1] / hw[1], new_hw[0] / hw[0]))
    assert tuple(out["masks"].shape) == (1, *new_hw) and out["masks"].dtype == torch.uint8
    assert tuple(out["boxes"].canvas_size) == new_hw


def test_resize_scales_and_clamps_boxes():
    sample = rectangle_sample(100, 200, (20, 10, 60, 50))
    sample["boxes"] = tv_tensors.BoundingBoxes(
        torch.tensor([[20.0, 10, 60, 50], [-10, 90, 210, 120]]), format="XYXY", canvas_size=(100, 200)
    )
    out = ResizeKeepRatio(400)(sample)
    expected = torch.tensor([[40.0, 20, 120, 100], [0, 180, 400, 200]])
    torch.testing.assert_close(out["boxes"].as_subclass(torch.Tensor), expected)
    assert out["boxes"].dtype == torch.float32


def test_rectangle_box_and_mask_stay_consistent_through_resize_and_flip():
    sample = rectangle_sample(60, 90, (12, 6, 42, 30))
    out = RandomFlip(p=1.0)(ResizeKeepRatio(180)(sample))  # ×2
    assert out["flip"] is True and out["scale_factor"] == (2.0, 2.0)
    box = out["boxes"].as_subclass(torch.Tensor)[0].tolist()
    assert box == [180 - 84, 12, 180 - 24, 60]  # [W − x2, y1, W − x1, y2]
    assert bright_box(out["image"]) == box
    assert bright_box(out["masks"].as_subclass(torch.Tensor) * 255) == box
    assert int(out["masks"].sum()) == 60 * 48 and out["labels"].tolist() == [3]


def test_flip_probability_zero_and_empty_targets():
    sample = rectangle_sample(32, 48, (1, 2, 5, 7))
    out = RandomFlip(p=0.0)(dict(sample))
    assert out["flip"] is False and torch.equal(out["image"], sample["image"])
    empty = rectangle_sample(30, 40, (1, 1, 2, 2))
    empty["boxes"] = tv_tensors.BoundingBoxes(torch.zeros((0, 4)), format="XYXY", canvas_size=(30, 40))
    empty["masks"] = tv_tensors.Mask(torch.zeros((0, 30, 40), dtype=torch.uint8))
    empty["labels"] = torch.zeros(0, dtype=torch.int64)
    out = build_detection_train_transform(64)(empty)
    assert out["boxes"].shape == (0, 4) and tuple(out["masks"].shape) == (0, 64, 64)
    assert tuple(out["image"].shape) == (3, 64, 64) and out["img_hw"] == (48, 64)


def test_pad_to_multiple_pads_image_and_masks_with_zero():
    sample = Normalize()(ResizeKeepRatio(416)(rectangle_sample(300, 500, (0, 0, 500, 300))))
    out = PadToMultiple(32)(sample)
    assert tuple(out["image"].shape) == (3, 256, 416) and out["img_hw"] == (250, 416) and out["pad_hw"] == (256, 416)
    assert torch.all(out["image"][:, 250:] == 0) and torch.all(out["masks"][:, 250:] == 0)
    assert tuple(out["masks"].shape) == (1, 256, 416) and torch.all(out["masks"][:, :250] == 1)
    assert tuple(out["boxes"].canvas_size) == (256, 416)


def test_train_pipeline_output():
    torch.manual_seed(0)
    out = build_detection_train_transform(100)(rectangle_sample(50, 70, (10, 10, 30, 20)))
    assert out["image"].dtype == torch.float32 and tuple(out["image"].shape) == (3, 96, 128)
    assert out["img_hw"] == (71, 100) and tuple(out["masks"].shape) == (1, 96, 128)
    box = out["boxes"].as_subclass(torch.Tensor)[0]
    sx, sy = out["scale_factor"]
    x1, x2 = (10 * sx, 30 * sx) if not out["flip"] else (100 - 30 * sx, 100 - 10 * sx)
    torch.testing.assert_close(box, torch.tensor([x1, 10 * sy, x2, 20 * sy]))


def test_test_pipeline_keeps_ground_truth_in_original_pixels():
    sample = rectangle_sample(50, 70, (10, 10, 30, 20))
    out = build_detection_test_transform(100)(sample)
    assert tuple(out["image"].shape) == (3, 96, 128) and out["img_hw"] == (71, 100)
    assert out["boxes"].as_subclass(torch.Tensor).tolist() == [[10, 10, 30, 20]]
    assert tuple(out["boxes"].canvas_size) == (50, 70) and tuple(out["masks"].shape) == (1, 50, 70)
    out = build_detection_test_transform(100, rescale_boxes=True)(rectangle_sample(50, 70, (10, 10, 30, 20)))
    assert tuple(out["masks"].shape) == (1, 96, 128)
