"""Writer for the xView release format: ``xView_train.geojson`` + ``train_images/<n>.tif``.

The GeoJSON is a FeatureCollection with one Feature per object: a Polygon geometry (the box corners in
made-up lon/lat degrees) and the release's properties, of which the converters use ``bounds_imcoords``
("x1,y1,x2,y2", integer image pixels), ``type_id`` (xView class id) and ``image_id`` ("<n>.tif"). Boxes are the
rounded ``SceneObject.hbox`` and, as in the release, may reach outside the image. Generator objects map onto
xView type_ids with :func:`to_xview_type_id`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtp.data.synthetic.scenes import SceneGenerator, SceneObject
from mtp.data.synthetic.writers_common import OBJECT_SCENES, DatasetSummary, prepare, save_image

# (category, subtype or None for any) -> xView type_id (``scripts/prepare_xview_dataset.py``; 73 Building, 77 Facility,
# 18 Small Car, 23 Truck, 41 Motorboat, 51 Container Ship, 11 Fixed-wing Aircraft, 13 Cargo Plane,
# 86 Storage Tank).
XVIEW_TYPE_IDS: dict[tuple[str, str | None], int] = {
    ("building", "house"): 73,
    ("building", "industrial"): 77,
    ("small-vehicle", None): 18,
    ("large-vehicle", None): 23,
    ("ship", "motorboat"): 41,
    ("ship", "cargo-ship"): 51,
    ("plane", "narrow-body"): 11,
    ("plane", "wide-body"): 13,
    ("storage-tank", None): 86,
}

FIRST_IMAGE_NUMBER = 1000
_DEG_PER_PX = 3e-6  # ~0.3 m ground sampling near the equator


def to_xview_type_id(obj: SceneObject) -> int | None:
    """Generator object -> xView type_id (None: no counterpart)."""
    return XVIEW_TYPE_IDS.get((obj.category, obj.subtype), XVIEW_TYPE_IDS.get((obj.category, None)))


def xview_feature(box: np.ndarray, type_id: int, image_name: str, feature_id: int, origin: tuple[float, float]) -> dict:
    """One release-style Feature for integer box ``box`` (x1, y1, x2, y2) of image ``image_name``."""
    x1, y1, x2, y2 = (int(v) for v in box)
    lon0, lat0 = origin

    def lonlat(x: int, y: int) -> list[float]:
        return [round(lon0 + x * _DEG_PER_PX, 9), round(lat0 - y * _DEG_PER_PX, 9)]

    ring = [lonlat(x1, y1), lonlat(x2, y1), lonlat(x2, y2), lonlat(x1, y2), lonlat(x1, y1)]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "bounds_imcoords": f"{x1},{y1},{x2},{y2}",
            "edited_by": "mtp.synthetic",
            "cat_id": feature_id,
            "type_id": int(type_id),
            "ingest_time": "2017/07/24 12:49:09.118+00",
            "index_right": 0,
            "image_id": image_name,
            "feature_id": feature_id,
            "grade": 1,
        },
    }


def write_xview(root: str | Path, *, seed: int = 0, n: int = 4, size: int | tuple[int, int] = 640) -> DatasetSummary:
    """xView release layout: ``root/train_images/<n>.tif`` (RGB TIFF, n from 1000) and
    ``root/xView_train.geojson`` (:func:`xview_feature` per mapped object, image by image). Scenes: the
    object-rich scene classes; ``size`` (int or (H, W)) defaults to 640 so that the 416-px tiling has
    several tiles per image (release images are ~3000 px)."""
    root = Path(root)
    gen = SceneGenerator(seed, size, scene_classes=OBJECT_SCENES)
    summary = DatasetSummary("xview", root)
    features = []
    for k in range(n):
        scene = gen.scene(k)
        name = f"{FIRST_IMAGE_NUMBER + k}.tif"
        save_image(summary.add(root / "train_images" / name), scene.image)
        origin = (30.0 + 0.1 * k, 10.0)
        for obj in scene.objects:
            type_id = to_xview_type_id(obj)
            if type_id is not None:
                features.append(xview_feature(np.rint(obj.hbox), type_id, name, len(features), origin))
                summary.num_objects += 1
        summary.num_images += 1
    path = summary.add(root / "xView_train.geojson")
    prepare(path).write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return summary.finish()
