"""Outputs of the detection families: ``<name>_objects.geojson`` plus pixel-coordinate files.

* rotated detection: every object is a closed 4-corner polygon (the rbox corners, ``rbox2poly`` order) in the
  scene CRS with ``class``, ``class_id``, ``score`` and ``pixel_rbox`` (cx, cy, w, h, θ: scene pixels, radians,
  le90); at the end ``<name>_task1/Task1_<class>.txt`` (DOTA Task1 lines ``<name> score x1 y1 ... x4 y4`` in scene
  pixels, :func:`mtp.metrics.dota.submission.write_dota_task1`).
* horizontal detection / instance segmentation: the box as a polygon (or the mask outline, a (Multi)Polygon,
  for Mask R-CNN) with ``class``, ``class_id``, ``score``, ``pixel_bbox`` (x1, y1, x2, y2); at the end
  ``<name>_coco.json``: ``images`` (the scene), ``categories`` (0-based ids, the class order), ``annotations``
  with ``bbox`` [x, y, w, h], ``score`` and, for masks, ``segmentation`` polygons, all in scene pixels.

Cut objects: a detection whose box touches an inner edge of its tile (within ``CUT_EPS`` pixels) is dropped when
the neighbouring tile across that edge contains the whole box: that tile saw everything this one saw of the object,
and more, so nothing is lost (``drop_cut=False`` keeps them). Then detections are merged across tile borders by
:class:`mtp.inference.scene.merge.RollingMerge` (the DOTA rule: class-wise rotated / horizontal NMS at ``iou``)
and written as soon as they are final. Without the first step a thin slice of an object cut by a tile edge has a
small IoU with the whole object and survives the NMS as a duplicate. The pixel files are built from the GeoJSON at
the end, so a resumed run needs nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtp.inference.outputs import write_json
from mtp.inference.scene.dense import PartSpec
from mtp.inference.scene.grid import TileGrid
from mtp.inference.scene.merge import Detections, RollingMerge, nms_keep
from mtp.inference.scene.predictors import TaskInfo
from mtp.inference.scene.reader import SceneGeometry
from mtp.inference.scene.vectors import GeoJSONWriter, pixel_to_crs, read_features
from mtp.metrics.dota.submission import write_dota_task1
from mtp.ops import rbox2hbox, rbox2poly

__all__ = ["ObjectsOutput", "cut_by_inner_edge", "write_pixel_files"]

CUT_EPS = 2.0


def cut_by_inner_edge(hboxes: Tensor, grid: TileGrid, row: int, col: int, eps: float = CUT_EPS) -> Tensor:
    """(N,) bool: which (N, 4) xyxy boxes (tile pixels) of the tile at scene ``(row, col)`` to drop as cut objects.

    Per axis: a box touching the right (bottom) inner edge is dropped when the next tile contains it; a box touching
    the left (top) inner edge is dropped when the previous tile contains it without touching that tile's far edge
    (so that the previous tile keeps its copy: two tiles never drop each other's copies of one object).
    """
    t = grid.tile
    x1, y1, x2, y2 = (hboxes[:, i] for i in range(4))
    drop = torch.zeros(len(hboxes), dtype=torch.bool)
    for starts, origin, lo, hi in ((grid.col_starts, col, x1, x2), (grid.row_starts, row, y1, y2)):
        k = starts.index(origin)
        if k + 1 < len(starts):  # next tile starts at starts[k + 1] - origin (tile pixels)
            drop |= (hi >= t - eps) & (lo >= starts[k + 1] - origin)
        if k > 0:  # previous tile ends at starts[k - 1] + t - origin
            drop |= (lo <= eps) & (hi < starts[k - 1] + t - origin - eps)
    return drop


def _shift_geometry(geom: dict | None, dx: float, dy: float) -> dict | None:
    if geom is None:
        return None
    def ring(r):
        return [[x + dx, y + dy] for x, y in r]
    if geom["type"] == "Polygon":
        return {"type": "Polygon", "coordinates": [ring(r) for r in geom["coordinates"]]}
    return {"type": "MultiPolygon", "coordinates": [[ring(r) for r in p] for p in geom["coordinates"]]}


def _to_crs(geom: dict, transform) -> dict:
    def ring(r):
        return pixel_to_crs(transform, np.asarray(r), centres=False).tolist()
    if geom["type"] == "Polygon":
        return {"type": "Polygon", "coordinates": [ring(r) for r in geom["coordinates"]]}
    return {"type": "MultiPolygon", "coordinates": [[ring(r) for r in p] for p in geom["coordinates"]]}


def write_features(writer: GeoJSONWriter, dets: Detections, info: TaskInfo, scene: SceneGeometry) -> None:
    """Append ``dets`` (scene pixels) to ``writer`` as features in the scene CRS (see the module docstring)."""
    if not len(dets):
        return
    rotated = dets.boxes.shape[1] == 5
    if rotated:
        corners = rbox2poly(dets.boxes).reshape(-1, 4, 2).numpy()
    else:
        x1, y1, x2, y2 = dets.boxes.numpy().T
        corners = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x2, y2], 1),
                            np.stack([x1, y2], 1)], 1)  # fmt: skip
    rings = pixel_to_crs(scene.transform, np.concatenate([corners, corners[:, :1]], 1), centres=True)
    for k in range(len(dets)):
        label = int(dets.labels[k])
        props = {"class": info.class_names[label], "class_id": label, "score": round(float(dets.scores[k]), 5)}
        box = [round(v, 4) for v in dets.boxes[k].tolist()]
        props["pixel_rbox" if rotated else "pixel_bbox"] = box
        mask = dets.payload[k] if dets.payload else None
        geom = _to_crs(mask, scene.transform) if mask else {"type": "Polygon", "coordinates": [rings[k].tolist()]}
        if mask:
            props["pixel_mask"] = mask
        writer.add(geom, props)


class ObjectsOutput:
    """Detection outputs for one part (see the module docstring).

    Args:
        limit_high: first scene row below the rows of the previous part's tiles (None for the first part).
        iou: merge NMS threshold. score_thr: detections below it are dropped before merging.
        drop_cut: drop detections cut by an inner tile edge that the neighbouring tile sees whole.
        resume: ``{"geojson": [offset, count], "pending": Detections json}`` of a checkpoint.
    """

    def __init__(self, info: TaskInfo, grid: TileGrid, scene: SceneGeometry, part: PartSpec, *, first_row: int,
                 iou: float = 0.1, score_thr: float = 0.0, drop_cut: bool = True,
                 resume: dict | None = None) -> None:  # fmt: skip
        self.info, self.grid, self.scene, self.part = info, grid, scene, part
        self.box_dim = 5 if info.family == "rotated_detection" else 4
        limit_high = grid.step_bottom(part.step_start - 1) if part.step_start > 0 else None
        self.merge = RollingMerge(self.box_dim, iou, margin=max(64.0, grid.tile / 4), limit_high=limit_high)
        self.score_thr, self.drop_cut = score_thr, drop_cut
        self.paths = {"objects": Path(f"{part.prefix}_objects.geojson")}
        self.deferred_path = Path(f"{part.prefix}_deferred.json")
        geo_resume = tuple(resume["geojson"]) if resume else None
        self.features = GeoJSONWriter(self.paths["objects"], scene.crs, self.paths["objects"].stem, resume=geo_resume)
        if resume:
            self.merge.pending = Detections.from_json(resume["pending"], self.box_dim)
        self.current_row = first_row

    def add(self, row: int, col: int, result: dict | None, valid: np.ndarray) -> None:
        if result is None or not len(result["scores"]):
            return
        ok = result["scores"] >= self.score_thr
        if self.drop_cut:
            boxes = result["boxes"].double()
            ok &= ~cut_by_inner_edge(rbox2hbox(boxes) if self.box_dim == 5 else boxes, self.grid, row, col)
        keep = ok.nonzero().flatten()
        boxes = result["boxes"][keep].double().clone()
        if self.box_dim == 5:
            boxes[:, 0] += col
            boxes[:, 1] += row
        else:
            boxes += torch.tensor([col, row, col, row], dtype=torch.float64)
        payload = [_shift_geometry(result["polygons"][i], col, row) for i in keep.tolist()] if "polygons" in result \
            else []  # fmt: skip
        self.merge.add(Detections(boxes, result["scores"][keep].float(), result["labels"][keep].long(), payload))

    def finish_row(self) -> None:
        r = self.current_row
        limit = self.grid.final_end(r) if r + 1 < self.grid.n_steps else None
        write_features(self.features, self.merge.close(limit), self.info, self.scene)
        self.current_row += 1

    def checkpoint(self) -> dict:
        return {"next_row": self.current_row, "geojson": list(self.features.checkpoint()),
                "pending": self.merge.pending.to_json()}  # fmt: skip

    def close(self, interrupted: bool = False) -> None:
        if not interrupted and not self.part.whole:
            self.deferred_path.write_text(json.dumps(self.merge.pending.to_json()))
        elif not interrupted and len(self.merge.pending):
            write_features(self.features, self.merge.close(None), self.info, self.scene)
        self.features.close()


def merge_deferred(writer: GeoJSONWriter, deferred: list[Path], info: TaskInfo, scene: SceneGeometry,
                   iou: float) -> None:  # fmt: skip
    """Final NMS over the detections the parts could not decide alone; the kept ones are appended to ``writer``."""
    box_dim = 5 if info.family == "rotated_detection" else 4
    dets = Detections.cat([Detections.from_json(json.loads(p.read_text()), box_dim) for p in deferred], box_dim)
    write_features(writer, dets.select(nms_keep(dets, iou)), info, scene)


def write_pixel_files(objects: Path, prefix: Path, info: TaskInfo, scene: SceneGeometry, name: str) -> dict[str, Path]:
    """Task1 folder (rotated) or COCO json (horizontal) from the final ``objects`` GeoJSON."""
    features = read_features(objects, objects.stat().st_size)
    labels = np.array([f["properties"]["class_id"] for f in features], np.int64)
    scores = np.array([f["properties"]["score"] for f in features], np.float64)
    if info.family == "rotated_detection":
        boxes = torch.tensor([f["properties"]["pixel_rbox"] for f in features], dtype=torch.float64).reshape(-1, 5)
        folder = Path(f"{prefix}_task1")
        write_dota_task1(folder, {name: {"rboxes": boxes, "scores": scores, "labels": labels}}, info.class_names)
        return {"task1": folder}
    annotations = []
    for k, f in enumerate(features):
        x1, y1, x2, y2 = f["properties"]["pixel_bbox"]
        ann = {"id": k + 1, "image_id": 1, "category_id": int(labels[k]), "bbox": [x1, y1, x2 - x1, y2 - y1],
               "area": (x2 - x1) * (y2 - y1), "score": float(scores[k]), "iscrowd": 0}  # fmt: skip
        mask = f["properties"].get("pixel_mask")
        if mask:
            polys = [mask["coordinates"]] if mask["type"] == "Polygon" else mask["coordinates"]
            ann["segmentation"] = [np.asarray(p[0]).reshape(-1).round(2).tolist() for p in polys]
        annotations.append(ann)
    coco = {"images": [{"id": 1, "file_name": name, "width": scene.width, "height": scene.height}],
            "categories": [{"id": i, "name": n} for i, n in enumerate(info.class_names)],
            "annotations": annotations}  # fmt: skip
    path = Path(f"{prefix}_coco.json")
    write_json(coco, path)
    return {"coco": path}
