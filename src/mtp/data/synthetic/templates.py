"""Scene-class templates: what a scene of each ``SCENE_CLASSES`` entry contains.

The scene class is drawn first and decides the template, so it is learnable *by construction* from the
dominant land cover and objects:

* ``agricultural`` — >50 % striped fields (agricultural) on grass, a country road, a few farm buildings.
* ``airport`` — a wide runway and a taxiway (road), a concrete apron with parked planes and a terminal.
* ``forest`` — >60 % forest with grass/barren clearings, maybe a track and a few houses.
* ``highway`` — a dual carriageway (two one-way roads with dashed lane lines) with many vehicles.
* ``industrial`` — concrete yards, large flat-roofed (white/cyan/slate) buildings, storage tanks, trucks.
* ``residential`` — a street grid lined with small pitched-roof (red/brown/slate) houses and cars.
* ``water`` — a river or lake (30-60 % water) with motorboats and cargo ships.

Sizes are in pixels times ``Canvas.scale`` (about 0.5 m/px at scale 1); counts are per 256 x 256.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mtp.data.synthetic.layout import Canvas, allowed
from mtp.data.synthetic.placement import (
    APRON,
    LAND,
    YARD,
    add_buildings,
    add_parked,
    add_ships,
    add_tanks,
    add_vehicles,
    parallel_roads,
)
from mtp.data.synthetic.shapes import building, plane
from mtp.data.synthetic.textures import (
    BARREN,
    CONCRETE,
    FIELDS,
    FOREST,
    GRASS,
    INDUSTRIAL_ROOFS,
    RESIDENTIAL_ROOFS,
    SOIL,
    WATER,
)


def agricultural(c: Canvas) -> None:
    rng = c.rng
    angle = rng.uniform(0, math.pi)
    fw, fh = rng.uniform(40, 80), rng.uniform(30, 70)
    u, v = np.array([math.cos(angle), math.sin(angle)]), np.array([-math.sin(angle), math.cos(angle)])
    d = math.hypot(c.w, c.h) / 2
    kx, ky = int(d / fw) + 1, int(d / fh) + 1
    gap = rng.uniform(2, 4)
    for i in range(-kx, kx + 1):
        for j in range(-ky, ky + 1):
            x, y = np.array([c.w / 2, c.h / 2]) + u * fw * i + v * fh * j
            r = rng.random()
            mat = BARREN if r < 0.08 else GRASS if r < 0.15 else FIELDS[int(rng.integers(4))]
            c.rect(mat, x, y, fw - gap, fh - gap, angle)
    if rng.random() < 0.7:
        c.road(c.line_points(rng.uniform(0, c.w), rng.uniform(0, c.h), angle + rng.normal(0, 0.1)), rng.uniform(6, 9))
    add_buildings(c, c.count(0, 4), RESIDENTIAL_ROOFS, ((14, 30), (10, 18)), angle, LAND, flat=False, near_road=True)
    add_vehicles(c, c.count(0, 4), 0.5)


def airport(c: Canvas) -> None:
    rng, s = c.rng, c.scale
    c.blob(BARREN, rng.uniform(0.05, 0.2))
    angle = rng.uniform(0, math.pi)
    u, v = np.array([math.cos(angle), math.sin(angle)]), np.array([-math.sin(angle), math.cos(angle)])
    side = 1.0 if rng.random() < 0.5 else -1.0
    runway = np.array([c.w / 2, c.h / 2]) - side * v * rng.uniform(0.15, 0.3) * min(c.h, c.w)
    width = rng.uniform(22, 32) * s
    c.road(c.line_points(*runway, angle), width, dashes=8 * s)
    taxi = runway + side * v * (width / 2 + rng.uniform(14, 24) * s)
    c.road(c.line_points(*taxi, angle), rng.uniform(7, 10) * s)
    apron_h = rng.uniform(70, 110) * s
    apron = taxi + side * v * (apron_h / 2 + 6 * s)
    c.rect(CONCRETE, *apron, 2 * math.hypot(c.w, c.h), apron_h, angle)
    far = apron + side * v * (apron_h / 2 - 18 * s)
    along = rng.uniform(-0.3, 0.3) * min(c.h, c.w)
    c.place(building(*(far + u * along), rng.uniform(70, 110) * s, rng.uniform(20, 28) * s, angle,
                     int(INDUSTRIAL_ROOFS[rng.integers(3)]), 8 * s, True), APRON, margin=2)  # fmt: skip
    for _ in range(4 * c.count(3, 7)):
        p = c.random_point(APRON)
        if p is None:
            continue
        large = rng.random() < 0.35
        length = rng.uniform(48, 64) if large else rng.uniform(28, 40)
        heading = angle + side * math.pi / 2 + rng.normal(0, 0.2) + math.pi * (rng.random() < 0.3)
        if not c.quick_ok(p[0], p[1], length * s, length * s, heading, APRON):
            continue
        c.place(plane(p[0], p[1], length * s, length * rng.uniform(0.85, 0.98) * s, heading, large), APRON, 2)
    add_parked(c, c.count(0, 4), APRON, 0.4, angle)


def forest(c: Canvas) -> None:
    rng = c.rng
    c.ground[:] = FOREST
    c.blob(GRASS, rng.uniform(0.05, 0.2), cell=40)
    c.blob(BARREN, rng.uniform(0.0, 0.08), cell=40)
    if rng.random() < 0.6:
        pts = c.line_points(rng.uniform(0, c.w), rng.uniform(0, c.h), rng.uniform(0, math.pi), rng.uniform(0, 30))
        c.road(pts, rng.uniform(5, 8))
    add_buildings(c, c.count(0, 3), RESIDENTIAL_ROOFS, ((14, 26), (10, 16)), rng.uniform(0, math.pi), LAND,
                  flat=False, near_road=False)  # fmt: skip
    add_vehicles(c, c.count(0, 2), 0.3)


def highway(c: Canvas) -> None:
    rng, s = c.rng, c.scale
    c.blob(FOREST, rng.uniform(0.05, 0.2))
    c.blob(FIELDS[int(rng.integers(4))], rng.uniform(0.0, 0.2))
    angle = rng.uniform(0, math.pi)
    thick, median = rng.uniform(16, 22) * s, rng.uniform(5, 10) * s
    v = np.array([-math.sin(angle), math.cos(angle)])
    ctr = np.array([c.w / 2, c.h / 2]) + v * rng.uniform(-0.15, 0.15) * min(c.h, c.w)
    wave = rng.uniform(0, 25)
    base = c.line_points(*ctr, angle, wave=wave)
    for side in (-1.0, 1.0):
        pts = base + side * v * (thick + median) / 2
        c.road(pts if side > 0 else pts[::-1], thick, one_way=True, dashes=5 * s)
    if rng.random() < 0.5:
        c.road(c.line_points(rng.uniform(0, c.w), rng.uniform(0, c.h), angle + math.pi / 2), rng.uniform(7, 10) * s)
    add_vehicles(c, c.count(10, 30), 0.3)
    add_buildings(c, c.count(0, 3), RESIDENTIAL_ROOFS, ((14, 26), (10, 16)), angle, LAND, flat=False, near_road=False)


def industrial(c: Canvas) -> None:
    rng, s = c.rng, c.scale
    c.ground[:] = CONCRETE
    c.blob(SOIL, rng.uniform(0.05, 0.2))
    c.blob(BARREN, rng.uniform(0.0, 0.15))
    c.blob(GRASS, rng.uniform(0.0, 0.1))
    angle = rng.uniform(0, math.pi)
    parallel_roads(c, angle, rng.uniform(110, 170) * s, rng.uniform(10, 14) * s)
    if rng.random() < 0.6:
        parallel_roads(c, angle + math.pi / 2, rng.uniform(140, 220) * s, rng.uniform(10, 14) * s)
    add_buildings(c, c.count(3, 8), INDUSTRIAL_ROOFS, ((36, 80), (24, 50)), angle, YARD, flat=True, near_road=False)
    add_tanks(c, c.count(1, 2.5), YARD, angle)
    add_vehicles(c, c.count(2, 8), 0.7)
    add_parked(c, c.count(2, 8), allowed([CONCRETE]), 0.6, angle)


def residential(c: Canvas) -> None:
    rng, s = c.rng, c.scale
    c.blob(SOIL, rng.uniform(0.05, 0.2))
    c.blob(FOREST, rng.uniform(0.0, 0.1), cell=32)
    angle = rng.uniform(0, math.pi)
    parallel_roads(c, angle, rng.uniform(70, 110) * s, rng.uniform(7, 10) * s)
    if rng.random() < 0.7:
        parallel_roads(c, angle + math.pi / 2, rng.uniform(90, 160) * s, rng.uniform(7, 10) * s)
    roofs, size = RESIDENTIAL_ROOFS, ((14, 28), (10, 18))
    add_buildings(c, c.count(25, 45), roofs, size, angle, LAND, flat=False, near_road=True)
    add_buildings(c, c.count(5, 15), roofs, size, angle, LAND, flat=False, near_road=False)
    add_vehicles(c, c.count(4, 12), 0.1)


def water(c: Canvas) -> None:
    rng = c.rng
    c.blob(FOREST, rng.uniform(0.1, 0.3))
    c.blob(BARREN, rng.uniform(0.0, 0.1))
    heading = None
    if rng.random() < 0.5:
        heading = rng.uniform(0, math.pi)
        pts = c.line_points(rng.uniform(0.3, 0.7) * c.w, rng.uniform(0.3, 0.7) * c.h, heading, rng.uniform(0, 30))
        c.road(pts, rng.uniform(0.25, 0.45) * min(c.h, c.w), material=WATER)
    else:
        c.blob(WATER, rng.uniform(0.35, 0.6), cell=80)
    add_ships(c, c.count(3, 10), 0.3, heading)
    add_buildings(c, c.count(0, 3), RESIDENTIAL_ROOFS, ((14, 26), (10, 16)), rng.uniform(0, math.pi), LAND,
                  flat=False, near_road=False)  # fmt: skip


TEMPLATES: dict[str, Callable[[Canvas], None]] = {
    "agricultural": agricultural,
    "airport": airport,
    "forest": forest,
    "highway": highway,
    "industrial": industrial,
    "residential": residential,
    "water": water,
}
