"""mmdet-semantics anchors, MaxIoU assignment and random sampling (docs/RECIPES.md#oriented-r-cnn-model)."""

from __future__ import annotations

import math

import torch

from mtp.models.detectors.anchors import AnchorGenerator, inside_image
from mtp.models.detectors.sampling import max_iou_assign, random_sample


def test_base_anchor_sizes_and_order():
    gen = AnchorGenerator()
    base = gen.base_anchors(0)  # stride 4, scale 8 -> 32 px at ratio 1
    w, h = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    torch.testing.assert_close(w, torch.tensor([32 * math.sqrt(2), 32.0, 32 / math.sqrt(2)]))
    torch.testing.assert_close(h, torch.tensor([32 / math.sqrt(2), 32.0, 32 * math.sqrt(2)]))
    torch.testing.assert_close(base[:, :2] + base[:, 2:], torch.zeros(3, 2))  # centred on the cell origin
    sizes = [float(gen.base_anchors(level)[1, 2] - gen.base_anchors(level)[1, 0]) for level in range(5)]
    assert sizes == [32.0, 64.0, 128.0, 256.0, 512.0]


def test_grid_order_is_location_major_x_fastest_without_half_stride():
    gen = AnchorGenerator()
    anchors = gen.grid_anchors([(2, 3)], torch.device("cpu"))[0].reshape(2, 3, 3, 4)
    centres = (anchors[..., :2] + anchors[..., 2:]) / 2
    assert torch.equal(centres[0, 1, 0], torch.tensor([4.0, 0.0]))  # x fastest, stride 4, no offset
    assert torch.equal(centres[1, 0, 2], torch.tensor([0.0, 4.0]))


def test_valid_flags_and_inside_image():
    gen = AnchorGenerator(strides=(8,))
    flags = gen.valid_flags([(4, 4)], img_hw=(17, 9), device=torch.device("cpu"))[0].reshape(4, 4, 3)
    assert flags[:3, :2].all() and not flags[3].any() and not flags[:, 2:].any()  # ceil(17/8)=3, ceil(9/8)=2
    boxes = torch.tensor([[0.0, 0, 10, 10], [-1, 0, 5, 5], [0, 0, 20, 5], [0, 0, 19.9, 9.9]])
    assert inside_image(boxes, (10, 20)).tolist() == [False, False, False, True]


def test_max_iou_assign_rules():
    overlaps = torch.tensor(
        [
            [0.75, 0.2, 0.5, 0.0, 0.35],
            [0.1, 0.25, 0.6, 0.0, 0.35],
        ]
    )
    codes = max_iou_assign(overlaps, pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True)
    # prior 0 positive (gt 1); 1 negative; 2: gt 2's best IoU -> low-quality match; 3 negative;
    # 4: 0.35 in [0.3, 0.7) -> ignored.
    assert codes.tolist() == [1, 0, 2, 0, -1]
    strict = max_iou_assign(overlaps, pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5, match_low_quality=False)
    assert strict.tolist() == [1, 0, 2, 0, 0]
    tie = torch.tensor([[0.4, 0.4, 0.1]])
    assert max_iou_assign(tie, pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True).tolist() == [
        1,
        1,
        0,
    ]
    assert max_iou_assign(
        torch.zeros(0, 4), pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True
    ).tolist() == [0, 0, 0, 0]


def test_later_ground_truth_overrides_low_quality_claims():
    overlaps = torch.tensor([[0.5, 0.1], [0.5, 0.2]])
    codes = max_iou_assign(overlaps, pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True)
    assert codes.tolist() == [2, 0]


def test_random_sample_counts():
    assigned = torch.tensor([1] * 300 + [0] * 1000 + [-1] * 50)
    pos, neg = random_sample(assigned, num=256, pos_fraction=0.5)
    assert len(pos) == 128 and len(neg) == 128 and (assigned[pos] > 0).all() and (assigned[neg] == 0).all()
    pos, neg = random_sample(torch.tensor([1] * 10 + [0] * 1000), num=256, pos_fraction=0.5)
    assert len(pos) == 10 and len(neg) == 246
    assert len(set(neg.tolist())) == 246
