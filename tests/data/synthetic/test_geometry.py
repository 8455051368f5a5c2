"""Rotated-box helpers against the conventions of docs/CONVENTIONS.md#rotated-boxes (test vectors) and oracles
(shapely, cv2)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from shapely.geometry import Polygon

from mtp.data.synthetic.geometry import (
    clockwise_from_top_left,
    corners_hbox,
    local_to_image,
    rbox_corners,
    regularize_le90,
)


def test_le90_square_and_boundary_vectors():
    assert regularize_le90(0, 0, 10, 10, 0.3) == pytest.approx((0, 0, 10, 10, 0.3 + math.pi / 2 - math.pi))
    assert regularize_le90(0, 0, 10, 4, math.pi / 2)[4] == pytest.approx(-math.pi / 2)
    a = regularize_le90(50, 50, 40, 10, 0.3)
    b = regularize_le90(50, 50, 10, 40, 0.3 + math.pi / 2)
    c = regularize_le90(50, 50, 40, 10, 0.3 + math.pi)
    assert a == pytest.approx(b) and a == pytest.approx(c) and a[4] == pytest.approx(0.3)


def test_le90_range_and_corner_set_invariance():
    rng = np.random.default_rng(0)
    for _ in range(500):
        box = (*rng.uniform(0, 100, 2), *rng.uniform(1, 50, 2), rng.uniform(-10, 10))
        reg = regularize_le90(*box)
        assert reg[2] >= reg[3] and -math.pi / 2 <= reg[4] < math.pi / 2
        p0, p1 = rbox_corners(box), rbox_corners(reg)
        d = np.linalg.norm(p0[:, None] - p1[None], axis=-1)
        assert d.min(axis=1).max() < 1e-9  # same set of corners


def test_corners_order_hbox_and_area():
    cx, cy, w, h, t = 100, 72, 100, 40, math.pi / 6
    corners = rbox_corners((cx, cy, w, h, t))
    a = np.array([w / 2 * math.cos(t), w / 2 * math.sin(t)])
    b = np.array([-h / 2 * math.sin(t), h / 2 * math.cos(t)])
    c = np.array([cx, cy])
    np.testing.assert_allclose(corners, [c + a + b, c + a - b, c - a - b, c - a + b])
    x1, y1, x2, y2 = corners_hbox(corners)
    assert x2 - x1 == pytest.approx(106.603, abs=1e-3) and y2 - y1 == pytest.approx(84.641, abs=1e-3)
    assert Polygon(corners).area == pytest.approx(w * h)
    batch = rbox_corners(np.array([[cx, cy, w, h, t]] * 3))
    np.testing.assert_allclose(batch, np.broadcast_to(corners, (3, 4, 2)))


def test_clockwise_from_top_left_and_min_area_rect_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(200):
        box = regularize_le90(*rng.uniform(20, 200, 2), *rng.uniform(3, 60, 2), rng.uniform(-3, 3))
        poly = clockwise_from_top_left(rbox_corners(box))
        x, y = poly[:, 0], poly[:, 1]
        assert np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0  # clockwise on screen (y down)
        assert {tuple(p) for p in poly.round(9)} == {tuple(p) for p in rbox_corners(box).round(9)}
        (rcx, rcy), (rw, rh), ang = cv2.minAreaRect(poly.astype(np.float32))
        back = regularize_le90(rcx, rcy, rw, rh, math.radians(ang))
        np.testing.assert_allclose(back[:4], box[:4], atol=2e-3)
        dt = (back[4] - box[4] + math.pi / 2) % math.pi - math.pi / 2
        assert abs(dt) < 1e-3 or abs(box[2] - box[3]) < 1e-3


def test_local_to_image_rotates_clockwise_on_screen():
    p = local_to_image(np.array([[1.0, 0.0], [0.0, 1.0]]), 10, 20, math.pi / 2)
    np.testing.assert_allclose(p, [[10, 21], [9, 20]], atol=1e-12)
