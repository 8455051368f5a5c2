"""Object specifications: how each object class is drawn (parts, details, shadow).

All geometry is in image pixels (x right, y down, pixel centres at integers). An object is described in its
own frame (u along the rbox w side = the object's length, v along the h side) and mapped to the image with
:func:`~mtp.data.synthetic.geometry.local_to_image`. Every part is a *convex* polygon, rasterised with
``cv2.fillConvexPoly`` in 1/16-pixel fixed point (``FX``) after a 0.5 px inset (so the filled pixels are about
the pixels whose centre lies inside the part), and a mask drawn in a crop is pixel-identical to the same mask
drawn in the full image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from mtp.data.synthetic.geometry import circle_polygon, inset_convex, local_to_image
from mtp.data.synthetic.textures import darker, roof_rgb

FX_SHIFT = 4  # cv2 fractional bits
FX = 1 << FX_SHIFT
SUN_DIR = (math.cos(math.radians(35)), math.sin(math.radians(35)))  # shadows fall towards bottom-right

CAR_RGB = ((236, 236, 232), (196, 44, 40), (44, 76, 178), (174, 176, 182), (226, 196, 52))
TRAILER_RGB = ((240, 240, 236), (222, 122, 38), (52, 96, 170), (60, 142, 90))
CAB_RGB = ((200, 40, 36), (236, 236, 232), (40, 70, 160))
HATCH_RGB = ((172, 70, 40), (60, 120, 70), (52, 84, 150), (200, 160, 60))


@dataclass
class Spec:
    """One object to draw. ``parts``: (polygon (N, 2) float px, colour) with colour an RGB tuple or, for
    buildings, a roof material id drawn into the material map. ``details``: (points (N, 2), RGB, thickness)
    drawn after the parts (thickness -1 = filled convex polygon, otherwise a closed/open polyline with
    ``closed`` = thickness > 0 and points > 2). ``rbox`` is the raw (cx, cy, w, h, theta), not regularised."""

    category: str
    subtype: str
    rbox: tuple[float, float, float, float, float]
    parts: list[tuple[np.ndarray, tuple[int, int, int] | int]]
    details: list[tuple[np.ndarray, tuple[int, int, int], int]] = field(default_factory=list)
    shadow: float = 0.0
    difficult: bool = False

    @cached_property
    def parts_fx(self) -> list[np.ndarray]:
        """Raster geometry: parts inset by half a pixel (``geometry.inset_convex``), int32 1/16 px fixed point."""
        return [np.round(inset_convex(p, 0.5) * FX).astype(np.int32) for p, _ in self.parts]


def _rect(length: float, width: float, u0: float = 0.0) -> np.ndarray:
    """Axis-aligned rectangle in the object frame, centred at (u0, 0)."""
    a, b = length / 2, width / 2
    return np.array([[u0 + a, b], [u0 + a, -b], [u0 - a, -b], [u0 - a, b]])


def building(cx, cy, w, h, theta, roof: int, height: float, flat: bool) -> Spec:
    """A building: rectangle w x h (px) with a roof material; pitched roofs get a ridge, flat ones a rim."""
    poly = local_to_image(_rect(w, h), cx, cy, theta)
    line = darker(roof_rgb(roof), 0.78 if flat else 0.62)
    if flat:
        details = [(local_to_image(_rect(max(w - 4, 1), max(h - 4, 1)), cx, cy, theta), line, 1)]
    else:
        long_w = w >= h
        half = abs(w - h) / 2
        ends = [[-half, 0], [half, 0]] if long_w else [[0, -half], [0, half]]
        details = [(local_to_image(np.array(ends, float), cx, cy, theta), line, 1)]
    sub = "industrial" if flat else "house"
    return Spec("building", sub, (cx, cy, w, h, theta), [(poly, roof)], details, shadow=height)


def vehicle(cx, cy, length, width, theta, large: bool, rng: np.random.Generator) -> Spec:
    """A car (one body + windshield) or a truck (cab + trailer); the front points along +u."""
    if large:
        cab_len = 0.24 * length
        trailer = _rect(length - cab_len - 1.0, width, -(cab_len + 1.0) / 2)
        cab = _rect(cab_len, width * 0.92, length / 2 - cab_len / 2)
        parts = [
            (local_to_image(trailer, cx, cy, theta), TRAILER_RGB[rng.integers(4)]),
            (local_to_image(cab, cx, cy, theta), CAB_RGB[rng.integers(3)]),
        ]
        return Spec("large-vehicle", "truck", (cx, cy, length, width, theta), parts, shadow=2.5)
    body = (local_to_image(_rect(length, width), cx, cy, theta), CAR_RGB[rng.integers(len(CAR_RGB))])
    u = 0.18 * length
    glass = local_to_image(np.array([[u, -width / 2 + 1], [u, width / 2 - 1]]), cx, cy, theta)
    return Spec("small-vehicle", "car", (cx, cy, length, width, theta), [body], [(glass, (34, 38, 48), 1)], 1.5)


def ship(cx, cy, length, width, theta, large: bool, rng: np.random.Generator) -> Spec:
    """A hull with a pointed bow (+u); cargo ships are dark with coloured hatches, motorboats white."""
    bow = min(width * 0.9, length * 0.35)
    a, b = length / 2, width / 2
    hull = np.array([[a, 0], [a - bow, b], [-a, b], [-a, -b], [a - bow, -b]])
    if not large:
        parts = [(local_to_image(hull, cx, cy, theta), (232, 232, 226))]
        cabin = local_to_image(_rect(length * 0.25, width * 0.5, -length * 0.1), cx, cy, theta)
        return Spec("ship", "motorboat", (cx, cy, length, width, theta), parts, [(cabin, (150, 160, 170), -1)], 1.5)
    parts = [(local_to_image(hull, cx, cy, theta), (96, 52, 48) if rng.random() < 0.5 else (70, 74, 80))]
    n = max(2, int((length - bow) / (width * 0.9)))
    step = (length - bow - width * 0.5) / n
    details = []
    for k in range(n):
        u0 = -a + width * 0.35 + step * (k + 0.5)
        hatch = local_to_image(_rect(step * 0.8, width * 0.7, u0), cx, cy, theta)
        details.append((hatch, HATCH_RGB[rng.integers(4)], -1))
    return Spec("ship", "cargo-ship", (cx, cy, length, width, theta), parts, details, shadow=2.0)


def plane(cx, cy, length, span, theta, large: bool) -> Spec:
    """Fuselage (nose at +u), swept wings and tail plane; rbox = (length, wingspan)."""
    a, f = length / 2, length * 0.06
    fuselage = np.array([[a, 0], [a - 2 * f, f], [-a, f * 0.8], [-a, -f * 0.8], [a - 2 * f, -f]])
    s, root = span / 2, length * 0.18
    wing_l = np.array([[0.12 * length, f], [0.12 * length - root, f], [-0.22 * length, s], [-0.14 * length, s]])
    tail_s = 0.2 * length
    tail_l = np.array([[-0.36 * length, f], [-0.46 * length, f], [-a, tail_s], [-0.45 * length, tail_s]])
    flip = np.array([1.0, -1.0])
    polys = [fuselage, wing_l, wing_l * flip, tail_l, tail_l * flip]
    colour = (226, 228, 232) if large else (206, 210, 214)
    parts = [(local_to_image(p, cx, cy, theta), colour) for p in polys]
    sub = "wide-body" if large else "narrow-body"
    return Spec("plane", sub, (cx, cy, length, span, theta), parts, shadow=3.0)


def storage_tank(cx, cy, radius) -> Spec:
    """A white cylinder seen from above: disc + dark rim + inner ring; rbox = (2r, 2r, 0) before le90."""
    disc = circle_polygon(cx, cy, radius)
    details = [(circle_polygon(cx, cy, radius - 0.8), (150, 150, 146), 1)]
    if radius > 7:
        details.append((circle_polygon(cx, cy, radius * 0.55, 16), (196, 196, 192), 1))
    return Spec("storage-tank", "tank", (cx, cy, 2 * radius, 2 * radius, 0.0), [(disc, (228, 228, 222))], details, 3.0)


def make_difficult(spec: Spec, ground_rgb) -> Spec:
    """Low-contrast version (colours 65 % towards the ground colour, no shadow); flagged ``difficult``."""
    g = np.asarray(ground_rgb, float)

    def blend(c):
        return tuple(int(v) for v in 0.65 * g + 0.35 * np.asarray(c, float))

    parts = [(p, blend(c) if isinstance(c, tuple) else c) for p, c in spec.parts]
    details = [(p, blend(c), t) for p, c, t in spec.details]
    return Spec(spec.category, spec.subtype, spec.rbox, parts, details, shadow=0.0, difficult=True)
