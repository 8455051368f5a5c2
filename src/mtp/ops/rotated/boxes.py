"""Rotated box conventions and conversions (docs/CONVENTIONS.md#rotated-boxes).

Hand-written: no maintained library offers the mmrotate rotated-box conventions (le90/le135/oc
regularisation, minAreaRect poly->rbox) as batched torch functions; torchvision 0.29 has rotated box
*formats* but with a different angle unit and sign (see :func:`rbox2tv_cxcywhr`).

Conventions (all functions, any leading batch shape ``...``):

* an rbox is a float tensor ``(..., 5)`` = ``(cx, cy, w, h, theta)``: centre and side lengths in
  pixels, ``theta`` in radians, image frame (x right, y down);
* ``theta`` rotates the axis-aligned box (w along x, h along y) by R(theta) = [[cos, -sin], [sin, cos]]
  in the y-down frame, so positive theta looks **clockwise** on screen (mmcv ``clockwise=True``);
* the w side runs along (cos theta, sin theta), the h side along (-sin theta, cos theta);
* corners (mmrotate 1.x order): with a = w/2 (cos, sin) and b = h/2 (-sin, cos):
  p1 = c + a + b, p2 = c + a - b, p3 = c - a - b, p4 = c - a + b;
* DOTA polygons are ``(..., 8)`` = (x1, y1, ..., x4, y4) or ``(..., 4, 2)`` points;
* horizontal boxes are xyxy pixels (torchvision).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "PATTERNS",
    "flip_rboxes",
    "hbox2rbox",
    "norm_angle",
    "poly2rbox",
    "rbox2corners",
    "rbox2hbox",
    "rbox2poly",
    "rbox2tv_cxcywhr",
    "rbox_areas",
    "rbox_corner_xy",
    "regularize_rboxes",
    "rescale_rboxes",
    "translate_rboxes",
    "tv_cxcywhr2rbox",
]

PATTERNS = ("oc", "le90", "le135")
# (width_longer, start angle s) per regularisation pattern, docs/CONVENTIONS.md#regularisation.
_PATTERN_SPEC = {"oc": (False, -math.pi / 2), "le90": (True, -math.pi / 2), "le135": (True, -math.pi / 4)}


def _check_pattern(pattern: str) -> tuple[bool, float]:
    if pattern not in _PATTERN_SPEC:
        raise ValueError(f"unknown angle pattern {pattern!r}; expected one of {PATTERNS}")
    return _PATTERN_SPEC[pattern]


def _mod_pi(x: Tensor) -> Tensor:
    """Floored modulo pi in [0, pi): like ``x % pi`` but never returns pi itself through rounding."""
    u = torch.remainder(x, math.pi)
    return torch.where(u >= math.pi, u - math.pi, u).clamp_min(0.0)


def norm_angle(theta: Tensor, pattern: str = "le90") -> Tensor:
    """Wrap angles (radians) only: le90 -> [-pi/2, pi/2), le135 -> [-pi/4, 3pi/4), oc -> unchanged."""
    width_longer, start = _check_pattern(pattern)
    if not width_longer:
        return theta.clone()
    return _mod_pi(theta - start) + start


def regularize_rboxes(boxes: Tensor, pattern: str = "le90") -> Tensor:
    """Make the (w, h, theta) tuple of every rbox unique per the mmrotate 1.x rule
    (docs/CONVENTIONS.md#regularisation).

    Args:
        boxes: (..., 5) rboxes.
        pattern: 'le90' (theta in [-pi/2, pi/2), w >= h), 'le135' (theta in [-pi/4, 3pi/4), w >= h) or
            'oc' (theta in [-pi/2, 0), no guarantee on w vs h; OpenCV's old minAreaRect convention).

    Returns:
        (..., 5) rboxes describing the same corner set. For le90/le135 a box is kept as is only when
        w > h strictly; otherwise (squares included) w and h are swapped and theta += pi/2 before wrapping,
        so (0, 0, 10, 10, 0.3) -> le90 theta = 0.3 + pi/2 - pi = -1.2708; hence squares are not idempotent
        (each call turns them by pi/2; the corner set is unchanged). Ranges are half-open (+pi/2 -> -pi/2).
    """
    width_longer, start = _check_pattern(pattern)
    cx, cy, w, h, t = boxes.unbind(-1)
    if width_longer:
        swap = ~(w > h)
        w, h = torch.where(swap, h, w), torch.where(swap, w, h)
        t = torch.where(swap, t + math.pi / 2, t)
        t = _mod_pi(t - start) + start
    else:
        u = _mod_pi(t - start)
        keep = u < math.pi / 2
        w, h = torch.where(keep, w, h), torch.where(keep, h, w)
        t = torch.where(keep, u + start, u - math.pi / 2 + start)
    return torch.stack((cx, cy, w, h, t), dim=-1)


# ------------------------------------------------------------------ geometry


def rbox_corner_xy(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """(..., 5) rboxes -> corner x and y coordinates, each (..., 4), in the :func:`rbox2corners` order."""
    cx, cy, w, h, t = boxes.unbind(-1)
    cos, sin = torch.cos(t), torch.sin(t)
    ax, ay = w / 2 * cos, w / 2 * sin
    bx, by = -h / 2 * sin, h / 2 * cos
    xs = torch.stack((ax + bx, ax - bx, -ax - bx, -ax + bx), dim=-1) + cx.unsqueeze(-1)
    ys = torch.stack((ay + by, ay - by, -ay - by, -ay + by), dim=-1) + cy.unsqueeze(-1)
    return xs, ys


def rbox2corners(boxes: Tensor) -> Tensor:
    """(..., 5) rboxes -> (..., 4, 2) corners p1 = c+a+b, p2 = c+a-b, p3 = c-a-b, p4 = c-a+b
    (docs/CONVENTIONS.md#corners-and-polygons)."""
    return torch.stack(rbox_corner_xy(boxes), dim=-1)


def rbox2poly(boxes: Tensor) -> Tensor:
    """(..., 5) rboxes -> (..., 8) polygons (x1, y1, ..., x4, y4) in the :func:`rbox2corners` order."""
    return rbox2corners(boxes).flatten(-2)


def rbox2hbox(boxes: Tensor) -> Tensor:
    """(..., 5) rboxes -> (..., 4) circumscribed horizontal boxes, xyxy pixels."""
    cx, cy, w, h, t = boxes.unbind(-1)
    cos, sin = torch.cos(t).abs(), torch.sin(t).abs()
    bx = w / 2 * cos + h / 2 * sin
    by = w / 2 * sin + h / 2 * cos
    return torch.stack((cx - bx, cy - by, cx + bx, cy + by), dim=-1)


def hbox2rbox(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy boxes -> (..., 5) rboxes (centre, x2 - x1, y2 - y1, 0); not regularised (mmrotate 1.x)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, torch.zeros_like(x1)), dim=-1)


def rbox_areas(boxes: Tensor) -> Tensor:
    """(..., 5) rboxes -> (...) areas w * h in square pixels."""
    return boxes[..., 2] * boxes[..., 3]


_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def poly2rbox(polys: Tensor, pattern: str | None = "le90") -> Tensor:
    """Minimum-area enclosing rectangle of 4 points (the ``cv2.minAreaRect`` rule), batched, without OpenCV.

    The minimum-area rectangle has a side collinear with a convex-hull edge, and the 6 pairwise
    directions of 4 points contain every hull edge; so the bounding rectangle is evaluated along each
    of the 6 directions (and its perpendicular) and the smallest area wins. Non-hull directions only
    give larger (still enclosing) rectangles. Work is done relative to the points' mean for precision.

    Args:
        polys: (..., 8) polygons (x1, y1, ..., x4, y4) or (..., 4, 2) points, pixels.
        pattern: regularisation applied to the result ('le90', 'le135', 'oc'), or None for the raw
            rectangle (theta = direction of the chosen pair, in (-pi, pi]).

    Returns:
        (..., 5) rboxes. Degenerate inputs (repeated points, collinear points) give finite boxes with a
        zero side; the angle of a zero-length direction is atan2(0, 0) = 0.
    """
    if polys.shape[-1] == 8:
        pts = polys.unflatten(-1, (4, 2))
    elif polys.shape[-2:] == (4, 2):
        pts = polys
    else:
        raise ValueError(f"expected (..., 8) or (..., 4, 2) polygons, got {tuple(polys.shape)}")
    if not pts.is_floating_point():
        pts = pts.float()
    centre = pts.mean(dim=-2, keepdim=True)
    rel = pts - centre  # (..., 4, 2)
    i = torch.tensor([p[0] for p in _PAIRS], device=pts.device)
    j = torch.tensor([p[1] for p in _PAIRS], device=pts.device)
    d = rel.index_select(-2, j) - rel.index_select(-2, i)  # (..., 6, 2)
    ang = torch.atan2(d[..., 1], d[..., 0])  # (..., 6), 0 for zero-length directions
    u = torch.stack((torch.cos(ang), torch.sin(ang)), dim=-1)  # (..., 6, 2)
    v = torch.stack((-u[..., 1], u[..., 0]), dim=-1)
    pu = torch.einsum("...dk,...pk->...dp", u, rel)  # (..., 6, 4) projections on the direction
    pv = torch.einsum("...dk,...pk->...dp", v, rel)
    umin, umax = pu.amin(-1), pu.amax(-1)
    vmin, vmax = pv.amin(-1), pv.amax(-1)
    w, h = umax - umin, vmax - vmin
    best = torch.argmin(w * h, dim=-1, keepdim=True)  # first minimum on ties

    def pick(x: Tensor) -> Tensor:
        return x.gather(-1, best).squeeze(-1)

    w, h, t = pick(w), pick(h), pick(ang)
    mu, mv = pick((umin + umax) / 2), pick((vmin + vmax) / 2)
    cos, sin = torch.cos(t), torch.sin(t)
    cx = centre[..., 0, 0] + mu * cos - mv * sin
    cy = centre[..., 0, 1] + mu * sin + mv * cos
    out = torch.stack((cx, cy, w, h, t), dim=-1)
    return out if pattern is None else regularize_rboxes(out, pattern)


# ------------------------------------------------------------------ transforms
# (docs/CONVENTIONS.md#transforms-on-rotated-boxes)


def rescale_rboxes(boxes: Tensor, sx: float | Tensor, sy: float | Tensor | None = None) -> Tensor:
    """Resize rule of mmrotate 1.x for image scale factors (sx, sy) (docs/CONVENTIONS.md#transforms-on-rotated-boxes).

    c <- (sx cx, sy cy); w <- w sqrt((sx cos t)^2 + (sy sin t)^2); h <- h sqrt((sx sin t)^2 + (sy cos t)^2);
    t <- atan2(sx sin t, sy cos t). With sx == sy == s > 0 this scales c, w and h by s and keeps t (up
    to a multiple of 2 pi). Anisotropic scaling maps the rectangle to a parallelogram; the rule keeps the
    exact scaled *lengths* of both sides and the exact scaled *direction of the h side*
    (h (-sin t, cos t) -> (-sx h sin t, sy h cos t)) and makes the w side perpendicular to it.

    Args:
        boxes: (..., 5) rboxes; sx, sy: positive scale factors (floats or tensors broadcastable to
            ``boxes[..., 0]``); sy defaults to sx.
    """
    sy = sx if sy is None else sy
    cx, cy, w, h, t = boxes.unbind(-1)
    cos, sin = torch.cos(t), torch.sin(t)
    nw = w * torch.sqrt((sx * cos) ** 2 + (sy * sin) ** 2)
    nh = h * torch.sqrt((sx * sin) ** 2 + (sy * cos) ** 2)
    nt = torch.atan2(sx * sin, sy * cos)
    return torch.stack((cx * sx, cy * sy, nw, nh, nt), dim=-1)


def flip_rboxes(boxes: Tensor, image_hw: tuple[int, int], direction: str = "horizontal") -> Tensor:
    """Flip rboxes with the image (docs/CONVENTIONS.md#transforms-on-rotated-boxes): horizontal cx <- W - cx,
    t <- -t; vertical cy <- H - cy, t <- -t; diagonal (both axes) cx <- W - cx, cy <- H - cy, t unchanged.
    Uses W - x (not W - 1 - x)."""
    height, width = image_hw
    cx, cy, w, h, t = boxes.unbind(-1)
    if direction == "horizontal":
        cx, t = width - cx, -t
    elif direction == "vertical":
        cy, t = height - cy, -t
    elif direction == "diagonal":
        cx, cy = width - cx, height - cy
    else:
        raise ValueError(f"direction must be 'horizontal', 'vertical' or 'diagonal', got {direction!r}")
    return torch.stack((cx, cy, w, h, t), dim=-1)


def translate_rboxes(boxes: Tensor, dx: float | Tensor, dy: float | Tensor) -> Tensor:
    """Shift rbox centres by (dx, dy) pixels."""
    out = boxes.clone()
    out[..., 0] = boxes[..., 0] + dx
    out[..., 1] = boxes[..., 1] + dy
    return out


# ------------------------------------------------------------------ torchvision formats


def rbox2tv_cxcywhr(boxes: Tensor) -> Tensor:
    """Our rboxes -> torchvision ``BoundingBoxFormat.CXCYWHR`` (..., 5).

    torchvision 0.29 measures r in **degrees, counter-clockwise on screen**: its w side runs along
    (cos r, -sin r) in the y-down frame. Ours runs along (cos t, sin t) with t in radians, so
    ``r = -degrees(t)``; (cx, cy, w, h) are identical and the corner sets agree (torchvision's
    XYXYXYXY order is our (p3, p2, p1, p4), i.e. the opposite winding from a different start).
    """
    out = boxes.clone()
    out[..., 4] = torch.rad2deg(-boxes[..., 4])
    return out


def tv_cxcywhr2rbox(boxes: Tensor, pattern: str | None = None) -> Tensor:
    """torchvision ``CXCYWHR`` (degrees, counter-clockwise) -> our rboxes (``t = -radians(r)``).

    Args:
        boxes: (..., 5) torchvision CXCYWHR boxes.
        pattern: optional regularisation ('le90', ...) of the result; None keeps the raw tuple.
    """
    out = boxes.clone() if boxes.is_floating_point() else boxes.float()
    out[..., 4] = torch.deg2rad(-out[..., 4])
    return out if pattern is None else regularize_rboxes(out, pattern)
