"""Oracle tests for mtp.ops.rotated.iou: shapely polygon IoU and a table of known values (mmcv
``box_iou_rotated`` semantics, docs/CONVENTIONS.md#rotated-iou-nms-and-roialign)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
import torch

from mtp.ops.rotated.boxes import rbox2corners
from mtp.ops.rotated.iou import intersection_areas, rbox_overlaps_for_assigner, rotated_iou

F64 = torch.float64
PI = math.pi


def random_pairs(n: int, seed: int, dtype=F64) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlap-rich random pairs: a third independent, a third perturbed copies, a third thin / nested."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=F64)

    a = torch.cat((rand(n, 2) * 40, rand(n, 2) * 30 + 0.5, (rand(n, 1) - 0.5) * 4 * PI), 1)
    b = torch.cat((rand(n, 2) * 40, rand(n, 2) * 30 + 0.5, (rand(n, 1) - 0.5) * 4 * PI), 1)
    k = n // 3
    b[k : 2 * k] = a[k : 2 * k] + (rand(k, 5) - 0.5) * torch.tensor([2.0, 2.0, 2.0, 2.0, 0.2], dtype=F64)
    b[k : 2 * k, 2:4] = b[k : 2 * k, 2:4].abs() + 0.1
    thin = b[2 * k :].clone()
    thin[:, :2] = a[2 * k :, :2] + (rand(n - 2 * k, 2) - 0.5) * 10
    thin[:, 3] = rand(n - 2 * k) * 0.5 + 0.01
    b[2 * k :] = thin
    return a.to(dtype), b.to(dtype)


def shapely_iou(a: torch.Tensor, b: torch.Tensor, mode: str = "iou") -> np.ndarray:
    pa = shapely.polygons(rbox2corners(a.to(F64)).numpy())
    pb = shapely.polygons(rbox2corners(b.to(F64)).numpy())
    inter = shapely.area(shapely.intersection(pa, pb))
    denom = shapely.area(pa) if mode == "iof" else shapely.area(pa) + shapely.area(pb) - inter
    return inter / denom


@pytest.mark.parametrize("mode", ["iou", "iof"])
def test_matches_shapely_float64(mode: str) -> None:
    a, b = random_pairs(12000, seed=0)
    ref = shapely_iou(a, b, mode)
    assert (ref > 0).mean() > 0.5
    ours = rotated_iou(a, b, mode=mode, aligned=True)
    assert ours.dtype == F64
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-6)
    # the dense (no circle prefilter) path gives the same values
    dense = rotated_iou(a[:3000], b[:3000], mode=mode, aligned=True, skip_disjoint=False)
    torch.testing.assert_close(dense, ours[:3000], rtol=0, atol=1e-12)


def test_matches_shapely_float32() -> None:
    a, b = random_pairs(12000, seed=1)
    ref = shapely_iou(a, b)
    ours = rotated_iou(a.float(), b.float(), aligned=True)
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-4)


def test_large_coordinates_are_recentred() -> None:
    a, b = random_pairs(300, seed=2)
    offset = torch.tensor([1e6, -3e6, 0, 0, 0], dtype=F64)
    torch.testing.assert_close(
        rotated_iou(a + offset, b + offset, aligned=True), rotated_iou(a, b, aligned=True), rtol=0, atol=1e-7
    )


TABLE = [
    ("identical", (0, 0, 40, 10, 0.3), (0, 0, 40, 10, 0.3), 1.0),
    ("swapped w/h + pi/2", (50, 50, 40, 10, 0.3), (50, 50, 10, 40, 0.3 + PI / 2), 1.0),
    ("theta + pi", (50, 50, 40, 10, 0.3), (50, 50, 40, 10, 0.3 + PI), 1.0),
    ("edge-touching squares", (0, 0, 10, 10, 0), (10, 0, 10, 10, 0), 0.0),
    ("contained", (0, 0, 5, 5, 1.0), (0, 0, 20, 20, 0.2), 0.0625),
    ("nearly parallel", (0, 0, 100, 2, 0), (0, 0.5, 100, 2, 1e-7), 0.6),
    ("cross", (0, 0, 100, 4, 0), (0, 0, 100, 4, PI / 2), 16 / 784),
    ("h = 0", (0, 0, 10, 0, 0), (0, 0, 10, 10, 0), 0.0),
    ("both degenerate", (0, 0, 0, 0, 0), (0, 0, 0, 0, 0), 0.0),
]


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize(("name", "box1", "box2", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_reference_table(name: str, box1: tuple, box2: tuple, expected: float, dtype: torch.dtype) -> None:
    b1, b2 = torch.tensor([box1], dtype=dtype), torch.tensor([box2], dtype=dtype)
    tol = 1e-9 if dtype == F64 else 2e-5
    for skip in (True, False):
        iou = rotated_iou(b1, b2, skip_disjoint=skip)
        assert iou.shape == (1, 1)
        assert not torch.isnan(iou).any()
        assert iou.item() == pytest.approx(expected, abs=tol)
        assert rotated_iou(b2, b1, skip_disjoint=skip).item() == pytest.approx(expected, abs=tol)


def test_iof_mode() -> None:
    small = torch.tensor([[0, 0, 5, 5, 1.0]], dtype=F64)
    big = torch.tensor([[0, 0, 20, 20, 0.2]], dtype=F64)
    assert rotated_iou(small, big, mode="iof").item() == pytest.approx(1.0, abs=1e-12)
    assert rotated_iou(big, small, mode="iof").item() == pytest.approx(25 / 400, abs=1e-12)
    assert rotated_iou(torch.tensor([[0, 0, 10, 0, 0.0]]), big.float(), mode="iof").item() == 0.0
    with pytest.raises(ValueError):
        rotated_iou(small, big, mode="giou")


def test_pairwise_equals_aligned_and_chunking_is_exact() -> None:
    a, b = random_pairs(90, seed=3)
    b = b[:70]
    full = rotated_iou(a, b)
    assert full.shape == (90, 70)
    ii, jj = (x.flatten() for x in torch.meshgrid(torch.arange(90), torch.arange(70), indexing="ij"))
    torch.testing.assert_close(full, rotated_iou(a[ii], b[jj], aligned=True).view(90, 70), rtol=0, atol=1e-12)
    np.testing.assert_allclose(full.numpy(), shapely_iou(a[ii], b[jj]).reshape(90, 70), atol=1e-6)
    for skip in (True, False):
        for chunk in (5, 64, 10**7):
            assert torch.equal(rotated_iou(a, b, chunk_size=chunk, skip_disjoint=skip), full)
        assert torch.equal(rotated_iou(a[:70], b, aligned=True, chunk_size=11, skip_disjoint=skip), full.diagonal())


def test_empty_and_dtype_handling() -> None:
    boxes = torch.tensor([[0, 0, 4, 2, 0.1], [1, 1, 3, 3, 0.0]])
    assert rotated_iou(torch.zeros(0, 5), boxes).shape == (0, 2)
    assert rotated_iou(boxes, torch.zeros(0, 5)).shape == (2, 0)
    assert rotated_iou(torch.zeros(0, 5), torch.zeros(0, 5), aligned=True).shape == (0,)
    assert rotated_iou(boxes.to(torch.int64), boxes.to(torch.int64)).dtype == torch.float32
    assert rotated_iou(boxes, boxes.double()).dtype == F64
    with pytest.raises(ValueError):
        rotated_iou(boxes, boxes[:1], aligned=True)
    with pytest.raises(ValueError):
        rotated_iou(boxes[:, :4], boxes)


def test_intersection_areas_broadcast() -> None:
    a, b = random_pairs(20, seed=4)
    inter = intersection_areas(a[:, None], b[None])
    assert inter.shape == (20, 20)
    pa = shapely.polygons(rbox2corners(a).numpy())[:, None]
    pb = shapely.polygons(rbox2corners(b).numpy())[None]
    np.testing.assert_allclose(inter.numpy(), shapely.area(shapely.intersection(pa, pb)), atol=1e-9)


def test_assigner_wrapper_clamps() -> None:
    gt = torch.tensor([[0, 0, 10, 0, 0.0], [0, 0, 10, 4, 0.0]])  # a zero-height GT becomes 10 x 1e-3
    anchors = torch.tensor([[0, 0, 10, 4, 0.0], [2e7, 0, 10, 4, 0.0]])
    plain = rotated_iou(gt, anchors)
    clamped = rbox_overlaps_for_assigner(gt, anchors)
    assert plain[0, 0].item() == 0.0
    assert clamped[0, 0].item() == pytest.approx(10 * 1e-3 / 40, rel=1e-3)
    assert clamped[1, 0].item() == pytest.approx(1.0)
    assert clamped[:, 1].eq(0).all()  # the anchor centre is clamped to 1e7: still far away
    torch.testing.assert_close(rbox_overlaps_for_assigner(gt, anchors[:2], aligned=True), clamped.diagonal())
    assert gt[0, 3].item() == 0.0  # inputs untouched


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    a, b = random_pairs(3000, seed=5)
    for dtype, tol in ((F64, 1e-12), (torch.float32, 1e-4)):
        cpu = rotated_iou(a.to(dtype), b.to(dtype))
        for skip in (False, True):
            cuda = rotated_iou(a.to(dtype).cuda(), b.to(dtype).cuda(), skip_disjoint=skip)
            assert cuda.device.type == "cuda"
            torch.testing.assert_close(cuda.cpu(), cpu, rtol=0, atol=tol)
        aligned = rotated_iou(a.to(dtype).cuda(), b.to(dtype).cuda(), aligned=True)
        torch.testing.assert_close(aligned.cpu(), cpu.diagonal(), rtol=0, atol=tol)
