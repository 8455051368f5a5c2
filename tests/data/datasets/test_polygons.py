"""Quadrilateral checks (mtp.data.datasets.polygons): degenerate, self-crossing and outside-the-image rules."""

from __future__ import annotations

import numpy as np
import torch

from mtp.data.datasets.polygons import accept_polygon, is_degenerate, is_self_crossing, outside_image, untangle
from mtp.ops import poly2rbox

BOW_TIE = [10, 10, 30, 30, 30, 10, 10, 30]


def test_bow_tie_is_reordered_and_keeps_its_rotated_box():
    assert is_self_crossing(BOW_TIE) and not is_degenerate(BOW_TIE)  # its shoelace area is 0
    fixed = untangle(BOW_TIE)
    assert fixed.tolist() == [10, 10, 30, 10, 30, 30, 10, 30] and not is_self_crossing(fixed)
    before, after = (poly2rbox(torch.tensor([p], dtype=torch.float64)) for p in (BOW_TIE, fixed))
    torch.testing.assert_close(before, after)


def test_simple_and_concave_quads_are_left_alone():
    square, concave = [0, 0, 10, 0, 10, 10, 0, 10], [0, 0, 10, 0, 2, 2, 0, 10]
    for poly in (square, concave):
        skipped, reordered = [], []
        assert accept_polygon(poly, 7, skipped, reordered) == poly and skipped == reordered == []
    skipped, reordered = [], []
    assert accept_polygon([0, 0, 5, 5, 10, 10, 2, 2], 3, skipped, reordered) is None and skipped == [3]
    assert accept_polygon(BOW_TIE, 4, skipped, reordered) is not None and reordered == [4]


def test_outside_means_no_area_inside_the_image():
    polys = np.array([
        [0, 0, 5, 0, 5, 5, 0, 5],  # inside
        [-10, -10, 2, -10, 2, 2, -10, 2],  # reaches in
        [-10, -10, 0, -10, 0, 0, -10, 0],  # touches the corner only
        [70, 10, 90, 10, 90, 20, 70, 20],  # right of the image
    ], np.float32)  # fmt: skip
    assert outside_image(polys, (50, 64)).tolist() == [False, False, True, True]
