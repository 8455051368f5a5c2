"""Rotated-box helpers used by the generator and the writers (numpy, float64).

Conventions (docs/CONVENTIONS.md#rotated-boxes): image frame, x right, y down, pixel centres at integer
coordinates; a rotated box is (cx, cy, w, h, theta) in pixels and radians, the w side runs along
(cos theta, sin theta) and the h side along (-sin theta, cos theta); positive theta is clockwise on screen.
"""

from __future__ import annotations

import math

import numpy as np

HALF_PI = math.pi / 2


def regularize_le90(cx: float, cy: float, w: float, h: float, theta: float) -> tuple[float, float, float, float, float]:
    """mmrotate 1.x 'le90' regularisation of one box: w >= h and theta in [-pi/2, pi/2).

    If w > h (strictly) the sides are kept, otherwise they are swapped and theta += pi/2 (so squares always
    get the extra pi/2); theta is then wrapped with ((theta + pi/2) mod pi) - pi/2.
    """
    if not w > h:
        w, h, theta = h, w, theta + HALF_PI
    theta = (theta + HALF_PI) % math.pi - HALF_PI
    if theta >= HALF_PI:  # float rounding of the modulo
        theta -= math.pi
    return float(cx), float(cy), float(w), float(h), float(theta)


def rbox_corners(rbox) -> np.ndarray:
    """Corners (4, 2) of (cx, cy, w, h, theta), mmrotate 1.x order (docs/CONVENTIONS.md#corners-and-polygons).

    With a = (w/2 cos t, w/2 sin t) and b = (-h/2 sin t, h/2 cos t): c + a + b, c + a - b, c - a - b, c - a + b.
    Also accepts (..., 5) arrays and returns (..., 4, 2).
    """
    r = np.asarray(rbox, dtype=np.float64)
    if r.shape == (5,):  # fast scalar path
        cx, cy, w, h, t = (float(v) for v in r)
        ax, ay = w / 2 * math.cos(t), w / 2 * math.sin(t)
        bx, by = -h / 2 * math.sin(t), h / 2 * math.cos(t)
        return np.array([[cx + ax + bx, cy + ay + by], [cx + ax - bx, cy + ay - by],
                         [cx - ax - bx, cy - ay - by], [cx - ax + bx, cy - ay + by]])  # fmt: skip
    cx, cy, w, h, t = (r[..., i] for i in range(5))
    cos, sin = np.cos(t), np.sin(t)
    a = np.stack([w / 2 * cos, w / 2 * sin], axis=-1)
    b = np.stack([-h / 2 * sin, h / 2 * cos], axis=-1)
    c = np.stack([cx, cy], axis=-1)
    return np.stack([c + a + b, c + a - b, c - a - b, c - a + b], axis=-2)


def corners_hbox(corners: np.ndarray) -> np.ndarray:
    """Circumscribed horizontal box (x1, y1, x2, y2) of corners (..., N, 2)."""
    c = np.asarray(corners, dtype=np.float64)
    return np.concatenate([c.min(axis=-2), c.max(axis=-2)], axis=-1)


def clockwise_from_top_left(poly: np.ndarray) -> np.ndarray:
    """Re-order a quadrilateral (4, 2) clockwise on screen (y down), starting at its 'top-left' corner.

    The winding is made clockwise on screen (positive shoelace sum in the y-down frame), then the cyclic
    shift closest (sum of distances) to the enclosing box corners (xmin, ymin), (xmax, ymin), (xmax, ymax),
    (xmin, ymax) is chosen (mmrotate 0.3.4 ``get_best_begin_point`` rule). Used for the DOTA txt, DIOR-R
    ``robndbox`` (left_top, right_top, right_bottom, left_bottom) and FAIR1M point orders.
    """
    p = np.asarray(poly, dtype=np.float64).reshape(4, 2)
    x, y = p[:, 0], p[:, 1]
    if np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) < 0:
        p = p[::-1]
    (x1, y1), (x2, y2) = p.min(axis=0), p.max(axis=0)
    ref = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    costs = [np.linalg.norm(np.roll(p, -k, axis=0) - ref, axis=1).sum() for k in range(4)]
    return np.roll(p, -int(np.argmin(costs)), axis=0)


def local_to_image(points: np.ndarray, cx: float, cy: float, theta: float) -> np.ndarray:
    """Map (N, 2) points from an object frame (u along the w side, v along the h side) to image pixels."""
    cos, sin = math.cos(theta), math.sin(theta)
    return points @ np.array([[cos, sin], [-sin, cos]]) + np.array([cx, cy])


def circle_polygon(cx: float, cy: float, r: float, n: int = 24) -> np.ndarray:
    """(n, 2) vertices of a circle of radius r (pixels) around (cx, cy)."""
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


def inset_convex(poly: np.ndarray, d: float) -> np.ndarray:
    """Move every edge of a convex polygon (N, 2) inwards by ``d`` pixels (either winding).

    ``cv2.fillConvexPoly`` also fills pixels touched by the outline, i.e. it rasterises about half a pixel
    beyond the geometric edge; filling the polygon inset by 0.5 px gives an unbiased area and matches
    pixel-centre sampling (IoU ~0.97 on random 3-30 px rectangles).
    """
    p = np.asarray(poly, dtype=np.float64)
    nxt = np.concatenate([p[1:], p[:1]])
    edge = nxt - p
    length = np.sqrt(edge[:, 0] ** 2 + edge[:, 1] ** 2)
    normal = np.empty_like(edge)
    normal[:, 0], normal[:, 1] = -edge[:, 1], edge[:, 0]
    normal /= np.maximum(length, 1e-12)[:, None]
    if (p[:, 0] * nxt[:, 1] - nxt[:, 0] * p[:, 1]).sum() < 0:  # shoelace: make the normals point inwards
        normal = -normal
    prev = np.concatenate([normal[-1:], normal[:-1]])
    denom = np.maximum(1.0 + (normal * prev).sum(axis=1), 1e-6)
    return p + (d / denom)[:, None] * (normal + prev)
