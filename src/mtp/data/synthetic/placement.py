"""Object placement helpers used by the scene templates (sizes in pixels at ``Canvas.scale`` = 1).

Every helper samples a candidate pose, pre-checks it cheaply (``Canvas.quick_ok``) and lets ``Canvas.place``
accept or reject it; helpers give up after a fixed number of tries, so counts are upper bounds.
"""

from __future__ import annotations

import math

import numpy as np

from mtp.data.synthetic.layout import Canvas, allowed
from mtp.data.synthetic.shapes import Spec, building, make_difficult, ship, storage_tank, vehicle
from mtp.data.synthetic.textures import BARREN, CONCRETE, FIELDS, GRASS, ROAD, SOIL, WATER, material_rgb

LAND = allowed([GRASS, SOIL, BARREN, *FIELDS])
YARD = allowed([CONCRETE, SOIL, BARREN, GRASS])
ON_ROAD = allowed([ROAD])
ON_WATER = allowed([WATER])
APRON = allowed([CONCRETE])


def _vehicle_size(rng: np.random.Generator, large: bool) -> tuple[float, float]:
    """(length, width) in px at scale 1: trucks 16-26 x 6-7.5, cars 9-12 x 4.5-5.5."""
    return (rng.uniform(16, 26), rng.uniform(6, 7.5)) if large else (rng.uniform(9, 12), rng.uniform(4.5, 5.5))


def _ship_size(rng: np.random.Generator, large: bool) -> tuple[float, float]:
    """(length, width) in px at scale 1: cargo ships 40-72 x 10-15, motorboats 12-28 x 5-8."""
    return (rng.uniform(40, 72), rng.uniform(10, 15)) if large else (rng.uniform(12, 28), rng.uniform(5, 8))


def _maybe_difficult(c: Canvas, spec: Spec, p: float = 0.08) -> Spec:
    if c.rng.random() >= p:
        return spec
    cx, cy = spec.rbox[:2]
    return make_difficult(spec, material_rgb(int(c.ground[int(cy), int(cx)])))


def add_vehicles(c: Canvas, n: int, large_frac: float) -> None:
    """Up to ``n`` cars/trucks in road lanes."""
    s, rng = c.scale, c.rng
    for _ in range(3 * n):
        if n <= 0:
            return
        large = rng.random() < large_frac
        length, width = _vehicle_size(rng, large)
        pos = c.on_road(width * s)
        if pos is not None:
            x, y, heading = pos
            if not c.quick_ok(x, y, length * s, width * s, heading, ON_ROAD):
                continue
            spec = vehicle(x, y, length * s, width * s, heading + rng.normal(0, 0.03), large, rng)
            n -= c.place(_maybe_difficult(c, spec), ON_ROAD, margin=1)


def add_parked(c: Canvas, n: int, ok: np.ndarray, large_frac: float, angle: float) -> None:
    """Up to ``n`` vehicles parked on ``ok`` ground, aligned with ``angle`` (or across it)."""
    s, rng = c.scale, c.rng
    for _ in range(3 * n):
        if n <= 0:
            return
        large = rng.random() < large_frac
        length, width = _vehicle_size(rng, large)
        p = c.random_point(ok)
        if p is not None:
            heading = angle + rng.integers(4) * math.pi / 2
            if not c.quick_ok(p[0], p[1], length * s, width * s, heading, ok):
                continue
            spec = vehicle(p[0], p[1], length * s, width * s, heading, large, rng)
            n -= c.place(_maybe_difficult(c, spec), ok, margin=1)


def add_buildings(c: Canvas, n: int, roofs, size, angle: float, ok: np.ndarray, *, flat: bool, near_road: bool):
    """Up to ``n`` buildings of size ``size`` = ((w_lo, w_hi), (h_lo, h_hi)), aligned with ``angle`` (+-3 deg,
    sometimes turned by 90 deg); ``near_road`` puts them in rows along the roads."""
    s, rng = c.scale, c.rng
    for _ in range(4 * n):
        if n <= 0:
            return
        w, h = rng.uniform(*size[0]) * s, rng.uniform(*size[1]) * s
        theta = angle + rng.normal(0, 0.05) + (math.pi / 2 if rng.random() < 0.2 else 0.0)
        if near_road and c.roads:
            road = c.roads[rng.integers(len(c.roads))]
            i = rng.integers(len(road.points) - 1)
            (ax, ay), (bx, by) = road.points[i], road.points[i + 1]
            heading = math.atan2(by - ay, bx - ax)
            dist = (road.thickness / 2 + rng.uniform(3, 9) * s + h / 2) * (1.0 if rng.random() < 0.5 else -1.0)
            t = rng.random()
            x = ax + t * (bx - ax) - math.sin(heading) * dist
            y = ay + t * (by - ay) + math.cos(heading) * dist
            theta = heading + rng.normal(0, 0.04)
        else:
            p = c.random_point(ok)
            if p is None:
                continue
            x, y = p
        if not c.quick_ok(x, y, w, h, theta, ok):
            continue
        height = rng.uniform(5, 10) * s if flat else rng.uniform(2.5, 5) * s
        spec = building(x, y, w, h, theta, int(roofs[rng.integers(len(roofs))]), height, flat)
        n -= c.place(spec, ok, margin=2)


def add_ships(c: Canvas, n: int, large_frac: float, heading: float | None) -> None:
    s, rng = c.scale, c.rng
    for _ in range(4 * n):
        if n <= 0:
            return
        large = rng.random() < large_frac
        length, width = _ship_size(rng, large)
        p = c.random_point(ON_WATER)
        if p is not None:
            if heading is None:
                theta = rng.uniform(-math.pi, math.pi)
            else:
                theta = heading + rng.normal(0, 0.15) + math.pi * (rng.random() < 0.5)
            if not c.quick_ok(p[0], p[1], length * s, width * s, theta, ON_WATER):
                continue
            spec = ship(p[0], p[1], length * s, width * s, theta, large, rng)
            n -= c.place(_maybe_difficult(c, spec, 0.06), ON_WATER, margin=3)


def add_tanks(c: Canvas, clusters: int, ok: np.ndarray, angle: float) -> None:
    """Clusters of storage tanks on a rotated grid."""
    s, rng = c.scale, c.rng
    u, v = np.array([math.cos(angle), math.sin(angle)]), np.array([-math.sin(angle), math.cos(angle)])
    for _ in range(clusters):
        p = c.random_point(ok)
        if p is None:
            continue
        r = rng.uniform(6, 16) * s
        step = 2 * r + rng.uniform(3, 8) * s
        nx, ny = rng.integers(1, 4), rng.integers(1, 4)
        for i in range(nx):
            for j in range(ny):
                x, y = np.array(p) + u * step * i + v * step * j
                c.place(storage_tank(x, y, r * rng.uniform(0.93, 1.0)), ok, margin=2)


def parallel_roads(c: Canvas, angle: float, spacing: float, thickness: float, dashes: float = 0.0) -> None:
    """Straight parallel roads at ``angle`` every ``spacing`` px covering the image."""
    u = np.array([-math.sin(angle), math.cos(angle)])
    ctr = np.array([c.w / 2, c.h / 2]) + u * c.rng.uniform(-spacing / 2, spacing / 2)
    k = int(math.hypot(c.w, c.h) / spacing / 2) + 1
    for i in range(-k, k + 1):
        x, y = ctr + u * spacing * i
        c.road(c.line_points(x, y, angle), thickness, dashes=dashes)
