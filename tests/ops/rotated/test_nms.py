"""Oracle tests for mtp.ops.rotated.nms against a plain greedy loop
(docs/CONVENTIONS.md#rotated-iou-nms-and-roialign)."""

from __future__ import annotations

import math

import pytest
import torch

from mtp.ops.rotated.iou import rotated_iou
from mtp.ops.rotated.nms import batched_rotated_nms, rotated_nms

F64 = torch.float64


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> torch.Tensor:
    """The textbook greedy loop (CUDA semantics: suppress when IoU > thr)."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    iou = rotated_iou(boxes, boxes)
    keep: list[int] = []
    for i in order:
        if all(iou[k, i] <= thr for k in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


def random_scene(n: int, seed: int, extent: float = 120.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(n, 2, generator=g, dtype=F64) * extent
    wh = torch.rand(n, 2, generator=g, dtype=F64) * 30 + 3
    t = (torch.rand(n, 1, generator=g, dtype=F64) - 0.5) * 2 * math.pi
    return torch.cat((c, wh, t), 1), torch.rand(n, generator=g, dtype=F64)


@pytest.mark.parametrize("thr", [0.1, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_greedy_loop(seed: int, thr: float) -> None:
    boxes, scores = random_scene(250, seed)
    iou = rotated_iou(boxes, boxes)
    while ((iou - thr).abs() < 1e-4).any():  # keep clear of the threshold (float32 IoUs are ~1e-6 off)
        thr += 1e-4
    keep = rotated_nms(boxes, scores, thr)
    assert keep.dtype == torch.long
    torch.testing.assert_close(keep, reference_nms(boxes, scores, thr), rtol=0, atol=0)
    assert (scores[keep].diff() <= 0).all()
    keep32 = rotated_nms(boxes.float(), scores.float(), thr)
    torch.testing.assert_close(keep32, keep, rtol=0, atol=0)


def test_long_suppression_chain() -> None:
    """A row of boxes, each overlapping its neighbours: the fixed point needs many steps."""
    n = 60
    boxes = torch.stack(
        [torch.tensor([i * 6.0, 0.0, 10.0, 4.0, 0.0]) for i in range(n)]
    )  # neighbours IoU 4/16 = 0.25, next-but-one 0
    scores = torch.linspace(1.0, 0.1, n)
    keep = rotated_nms(boxes, scores, 0.2)
    torch.testing.assert_close(keep, torch.arange(0, n, 2))
    torch.testing.assert_close(keep, reference_nms(boxes, scores, 0.2))


def test_identical_boxes_collapse_and_strict_threshold() -> None:
    box = torch.tensor([50.0, 40.0, 30.0, 10.0, 0.4])
    boxes = box.repeat(5, 1)
    keep = rotated_nms(boxes, torch.tensor([0.1, 0.9, 0.3, 0.5, 0.2]), 0.5)
    torch.testing.assert_close(keep, torch.tensor([1]))
    assert rotated_nms(boxes, torch.ones(5), 0.5).numel() == 1  # equal scores: one survivor, any of them
    assert rotated_nms(boxes, torch.ones(5), 1.0).numel() == 5  # IoU 1 is not > 1
    # IoU exactly 0.5 (a 2 x 1 box inside a 4 x 1 box): kept at thr 0.5 (strict >), suppressed below
    pair = torch.tensor([[0.0, 0.0, 4.0, 1.0, 0.0], [0.0, 0.0, 2.0, 1.0, 0.0]], dtype=F64)
    assert rotated_iou(pair[:1], pair[1:]).item() == 0.5
    torch.testing.assert_close(rotated_nms(pair, torch.tensor([0.9, 0.8]), 0.5), torch.tensor([0, 1]))
    torch.testing.assert_close(rotated_nms(pair, torch.tensor([0.9, 0.8]), 0.4999), torch.tensor([0]))


def test_disjoint_boxes_all_survive_in_score_order() -> None:
    xs, ys = torch.meshgrid(torch.arange(8) * 50.0, torch.arange(6) * 50.0, indexing="ij")
    n = xs.numel()
    boxes = torch.stack((xs.flatten(), ys.flatten(), torch.full((n,), 40.0), torch.full((n,), 20.0), torch.rand(n)), 1)
    scores = torch.rand(n)
    keep = rotated_nms(boxes, scores, 0.1)
    torch.testing.assert_close(keep, torch.sort(scores, descending=True).indices)


def test_degenerate_boxes_survive_and_do_not_suppress() -> None:
    boxes = torch.tensor(
        [
            [10.0, 10.0, 20.0, 0.0, 0.3],  # h = 0, highest score
            [10.0, 10.0, 20.0, 8.0, 0.3],
            [10.0, 10.0, 20.0, 8.0, 0.3],
            [10.0, 10.0, 0.0, 0.0, 0.0],  # point
        ]
    )
    keep = rotated_nms(boxes, torch.tensor([0.9, 0.8, 0.7, 0.6]), 0.5)
    torch.testing.assert_close(keep, torch.tensor([0, 1, 3]))


def test_batched_equals_per_class() -> None:
    boxes, scores = random_scene(300, seed=7, extent=80.0)
    labels = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(8))
    keep = batched_rotated_nms(boxes, scores, labels, 0.3)
    per_class = torch.cat(
        [
            torch.nonzero(labels == k).squeeze(1)[rotated_nms(boxes[labels == k], scores[labels == k], 0.3)]
            for k in range(4)
        ]
    )
    expected = per_class[torch.sort(scores[per_class], descending=True, stable=True).indices]
    torch.testing.assert_close(keep, expected)
    # identical boxes with different labels both survive
    twins = torch.tensor([[5.0, 5.0, 10.0, 4.0, 0.1]]).repeat(2, 1)
    torch.testing.assert_close(
        batched_rotated_nms(twins, torch.tensor([0.4, 0.6]), torch.tensor([0, 1]), 0.1), torch.tensor([1, 0])
    )
    torch.testing.assert_close(
        batched_rotated_nms(twins, torch.tensor([0.4, 0.6]), torch.tensor([2, 2]), 0.1), torch.tensor([1])
    )


def test_empty_and_validation() -> None:
    keep = rotated_nms(torch.zeros(0, 5), torch.zeros(0), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.long
    assert batched_rotated_nms(torch.zeros(0, 5), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).shape == (0,)
    with pytest.raises(ValueError):
        rotated_nms(torch.zeros(3, 4), torch.zeros(3), 0.5)
    with pytest.raises(ValueError):
        rotated_nms(torch.zeros(3, 5), torch.zeros(2), 0.5)
    with pytest.raises(ValueError):
        rotated_nms(torch.zeros(3, 5), torch.zeros(3), -0.1)
    with pytest.raises(ValueError):
        batched_rotated_nms(torch.zeros(3, 5), torch.zeros(3), torch.zeros(2), 0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    boxes, scores = random_scene(2000, seed=9, extent=400.0)
    labels = torch.randint(0, 5, (2000,), generator=torch.Generator().manual_seed(10))
    for thr in (0.1, 0.5):
        cpu = rotated_nms(boxes, scores, thr)
        cuda = rotated_nms(boxes.cuda(), scores.cuda(), thr)
        assert cuda.device.type == "cuda"
        torch.testing.assert_close(cuda.cpu(), cpu)
        torch.testing.assert_close(
            batched_rotated_nms(boxes.cuda(), scores.cuda(), labels.cuda(), thr).cpu(),
            batched_rotated_nms(boxes, scores, labels, thr),
        )
