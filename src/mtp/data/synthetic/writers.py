"""Registry of the dataset writers: ``write_dataset(format, root, n=..., size=..., seed=...)``.

``n`` is the number of training images (images per class for EuroSAT, tiles for SpaceNet/DOTA, release images
for xView, scenes for ``scene``); val and test splits get ``max(1, n // 2)`` images. ``size`` defaults to each
writer's default (256; EuroSAT 64; xView 640; scene 2048).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mtp.data.synthetic.scene_rasters import write_scene_dataset
from mtp.data.synthetic.writers_common import DatasetSummary
from mtp.data.synthetic.writers_detection import write_dior, write_dota, write_fair1m
from mtp.data.synthetic.writers_instances import write_coco, write_samrs
from mtp.data.synthetic.writers_segmentation import write_eurosat, write_levir_cd, write_loveda, write_spacenet
from mtp.data.synthetic.writers_xview import write_xview


def _splits(n: int, *names: str) -> dict[str, int]:
    return {names[0]: n, **{name: max(1, n // 2) for name in names[1:]}}


# format -> (writer, function n -> keyword arguments)
FORMATS: dict[str, tuple[Callable[..., DatasetSummary], Callable[[int], dict]]] = {
    "loveda": (write_loveda, lambda n: _splits(n, "n_train", "n_val", "n_test")),
    "spacenet": (write_spacenet, lambda n: {"n": n}),
    "eurosat": (write_eurosat, lambda n: {"n_per_class": n}),
    "levir-cd": (write_levir_cd, lambda n: _splits(n, "n_train", "n_val", "n_test")),
    "dota": (write_dota, lambda n: {"n": n}),
    "dior": (write_dior, lambda n: _splits(n, "n_train", "n_val", "n_test")),
    "fair1m": (write_fair1m, lambda n: _splits(n, "n_train", "n_val")),
    "coco": (write_coco, lambda n: _splits(n, "n_train", "n_val")),
    "samrs": (write_samrs, lambda n: _splits(n, "n_train", "n_val")),
    "xview": (write_xview, lambda n: {"n": n}),
    "scene": (write_scene_dataset, lambda n: {"n": n}),  # large GeoTIFF scenes (mtp predict-scene)
}


def write_dataset(
    fmt: str, root: str | Path, *, n: int = 8, size: int | None = None, seed: int = 0, **options
) -> DatasetSummary:
    """Write a synthetic dataset in format ``fmt`` (a ``FORMATS`` key) under ``root``; ``options`` are passed
    to the writer (e.g. ``layout='release'`` for LoveDA/EuroSAT, ``variant='sior'`` for SAMRS)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {sorted(FORMATS)}")
    writer, counts = FORMATS[fmt]
    kwargs = {**counts(n), "seed": seed, **options}
    if size is not None:
        kwargs["size"] = size
    return writer(Path(root), **kwargs)
