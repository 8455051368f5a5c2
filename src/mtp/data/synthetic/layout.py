"""The layout canvas: ground material map, roads, occupancy and object placement.

A :class:`Canvas` is filled by a scene template (``templates.py``): ground materials first (blobs, rectangles,
roads), then objects placed by rejection sampling. Objects never overlap each other (an occupancy map, with a
clearance margin) and sit only on allowed ground materials, so every instance mask is exactly the visible
object and the semantic ``building`` pixels are exactly the union of the building masks.
Coordinates: pixels, x right, y down, pixel centres at integers; H, W = image height and width.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from mtp.data.synthetic.shapes import FX, FX_SHIFT, Spec
from mtp.data.synthetic.textures import NUM_MATERIALS, ROAD

MARKING_RGB = (232, 232, 222)


def allowed(materials: Iterable[int]) -> np.ndarray:
    """Boolean lookup (NUM_MATERIALS,) that is True for the given materials."""
    lut = np.zeros(NUM_MATERIALS, bool)
    lut[list(materials)] = True
    return lut


@dataclass
class Road:
    """A road centre line ``points`` (N, 2) px with its ``thickness`` (px); ``one_way`` carriageways put
    vehicles on both lanes in the polyline direction, two-way roads drive on the right."""

    points: np.ndarray
    thickness: float
    one_way: bool = False


class Canvas:
    """Mutable layout of one scene (see module docstring)."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, scale: float, base: int) -> None:
        self.rng, self.h, self.w, self.scale = rng, height, width, scale
        self.area = height * width / 65536.0  # object counts are given per 256 x 256
        self.ground = np.full((height, width), base, np.uint8)
        self.occ = np.zeros((height, width), np.uint8)
        self.roads: list[Road] = []
        self.markings: list[np.ndarray] = []  # fixed-point polylines painted on roads
        self.specs: list[Spec] = []

    # -- ground -----------------------------------------------------------------------------------------------
    def count(self, low: float, high: float) -> int:
        """An object count drawn in [low, high] per 256 x 256 and scaled to the canvas area."""
        return round(float(self.rng.uniform(low, high)) * self.area)

    def blob(self, material: int, frac: float, cell: float = 48.0, over: np.ndarray | None = None) -> np.ndarray:
        """Paint smooth random blobs covering about ``frac`` of the image (only over materials ``over``)."""
        gh, gw = max(2, round(self.h / cell)) + 1, max(2, round(self.w / cell)) + 1
        grid = self.rng.standard_normal((gh, gw)).astype(np.float32)
        thr = np.quantile(grid, 1.0 - frac)
        small = cv2.resize(grid, (max(2, self.w // 4), max(2, self.h // 4)), interpolation=cv2.INTER_CUBIC)
        field = cv2.resize(small, (self.w, self.h), interpolation=cv2.INTER_LINEAR)
        mask = field > thr
        if over is not None:
            mask &= over[self.ground]
        self.ground[mask] = material
        return mask

    def rect(self, material: int, cx: float, cy: float, w: float, h: float, theta: float) -> np.ndarray:
        """Paint a rotated rectangle; returns its corners (4, 2)."""
        c, s = math.cos(theta), math.sin(theta)
        a, b = np.array([w / 2 * c, w / 2 * s]), np.array([-h / 2 * s, h / 2 * c])
        ctr = np.array([cx, cy])
        poly = np.stack([ctr + a + b, ctr + a - b, ctr - a - b, ctr - a + b])
        cv2.fillConvexPoly(self.ground, np.round(poly * FX).astype(np.int32), int(material), cv2.LINE_8, FX_SHIFT)
        return poly

    def line_points(self, x: float, y: float, angle: float, wave: float = 0.0, n: int = 24) -> np.ndarray:
        """Centre line (n, 2) through (x, y) at ``angle`` crossing the whole image, with a sinusoidal bend of
        amplitude ``wave`` px (0 = straight)."""
        d = math.hypot(self.h, self.w) * 0.75
        t = np.linspace(-d, d, n)
        u = np.array([math.cos(angle), math.sin(angle)])
        nrm = np.array([-u[1], u[0]])
        bend = wave * np.sin(t / d * math.pi * self.rng.uniform(0.6, 1.4) + self.rng.uniform(0, 2 * math.pi))
        return np.array([x, y]) + t[:, None] * u + bend[:, None] * nrm

    def road(self, points: np.ndarray, thickness: float, *, material: int = ROAD, one_way=False, dashes=0.0):
        """Draw a road polyline; ``dashes`` > 0 paints a dashed centre line with that dash length (px)."""
        fx = np.round(points * FX).astype(np.int32)
        cv2.polylines(self.ground, [fx], False, int(material), max(1, round(thickness)), cv2.LINE_8, FX_SHIFT)
        if material == ROAD:
            self.roads.append(Road(points, thickness, one_way))
        if dashes > 0:
            seg = np.diff(points, axis=0)
            length = np.concatenate([[0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])
            s0 = np.arange(0, length[-1] - dashes, 2 * dashes)
            ends = np.stack([s0, s0 + dashes], axis=1)  # (n, 2) arc lengths of each dash
            xy = np.stack([np.interp(ends, length, points[:, k]) for k in range(2)], axis=-1)  # (n, 2, 2)
            self.markings.extend(np.round(xy * FX).astype(np.int32))

    # -- objects ----------------------------------------------------------------------------------------------
    def place(self, spec: Spec, ok: np.ndarray, margin: int = 1) -> bool:
        """Add ``spec`` if it is inside the image, every pixel under it (dilated by ``margin`` px) is free and
        on a material with ``ok[material]``; marks the dilated footprint as occupied. Uses the exact (not inset)
        parts, a slightly conservative footprint."""
        parts_fx = [np.round(p * FX).astype(np.int32) for p, _ in spec.parts]
        allfx = np.concatenate(parts_fx)
        x0, y0 = allfx.min(axis=0) // FX - margin - 1
        x1, y1 = allfx.max(axis=0) // FX + margin + 2
        if x0 < 0 or y0 < 0 or x1 > self.w or y1 > self.h:
            return False
        crop = np.zeros((y1 - y0, x1 - x0), np.uint8)
        origin = np.array([x0, y0], np.int32) * FX
        for p in parts_fx:
            cv2.fillConvexPoly(crop, p - origin, 1, cv2.LINE_8, FX_SHIFT)
            if margin:
                cv2.polylines(crop, [p - origin], True, 1, 2 * margin + 1, cv2.LINE_8, FX_SHIFT)
        m = crop.view(bool)
        if self.occ[y0:y1, x0:x1][m].any() or not ok[self.ground[y0:y1, x0:x1][m]].all():
            return False
        self.occ[y0:y1, x0:x1] |= crop
        self.specs.append(spec)
        return True

    def quick_ok(self, cx: float, cy: float, w: float, h: float, theta: float, ok: np.ndarray) -> bool:
        """Cheap pre-check of a w x h box (centre and corners inside, free, on allowed ground)."""
        c, s = math.cos(theta) / 2, math.sin(theta) / 2
        for du, dv in ((0.0, 0.0), (1.0, 1.0), (1.0, -1.0), (-1.0, -1.0), (-1.0, 1.0)):
            x = cx + du * w * c - dv * h * s
            y = cy + du * w * s + dv * h * c
            if not (0 <= x < self.w and 0 <= y < self.h):
                return False
            yi, xi = int(y), int(x)
            if self.occ[yi, xi] or not ok[self.ground[yi, xi]]:
                return False
        return True

    def random_point(self, ok: np.ndarray, tries: int = 20) -> tuple[float, float] | None:
        """A uniformly random pixel whose ground material satisfies ``ok`` (None if not found)."""
        for _ in range(tries):
            x, y = self.rng.uniform(0, self.w - 1), self.rng.uniform(0, self.h - 1)
            if ok[self.ground[int(y), int(x)]]:
                return x, y
        return None

    def on_road(self, vehicle_width: float) -> tuple[float, float, float] | None:
        """A lane position (x, y, heading) on a random road: right-hand lane of two-way roads, either lane of
        one-way carriageways; heading follows the local road direction."""
        if not self.roads:
            return None
        road = self.roads[self.rng.integers(len(self.roads))]
        pts = road.points
        i = self.rng.integers(len(pts) - 1)
        a, b = pts[i], pts[i + 1]
        p = a + self.rng.random() * (b - a)
        heading = math.atan2(b[1] - a[1], b[0] - a[0])
        lane = road.thickness / 4 if road.thickness / 2 > vehicle_width + 1 else 0.0
        side = 1.0 if self.rng.random() < 0.5 else -1.0
        if not road.one_way and side < 0:
            heading += math.pi
        nrm = np.array([-math.sin(heading), math.cos(heading)])
        x, y = p + nrm * lane * (side if road.one_way else 1.0)
        if not (0 <= x < self.w and 0 <= y < self.h):
            return None
        return float(x), float(y), heading
