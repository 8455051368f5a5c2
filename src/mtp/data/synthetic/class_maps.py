"""Generator objects -> the class names of each official format (``None``: the format has no such class and the
object is not written)."""

from __future__ import annotations

from mtp.data.synthetic.classes import DOTA_V1_CLASSES, fair1m_official_name
from mtp.data.synthetic.scenes import SceneObject

__all__ = ["to_dior", "to_dota", "to_fair1m", "to_fast"]


def to_dota(obj: SceneObject) -> str | None:
    """Generator object -> DOTA-v1.0 / SOTA class name (buildings have none)."""
    return obj.category if obj.category in DOTA_V1_CLASSES else None


def to_dior(obj: SceneObject) -> str | None:
    """Generator object -> DIOR / DIOR-R / SIOR class name."""
    return {
        "small-vehicle": "vehicle",
        "large-vehicle": "vehicle",
        "ship": "ship",
        "plane": "airplane",
        "storage-tank": "storagetank",
    }.get(obj.category)


def to_fast(obj: SceneObject) -> str | None:
    """Generator object -> FAST (hyphenated FAIR1M) class name; ships and planes split by ``subtype``
    (cargo-ship -> Dry-Cargo-Ship, motorboat -> Motorboat, wide-body -> Boeing747, narrow-body -> Boeing737)."""
    if obj.category == "small-vehicle":
        return "Small-Car"
    if obj.category == "large-vehicle":
        return "Cargo-Truck"
    if obj.category == "ship":
        return "Dry-Cargo-Ship" if obj.subtype == "cargo-ship" else "Motorboat"
    if obj.category == "plane":
        return "Boeing747" if obj.subtype == "wide-body" else "Boeing737"
    return None  # FAIR1M has no building or storage-tank class


def to_fair1m(obj: SceneObject) -> str | None:
    """Generator object -> FAIR1M-2.0 release xml name ("Small Car", "Dry Cargo Ship", ...)."""
    name = to_fast(obj)
    return None if name is None else fair1m_official_name(name)
