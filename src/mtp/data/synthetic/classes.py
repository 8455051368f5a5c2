"""Class lists of the synthetic generator and of every official format it writes.

Generator classes
-----------------
* :data:`LAND_COVER_CLASSES` — the semantic map, LoveDA's 7 classes in LoveDA's order (ids 0..6).
* :data:`OBJECT_CLASSES` — instance categories (``SceneObject.category``).
* :data:`SCENE_CLASSES` — image-level labels, sorted alphabetically so that the index of a class equals
  its index among sorted folder names (EuroSAT-style ``ImageFolder`` readers).

``SceneObject.subtype`` refines a category: building -> house | industrial, small-vehicle -> car,
large-vehicle -> truck, ship -> motorboat | cargo-ship, plane -> narrow-body | wide-body, storage-tank -> tank.

Official lists (order = label index of the official/MTP readers, docs/CONVENTIONS.md#class-orders); the mapping of
generator objects onto them is :mod:`mtp.data.synthetic.class_maps`.
"""

from __future__ import annotations

LAND_COVER_CLASSES: tuple[str, ...] = (
    "background",
    "building",
    "road",
    "water",
    "barren",
    "forest",
    "agricultural",
)

OBJECT_CLASSES: tuple[str, ...] = (
    "building",
    "small-vehicle",
    "large-vehicle",
    "ship",
    "plane",
    "storage-tank",
)

SCENE_CLASSES: tuple[str, ...] = (
    "agricultural",
    "airport",
    "forest",
    "highway",
    "industrial",
    "residential",
    "water",
)

# EuroSAT-style folder names (CamelCase like the release); sorted order == SCENE_CLASSES order.
EUROSAT_CLASSES: tuple[str, ...] = tuple(name.capitalize() for name in SCENE_CLASSES)

DOTA_V1_CLASSES: tuple[str, ...] = (
    "plane",
    "baseball-diamond",
    "bridge",
    "ground-track-field",
    "small-vehicle",
    "large-vehicle",
    "ship",
    "tennis-court",
    "basketball-court",
    "storage-tank",
    "soccer-ball-field",
    "roundabout",
    "harbor",
    "swimming-pool",
    "helicopter",
)
DOTA_V2_CLASSES: tuple[str, ...] = (*DOTA_V1_CLASSES, "container-crane", "airport", "helipad")

# SAMRS SOTA: DOTA-2.0 classes in SAMRS order.
SOTA_CLASSES: tuple[str, ...] = (
    "large-vehicle",
    "swimming-pool",
    "helicopter",
    "bridge",
    "plane",
    "ship",
    "soccer-ball-field",
    "basketball-court",
    "ground-track-field",
    "small-vehicle",
    "baseball-diamond",
    "tennis-court",
    "roundabout",
    "storage-tank",
    "harbor",
    "container-crane",
    "airport",
    "helipad",
)

DIOR_CLASSES: tuple[str, ...] = (
    "airplane",
    "airport",
    "baseballfield",
    "basketballcourt",
    "bridge",
    "chimney",
    "expressway-service-area",
    "expressway-toll-station",
    "dam",
    "golffield",
    "groundtrackfield",
    "harbor",
    "overpass",
    "ship",
    "stadium",
    "storagetank",
    "tenniscourt",
    "trainstation",
    "vehicle",
    "windmill",
)
SIOR_CLASSES: tuple[str, ...] = DIOR_CLASSES

# SAMRS FAST / MTP FAIR1M-2.0 reader: hyphenated names, MTP's (alphabetical) order.
FAST_CLASSES: tuple[str, ...] = (
    "A220",
    "A321",
    "A330",
    "A350",
    "ARJ21",
    "Baseball-Field",
    "Basketball-Court",
    "Boeing737",
    "Boeing747",
    "Boeing777",
    "Boeing787",
    "Bridge",
    "Bus",
    "C919",
    "Cargo-Truck",
    "Dry-Cargo-Ship",
    "Dump-Truck",
    "Engineering-Ship",
    "Excavator",
    "Fishing-Boat",
    "Football-Field",
    "Intersection",
    "Liquid-Cargo-Ship",
    "Motorboat",
    "other-airplane",
    "other-ship",
    "other-vehicle",
    "Passenger-Ship",
    "Roundabout",
    "Small-Car",
    "Tennis-Court",
    "Tractor",
    "Trailer",
    "Truck-Tractor",
    "Tugboat",
    "Van",
    "Warship",
)


def fair1m_official_name(hyphenated: str) -> str:
    """FAST/MTP name -> the FAIR1M release xml spelling ("Small-Car" -> "Small Car"; other-* keep hyphens)."""
    return hyphenated if hyphenated.startswith("other-") else hyphenated.replace("-", " ")


# FAIR1M-2.0 release xml names (spaces), in the same order as FAST_CLASSES.
FAIR1M_CLASSES: tuple[str, ...] = tuple(fair1m_official_name(n) for n in FAST_CLASSES)
