"""Quadrilateral checks shared by the oriented-box readers (DOTA, DIOR-R, FAIR1M, SAMRS box files): degenerate
polygons, self-crossing ("bow tie") quadrilaterals and objects outside their image.

Polygons are (8,) or (N, 8) ``x1 y1 … x4 y4`` in pixels, image frame (y down). The rules (documented for users
in docs/DATASETS.md):

* degenerate — two consecutive equal vertices (MTP's rule) or a zero area (below 1e-6 px², measured on the
  reordered quad when it crosses itself): dropped and counted;
* self-crossing — opposite edges cross: the four points are reordered around their mean, clockwise on screen
  from the first point (the rotated box, the minimum-area rectangle of the points, is unchanged): kept, counted;
* outside — the axis-aligned bounding box has no area inside [0, W] × [0, H]: dropped and counted (the same rule
  as the horizontal readers' clipping).
"""

from __future__ import annotations

import numpy as np

__all__ = ["accept_polygon", "is_degenerate", "is_self_crossing", "outside_image", "untangle"]


def is_degenerate(poly: np.ndarray | list[float]) -> bool:
    """True for two (cyclically) consecutive equal vertices or a zero area (below 1e-6 px²; the area of the
    reordered quad for a self-crossing one)."""
    p = np.asarray(poly, np.float64).reshape(4, 2)
    q = np.roll(p, -1, axis=0)
    if np.any(np.all(p == q, axis=1)):
        return True
    if is_self_crossing(p):
        p = untangle(p).reshape(4, 2)
        q = np.roll(p, -1, axis=0)
    area = 0.5 * abs(float(np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1])))
    return area < 1e-6


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def _segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    """Proper crossing of segments p1p2 and q1q2 (touching or collinear overlaps do not count)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    return d1 * d2 < 0 and d3 * d4 < 0


def is_self_crossing(poly: np.ndarray | list[float]) -> bool:
    """True when a quadrilateral's opposite edges cross (a "bow tie")."""
    p = np.asarray(poly, np.float64).reshape(4, 2)
    return _segments_cross(p[0], p[1], p[2], p[3]) or _segments_cross(p[1], p[2], p[3], p[0])


def untangle(poly: np.ndarray | list[float]) -> np.ndarray:
    """The four points ordered by angle around their mean, clockwise on screen (y down), from the first point;
    (8,) float64."""
    p = np.asarray(poly, np.float64).reshape(4, 2)
    angle = np.arctan2(p[:, 1] - p[:, 1].mean(), p[:, 0] - p[:, 0].mean())
    order = np.argsort((angle - angle[0]) % (2 * np.pi), kind="stable")
    return p[order].reshape(8)


def outside_image(polys: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N,) bool: the axis-aligned bounding box of each (N, 8) polygon has no area inside the image
    [0, W] × [0, H] (the rule of every reader: such objects are dropped and counted as 'outside')."""
    h, w = hw
    xs, ys = polys[:, 0::2], polys[:, 1::2]
    inside_w = np.minimum(xs.max(1), w) - np.maximum(xs.min(1), 0)
    inside_h = np.minimum(ys.max(1), h) - np.maximum(ys.min(1), 0)
    return ~((inside_w > 0) & (inside_h > 0))


def accept_polygon(coords: list[float], where: int, skipped: list[int], reordered: list[int]) -> list[float] | None:
    """The polygon to keep (reordered when self-crossing) or None when degenerate; records ``where``."""
    if is_degenerate(coords):
        skipped.append(where)
        return None
    if is_self_crossing(coords):
        reordered.append(where)
        return untangle(coords).tolist()
    return coords
