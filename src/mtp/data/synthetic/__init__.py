"""Seeded procedural aerial-like scenes with exact labels, and writers for the official dataset formats.

Generation: :class:`SceneGenerator` (``scenes.py``) -> :class:`Scene` / :class:`SceneObject`.
Class lists: ``classes.py``. Writers: ``writers_*.py``; :func:`write_dataset` dispatches by format name.
"""

from mtp.data.synthetic.classes import (
    DIOR_CLASSES,
    DOTA_V1_CLASSES,
    DOTA_V2_CLASSES,
    EUROSAT_CLASSES,
    FAIR1M_CLASSES,
    FAST_CLASSES,
    LAND_COVER_CLASSES,
    OBJECT_CLASSES,
    SCENE_CLASSES,
    SIOR_CLASSES,
    SOTA_CLASSES,
)
from mtp.data.synthetic.geometry import clockwise_from_top_left, rbox_corners, regularize_le90
from mtp.data.synthetic.scene_rasters import SceneFiles, write_scene_dataset, write_scene_geotiff
from mtp.data.synthetic.scenes import Scene, SceneGenerator, SceneObject, land_cover_fractions
from mtp.data.synthetic.writers import FORMATS, write_dataset
from mtp.data.synthetic.writers_common import DatasetSummary
from mtp.data.synthetic.writers_detection import write_dior, write_dota, write_fair1m
from mtp.data.synthetic.writers_instances import write_coco, write_samrs
from mtp.data.synthetic.writers_segmentation import write_eurosat, write_levir_cd, write_loveda, write_spacenet
from mtp.data.synthetic.writers_xview import write_xview

__all__ = [
    "DIOR_CLASSES",
    "DOTA_V1_CLASSES",
    "DOTA_V2_CLASSES",
    "EUROSAT_CLASSES",
    "FAIR1M_CLASSES",
    "FAST_CLASSES",
    "FORMATS",
    "LAND_COVER_CLASSES",
    "OBJECT_CLASSES",
    "SCENE_CLASSES",
    "SIOR_CLASSES",
    "SOTA_CLASSES",
    "DatasetSummary",
    "Scene",
    "SceneFiles",
    "SceneGenerator",
    "SceneObject",
    "clockwise_from_top_left",
    "land_cover_fractions",
    "rbox_corners",
    "regularize_le90",
    "write_coco",
    "write_dataset",
    "write_dior",
    "write_dota",
    "write_eurosat",
    "write_fair1m",
    "write_levir_cd",
    "write_loveda",
    "write_samrs",
    "write_scene_dataset",
    "write_scene_geotiff",
    "write_spacenet",
    "write_xview",
]
