"""Oracle tests for mtp.ops.rotated.boxes (docs/CONVENTIONS.md#rotated-boxes)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import shapely
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torchvision.transforms.v2.functional import convert_bounding_box_format
from torchvision.tv_tensors import BoundingBoxFormat

from mtp.ops.rotated.boxes import (
    flip_rboxes,
    hbox2rbox,
    norm_angle,
    poly2rbox,
    rbox2corners,
    rbox2hbox,
    rbox2poly,
    rbox2tv_cxcywhr,
    rbox_areas,
    regularize_rboxes,
    rescale_rboxes,
    translate_rboxes,
    tv_cxcywhr2rbox,
)

F64 = torch.float64
PI = math.pi
RANGES = {"le90": (-PI / 2, PI / 2), "le135": (-PI / 4, 3 * PI / 4), "oc": (-PI / 2, 0.0)}


def random_rboxes(n: int, gen: torch.Generator, dtype=F64, min_ratio: float = 1.0) -> torch.Tensor:
    """Random rboxes: centres in [0, 500), sides in [2, 200), w / h >= min_ratio or h / w >= min_ratio, any angle."""
    c = torch.rand(n, 2, generator=gen, dtype=dtype) * 500
    short = torch.rand(n, generator=gen, dtype=dtype) * 100 + 2
    long = short * (min_ratio + torch.rand(n, generator=gen, dtype=dtype) * 2)
    flip = torch.rand(n, generator=gen) < 0.5
    w, h = torch.where(flip, short, long), torch.where(flip, long, short)
    t = (torch.rand(n, generator=gen, dtype=dtype) - 0.5) * 6 * PI
    return torch.cat((c, w[:, None], h[:, None], t[:, None]), dim=1)


def assert_same_corner_set(c1: torch.Tensor, c2: torch.Tensor, atol: float) -> None:
    """(..., 4, 2) corner tensors describe the same point sets (any order)."""
    d = torch.cdist(c1.reshape(-1, 4, 2).to(F64), c2.reshape(-1, 4, 2).to(F64))
    assert d.amin(-1).max().item() <= atol
    assert d.amin(-2).max().item() <= atol


def angle_diff_mod(a: torch.Tensor, b: torch.Tensor, period: float = PI) -> torch.Tensor:
    return torch.remainder(a - b + period / 2, period) - period / 2


box_strategy = st.tuples(
    st.floats(-1e4, 1e4),
    st.floats(-1e4, 1e4),
    st.floats(0.01, 1e3),
    st.floats(0.01, 1e3),
    st.floats(-20.0, 20.0),
)

# ------------------------------------------------------------------ regularisation


@settings(max_examples=150, deadline=None)
@given(box=box_strategy, pattern=st.sampled_from(["le90", "le135", "oc"]))
def test_regularize_ranges_and_corner_set(box: tuple, pattern: str) -> None:
    b = torch.tensor(box, dtype=F64)
    r = regularize_rboxes(b, pattern)
    lo, hi = RANGES[pattern]
    assert lo <= r[4].item() < hi
    if pattern != "oc":
        assert r[2] >= r[3]
    assert sorted(r[2:4].tolist()) == sorted(b[2:4].tolist())
    assert_same_corner_set(rbox2corners(b), rbox2corners(r), atol=1e-9 * (1 + abs(box[0]) + abs(box[1])))


@settings(max_examples=150, deadline=None)
@given(box=box_strategy, pattern=st.sampled_from(["le90", "le135", "oc"]))
def test_regularize_idempotent_for_non_squares(box: tuple, pattern: str) -> None:
    assume(abs(box[2] - box[3]) > 1e-6)
    r1 = regularize_rboxes(torch.tensor(box, dtype=F64), pattern)
    lo, hi = RANGES[pattern]
    assume(r1[4] - lo > 1e-9 and hi - r1[4] > 1e-9)  # away from the half-open range's rounding edge
    torch.testing.assert_close(regularize_rboxes(r1, pattern), r1, rtol=0, atol=1e-12)


def test_regularize_pinned_cases() -> None:
    b = torch.tensor(
        [[0, 0, 10, 10, 0.3], [0, 0, 40, 10, PI / 2], [0, 0, 10, 40, 0.0], [0, 0, 40, 10, -PI / 2]], dtype=F64
    )
    le90 = regularize_rboxes(b, "le90")
    torch.testing.assert_close(le90[0], torch.tensor([0, 0, 10, 10, 0.3 + PI / 2 - PI], dtype=F64))
    assert abs(le90[0, 4].item() - (-1.2708)) < 1e-4  # square: swap + pi/2 even though w == h
    assert le90[1, 4].item() == -PI / 2  # +pi/2 -> -pi/2 (half-open)
    torch.testing.assert_close(le90[2], torch.tensor([0, 0, 40, 10, -PI / 2], dtype=F64))
    assert le90[3, 4].item() == -PI / 2
    le135 = regularize_rboxes(b, "le135")
    torch.testing.assert_close(le135[1], torch.tensor([0, 0, 40, 10, PI / 2], dtype=F64))
    torch.testing.assert_close(le135[2], torch.tensor([0, 0, 40, 10, PI / 2], dtype=F64))
    assert le135[3, 4].item() == pytest.approx(PI / 2)
    three_q = regularize_rboxes(torch.tensor([0, 0, 40, 10, 3 * PI / 4], dtype=F64), "le135")
    assert three_q[4].item() == pytest.approx(-PI / 4)
    oc = regularize_rboxes(torch.tensor([[0, 0, 10, 4, 0.0], [0, 0, 10, 4, -0.2]], dtype=F64), "oc")
    torch.testing.assert_close(oc[0], torch.tensor([0, 0, 4, 10, -PI / 2], dtype=F64))  # cv2's old (4, 10, -90)
    torch.testing.assert_close(oc[1], torch.tensor([0, 0, 10, 4, -0.2], dtype=F64))
    # squares alternate by pi/2 under repeated le90 regularisation (mmrotate's rule), corners unchanged
    sq2 = regularize_rboxes(le90[0], "le90")
    assert sq2[4].item() == pytest.approx(0.3)


def test_norm_angle() -> None:
    t = torch.tensor([PI / 2, -PI / 2, 0.3 + PI, 3 * PI / 4, -2.0], dtype=F64)
    torch.testing.assert_close(
        norm_angle(t, "le90"), torch.tensor([-PI / 2, -PI / 2, 0.3, -PI / 4, PI - 2.0], dtype=F64)
    )
    torch.testing.assert_close(
        norm_angle(t, "le135"), torch.tensor([PI / 2, PI / 2, 0.3, -PI / 4, PI - 2.0], dtype=F64)
    )
    torch.testing.assert_close(norm_angle(t, "oc"), t)
    with pytest.raises(ValueError):
        norm_angle(t, "le45")


# ------------------------------------------------------------------ geometry


def test_corners_order_poly_hbox_and_areas() -> None:
    b = torch.tensor([10.0, 20.0, 8.0, 4.0, PI / 2], dtype=F64)  # w side along +y, h side along -x
    expected = torch.tensor([[8.0, 24.0], [12.0, 24.0], [12.0, 16.0], [8.0, 16.0]], dtype=F64)
    torch.testing.assert_close(rbox2corners(b), expected)
    torch.testing.assert_close(rbox2poly(b), expected.flatten())
    torch.testing.assert_close(rbox2hbox(b), torch.tensor([8.0, 16.0, 12.0, 24.0], dtype=F64))
    hb = rbox2hbox(torch.tensor([100.0, 72.0, 100.0, 40.0, PI / 6], dtype=F64))
    assert (hb[2] - hb[0]).item() == pytest.approx(106.603, abs=1e-3)
    assert (hb[3] - hb[1]).item() == pytest.approx(84.641, abs=1e-3)
    xyxy = torch.tensor([[1.0, 2.0, 11.0, 7.0], [0.0, 0.0, 3.0, 9.0]])
    rb = hbox2rbox(xyxy)
    torch.testing.assert_close(rb[0], torch.tensor([6.0, 4.5, 10.0, 5.0, 0.0]))
    torch.testing.assert_close(rbox2hbox(rb), xyxy)
    torch.testing.assert_close(rbox_areas(rb), torch.tensor([50.0, 27.0]))


def test_section_1_7_vectors() -> None:
    b = torch.tensor([[50, 50, 40, 10, 0.3], [50, 50, 10, 40, 0.3 + PI / 2], [50, 50, 40, 10, 0.3 + PI]], dtype=F64)
    r = regularize_rboxes(b, "le90")
    torch.testing.assert_close(r, b[:1].expand(3, 5))
    assert_same_corner_set(rbox2corners(b[:1]).expand(3, 4, 2), rbox2corners(b), atol=1e-12)


# ------------------------------------------------------------------ poly -> rbox


def test_poly_to_rbox_round_trips_rectangles() -> None:
    gen = torch.Generator().manual_seed(1)
    b = regularize_rboxes(random_rboxes(2000, gen, min_ratio=1.05), "le90")
    for polys, px_tol, rad_tol in ((rbox2poly(b), 1e-9, 1e-12), (rbox2corners(b).float(), 1e-3, 1e-5)):
        r = poly2rbox(polys, "le90").to(F64)
        torch.testing.assert_close(r[:, :4], b[:, :4], rtol=0, atol=px_tol)
        assert angle_diff_mod(r[:, 4], b[:, 4]).abs().max().item() < rad_tol
    sq = torch.tensor([[5.0, 5.0, 10.0, 10.0, 0.4]], dtype=F64)  # squares: equal up to pi/2
    r = poly2rbox(rbox2poly(sq))
    torch.testing.assert_close(r[:, :4], sq[:, :4])
    assert angle_diff_mod(r[:, 4], sq[:, 4], PI / 2).abs().item() < 1e-9


def test_poly_to_rbox_general_quads_min_area() -> None:
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 100, size=(500, 4, 2))
    r = poly2rbox(torch.from_numpy(pts), "le90")
    assert torch.isfinite(r).all() and (r[:, 2] >= r[:, 3]).all()
    ours = (r[:, 2] * r[:, 3]).numpy()
    multipoints = shapely.multipoints(pts)
    ref = shapely.area(shapely.minimum_rotated_rectangle(multipoints))
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)
    cv_areas = [math.prod(cv2.minAreaRect(p.astype(np.float32))[1]) for p in pts]
    np.testing.assert_allclose(ours, cv_areas, rtol=1e-4, atol=1e-3)
    # the rectangle encloses the 4 points
    rect = shapely.polygons(rbox2corners(r).numpy())
    assert shapely.covers(shapely.buffer(rect, 1e-7), multipoints).all()


def test_poly_to_rbox_shapes_and_degenerate_inputs() -> None:
    degenerate = torch.tensor(
        [
            [3, 3, 3, 3, 3, 3, 3, 3],  # one point
            [0, 0, 1, 1, 2, 2, 3, 3],  # collinear
            [0, 0, 0, 0, 4, 0, 4, 0],  # repeated pairs
            [0, 0, 4, 0, 4, 3, 4, 3],  # triangle with a repeated vertex
        ],
        dtype=torch.float32,
    )
    r = poly2rbox(degenerate)
    assert torch.isfinite(r).all()
    torch.testing.assert_close(r[0, :4], torch.tensor([3.0, 3.0, 0.0, 0.0]))
    torch.testing.assert_close(r[1, 2:4], torch.tensor([math.sqrt(18), 0.0]))
    tri_area = shapely.minimum_rotated_rectangle(shapely.Polygon([(0, 0), (4, 0), (4, 3)])).area
    assert (r[3, 2] * r[3, 3]).item() == pytest.approx(tri_area, rel=1e-5)
    batch = torch.rand(2, 3, 8, dtype=F64) * 50
    assert poly2rbox(batch).shape == (2, 3, 5)
    torch.testing.assert_close(poly2rbox(batch.unflatten(-1, (4, 2))), poly2rbox(batch))
    assert poly2rbox(torch.zeros(0, 8)).shape == (0, 5)
    assert poly2rbox(torch.tensor([[0, 0, 4, 0, 4, 2, 0, 2]])).dtype == torch.float32  # int input
    with pytest.raises(ValueError):
        poly2rbox(torch.zeros(3, 6))


# ------------------------------------------------------------------ transforms


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "diagonal"])
def test_flip_moves_corners_like_image_points(direction: str) -> None:
    gen = torch.Generator().manual_seed(3)
    b = random_rboxes(300, gen)
    hw = (480, 640)
    c = rbox2corners(b)
    if direction in ("horizontal", "diagonal"):
        c = torch.stack((hw[1] - c[..., 0], c[..., 1]), -1)
    if direction in ("vertical", "diagonal"):
        c = torch.stack((c[..., 0], hw[0] - c[..., 1]), -1)
    assert_same_corner_set(rbox2corners(flip_rboxes(b, hw, direction)), c, atol=1e-9)
    with pytest.raises(ValueError):
        flip_rboxes(b, hw, "sideways")


def test_rescale_and_translate() -> None:
    gen = torch.Generator().manual_seed(4)
    b = random_rboxes(300, gen)
    assert_same_corner_set(rbox2corners(rescale_rboxes(b, 1.5)), rbox2corners(b) * 1.5, atol=1e-9)
    shifted = translate_rboxes(b, 7.0, -3.0)
    assert_same_corner_set(rbox2corners(shifted), rbox2corners(b) + torch.tensor([7.0, -3.0], dtype=F64), 1e-9)
    # anisotropic: centre scaled, both side lengths = scaled side vectors, h direction exact, w perpendicular
    sx, sy = 0.5, 2.0
    r = rescale_rboxes(b, sx, sy)
    _, _, w, h, t = b.unbind(-1)
    scale = torch.tensor([sx, sy], dtype=F64)
    w_vec = torch.stack((torch.cos(t), torch.sin(t)), -1) * w[:, None] * scale
    h_vec = torch.stack((-torch.sin(t), torch.cos(t)), -1) * h[:, None] * scale
    torch.testing.assert_close(r[:, :2], b[:, :2] * scale)
    torch.testing.assert_close(r[:, 2], w_vec.norm(dim=-1))
    torch.testing.assert_close(r[:, 3], h_vec.norm(dim=-1))
    new_h_dir = torch.stack((-torch.sin(r[:, 4]), torch.cos(r[:, 4])), -1)
    torch.testing.assert_close(new_h_dir, h_vec / h_vec.norm(dim=-1, keepdim=True))


# ------------------------------------------------------------------ torchvision formats


def test_torchvision_cxcywhr_relation() -> None:
    """torchvision CXCYWHR r (degrees, counter-clockwise on screen) == -degrees(theta)."""
    gen = torch.Generator().manual_seed(5)
    b = random_rboxes(500, gen)
    tv = rbox2tv_cxcywhr(b)
    torch.testing.assert_close(tv[:, 4], -torch.rad2deg(b[:, 4]))
    torch.testing.assert_close(tv[:, :4], b[:, :4])
    tv_poly = convert_bounding_box_format(tv, BoundingBoxFormat.CXCYWHR, BoundingBoxFormat.XYXYXYXY)
    ours = rbox2corners(b)
    assert_same_corner_set(tv_poly.unflatten(-1, (4, 2)), ours, atol=1e-9)
    # exact order: torchvision's (x1y1, x2y2, x3y3, x4y4) is our (p3, p2, p1, p4)
    torch.testing.assert_close(tv_poly.unflatten(-1, (4, 2)), ours[:, [2, 1, 0, 3]])
    torch.testing.assert_close(tv_cxcywhr2rbox(tv), b)
    # torchvision's XYXYXYXY -> CXCYWHR, read back through our converter, gives the same rectangle
    back = convert_bounding_box_format(tv_poly, BoundingBoxFormat.XYXYXYXY, BoundingBoxFormat.CXCYWHR)
    assert_same_corner_set(rbox2corners(tv_cxcywhr2rbox(back, "le90")), ours, atol=1e-8)
    # a hand-checked box: theta = +30 deg (clockwise) is torchvision's -30
    one = torch.tensor([[100.0, 72.0, 100.0, 40.0, PI / 6]], dtype=F64)
    assert rbox2tv_cxcywhr(one)[0, 4].item() == pytest.approx(-30.0)
