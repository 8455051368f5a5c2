"""Mapping whole satellite scenes: streamed, tiled inference over GeoTIFFs for every task family.

>>> from mtp.inference.scene import SceneOptions, load_task, predict_scene
>>> task = load_task("configs/segmentation/tiny-loveda-cpu.yaml", "last.ckpt")
>>> result = predict_scene(task, "scene.tif", "out/", options=SceneOptions(tile=512, overlap=128))
>>> result.paths["classes"]   # out/scene_classes.tif: uint8 classes, same CRS / transform / size as scene.tif

Modules: ``bands`` (band choice and scaling), ``reader`` (windowed reads), ``pair`` (change pairs), ``grid``
(tiles, steps, blend weights), ``stitch`` (streaming logits blend), ``merge`` (cross-tile NMS), ``predictors``
(per-task tile inference), ``geotiff`` / ``vectors`` / ``polygonize`` / ``dense`` / ``objects`` (outputs),
``state`` (resume), ``pipeline`` (reader threads, progress), ``runner`` (:func:`predict_scene`), ``parts`` and
``distributed`` (several processes), ``loading`` (config + checkpoint -> task).
"""

from mtp.inference.scene.loading import load_task, parse_model_overrides
from mtp.inference.scene.reader import SceneInputError
from mtp.inference.scene.runner import SceneInterrupted, SceneOptions, SceneResult, predict_scene

__all__ = [
    "SceneInputError",
    "SceneInterrupted",
    "SceneOptions",
    "SceneResult",
    "load_task",
    "parse_model_overrides",
    "predict_scene",
]
