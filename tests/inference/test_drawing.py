"""draw_rboxes: shapes, edges drawn where the rbox corners are, deterministic colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtp.inference.drawing import class_color, draw_rboxes
from mtp.ops.rotated.boxes import rbox2poly


def blank(h=120, w=160):
    return np.full((h, w, 3), 40, dtype=np.uint8)


def test_shape_dtype_and_input_untouched():
    img = blank()
    before = img.copy()
    out = draw_rboxes(
        img,
        torch.tensor([[80.0, 60.0, 60.0, 30.0, 0.5]]),
        torch.tensor([2]),
        torch.tensor([0.87]),
        class_names=["a", "b", "ship"],
    )
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, before) and not np.array_equal(out, img)


def test_pixels_change_along_the_edges_only():
    img = blank()
    box = torch.tensor([[80.0, 60.0, 80.0, 50.0, 0.3]], dtype=torch.float64)
    out = draw_rboxes(img, box, [0], thickness=3, palette=[(255, 0, 0)])
    corners = rbox2poly(box).reshape(4, 2).numpy()
    changed = np.any(out != img, axis=2)
    for k in range(4):  # every edge midpoint is painted with the class colour
        mid = np.round((corners[k] + corners[(k + 1) % 4]) / 2).astype(int)
        assert changed[mid[1], mid[0]]
        assert tuple(out[mid[1], mid[0]]) == (255, 0, 0)
    cy, cx = 60, 80  # box centre: far from the edges and from the caption (at the top-most corner)
    assert not changed[cy, cx]
    assert changed.sum() < 0.25 * changed.size


def test_deterministic_colours_and_output():
    img = blank()
    boxes = np.array([[40.0, 40.0, 30, 20, 0.0], [110.0, 70.0, 40, 20, -0.7]])
    a = draw_rboxes(img, boxes, [0, 5], [0.9, 0.4])
    b = draw_rboxes(img, boxes, np.array([0, 5]), np.array([0.9, 0.4]))
    assert np.array_equal(a, b)
    assert class_color(3) == class_color(3)
    colours = {class_color(k) for k in range(20)}
    assert len(colours) == 20
    assert class_color(1, palette=[(1, 2, 3), (4, 5, 6)]) == (4, 5, 6)


def test_no_boxes_and_bad_input():
    img = blank()
    assert np.array_equal(draw_rboxes(img, np.zeros((0, 5)), np.zeros(0, dtype=int)), img)
    with pytest.raises(ValueError):
        draw_rboxes(img.astype(np.float32), np.zeros((0, 5)), [])
    with pytest.raises(ValueError):
        draw_rboxes(img, np.zeros((2, 5)), [0])
