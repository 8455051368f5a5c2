"""COCO-style box and mask AP, computed through pycocotools as mmdet's ``CocoMetric`` does it.

Semantics (docs/EVALUATION.md#coco-metric). pycocotools does the matching and the accumulation; this module
only sets its parameters and reads its arrays the way mmdet 3.x does:

* ``params.maxDets = [100, 300, 1000]`` (mmdet's ``proposal_nums``). pycocotools' ``summarize`` computes
  ``stats[0]`` with its hard-coded default ``maxDets=100`` and ``stats[1..5]`` with ``maxDets[2]``. So
  ``mAP`` is taken at 100 detections per image, while ``mAP_50``, ``mAP_75``, ``mAP_s``, ``mAP_m`` and
  ``mAP_l`` are taken at **1000**. ``AR@100/300/1000`` use their own limits and ``AR_{s,m,l}@1000`` use 1000.
  This is what pycocotools 2.0.x ``COCOeval.summarize._summarizeDets`` does, and we reproduce it deliberately.
* Per-class ("classwise") values read ``eval['precision'][T, R, k, area, -1]``, as mmdet's classwise table
  does. Because mmdet indexes the **last** maxDets entry, these are at 1000 detections per image. mmdet's
  comment "typically 100" is wrong under (100, 300, 1000). A category without GT has only ``-1`` cells, so
  it is reported as NaN and left out of every mean.
* For ``segm``, the ``"bbox"`` key is removed from each result before ``loadRes``. pycocotools then takes
  the detection area from the mask instead of from the box. This changes the small/medium/large numbers
  only, because the area decides whether an unmatched detection is ignored.
* Boxes are written as xywh with ``w = x2 - x1`` (no +1). Masks are written as compressed RLE whose
  ``counts`` is a ``str``.
* Values are rounded to ``decimals`` (3 by default, as mmdet reports them). Use ``decimals=None`` to get
  the raw values. When no GT of a kind exists (e.g. no small objects), pycocotools' ``-1`` is kept, as mmdet keeps it.

Ground truth built in memory (:class:`CocoDetectionMetric`). Image ids are the running image index over the
(gathered) updates, category ids are ``label + 1``, and annotation ids start at 1 (pycocotools needs
non-zero ids for matching). The GT ``area`` decides which area range a GT belongs to. It is taken from:

1. ``target["area"]`` when given. This is the COCO-json path MTP used (mmdet with ``ann_file``). Pass the
   json areas here to reproduce those numbers exactly.
2. Otherwise, with ``gt_area="mask"`` (the default) and GT masks present, the mask pixel count. This is
   the COCO convention: one area per annotation, from the segmentation, used by both box and mask
   evaluation.
3. Otherwise the box ``w * h``. This is what mmdet's ``gt_to_coco_json`` does when it builds GT without an
   ``ann_file``, even for segm. Choose it with ``gt_area="box"``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

__all__ = [
    "CLASSWISE_KEYS",
    "MAX_DETS",
    "STAT_NAMES",
    "classwise_table",
    "coco_evaluate",
    "detections_to_coco_results",
    "flatten_metrics",
]

#: mmdet's ``proposal_nums``, used as ``COCOeval.params.maxDets``.
MAX_DETS = (100, 300, 1000)
#: Names of ``COCOeval.stats[0..11]`` under ``maxDets = [100, 300, 1000]`` (mmdet's ``coco_metric_names``).
STAT_NAMES = (
    "mAP",
    "mAP_50",
    "mAP_75",
    "mAP_s",
    "mAP_m",
    "mAP_l",
    "AR@100",
    "AR@300",
    "AR@1000",
    "AR_s@1000",
    "AR_m@1000",
    "AR_l@1000",
)
#: Per-class entries (mmdet's classwise table columns): (name, IoU threshold or None, area-range index).
CLASSWISE_KEYS = (
    ("AP", None, 0),
    ("AP50", 0.5, 0),
    ("AP75", 0.75, 0),
    ("AP_s", None, 1),
    ("AP_m", None, 2),
    ("AP_l", None, 3),
)


def _round(value: float, decimals: int | None) -> float:
    value = float(value)
    return value if decimals is None or math.isnan(value) else round(value, decimals)


def _coco_from_dict(dataset: Mapping[str, Any], copy_dataset: bool = True) -> COCO:
    coco = COCO()
    data = copy.deepcopy(dict(dataset)) if copy_dataset else dict(dataset)
    for key in ("images", "annotations", "categories"):
        data.setdefault(key, [])
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _load_results(coco_gt: COCO, results: Sequence[Mapping[str, Any]], iou_type: str) -> COCO:
    dets = []
    for result in results:
        det = dict(result)  # loadRes writes area/id/iscrowd into the dicts: never touch the caller's
        if iou_type == "segm":
            if "segmentation" not in det:
                raise ValueError("segm evaluation needs a 'segmentation' (RLE) in every result")
            det.pop("bbox", None)  # mmdet: so that pycocotools takes the detection area from the mask
        elif "bbox" not in det:
            raise ValueError("bbox evaluation needs a 'bbox' (xywh) in every result")
        dets.append(det)
    if dets:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(dets)
    # pycocotools' loadRes fails on an empty list (mmdet then reports nothing). Instead, an empty result set
    # gives AP 0 wherever GT exists.
    return _coco_from_dict(
        {"images": list(coco_gt.dataset["images"]), "categories": coco_gt.dataset["categories"]}, copy_dataset=True
    )


def coco_evaluate(
    gt: Mapping[str, Any] | COCO,
    results: Sequence[Mapping[str, Any]],
    iou_type: str = "bbox",
    class_names: Sequence[str] | None = None,
    decimals: int | None = 3,
) -> dict[str, Any]:
    """Evaluate COCO ``results`` against ``gt`` (a COCO json dict or a ``pycocotools.coco.COCO``) like mmdet.

    Returns the 12 :data:`STAT_NAMES` as floats, plus ``"classwise"`` (``{name: {AP, AP50, AP75, AP_s, AP_m,
    AP_l}}``, at maxDets 1000 as in mmdet, NaN for categories without GT) and ``"summary"`` (pycocotools'
    printed summary, whose stdout is otherwise silenced). ``class_names`` overrides the GT category names,
    in ascending category-id order. A dict ``gt`` is copied. A ``COCO`` object is used as it is, and
    pycocotools annotates its GT entries in place, as it does in mmdet.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    coco_gt = gt if isinstance(gt, COCO) else _coco_from_dict(gt)
    cat_ids = sorted(coco_gt.getCatIds())
    if class_names is None:
        class_names = [str(coco_gt.cats[c].get("name", c)) for c in cat_ids]
    elif len(class_names) != len(cat_ids):
        raise ValueError(f"{len(class_names)} class names for {len(cat_ids)} GT categories")
    coco_dt = _load_results(coco_gt, results, iou_type)
    evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    evaluator.params.catIds = cat_ids
    evaluator.params.imgIds = sorted(coco_gt.getImgIds())
    evaluator.params.maxDets = list(MAX_DETS)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()

    out: dict[str, Any] = {name: _round(v, decimals) for name, v in zip(STAT_NAMES, evaluator.stats, strict=True)}
    precision = evaluator.eval["precision"]  # (T iou, R recall, K class, A area, M maxDets)
    iou_thrs = np.asarray(evaluator.params.iouThrs)
    classwise = {}
    for k, name in enumerate(class_names):
        row = {}
        for key, thr, area in CLASSWISE_KEYS:
            cell = precision[:, :, k, area, -1] if thr is None else precision[np.isclose(iou_thrs, thr), :, k, area, -1]
            cell = cell[cell > -1]
            row[key] = _round(np.mean(cell) if cell.size else float("nan"), decimals)
        classwise[name] = row
    out["classwise"] = classwise
    out["summary"] = summary.getvalue()
    return out


def _numpy(x: Any, dtype: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        x = x.double() if np.dtype(dtype).kind == "f" else x
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def _encode_masks(masks: Any) -> list[dict[str, Any]]:
    """(N, H, W) binary masks (float ones binarised at ≥ 0.5) → compressed RLEs with ``str`` counts."""
    m = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    m = (m >= 0.5 if m.dtype.kind == "f" else m != 0).astype(np.uint8)
    if m.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {m.shape}")
    if m.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode()
    return rles


def detections_to_coco_results(
    image_ids: int | Sequence[int] | np.ndarray | Tensor,
    boxes: Any,
    scores: Any,
    labels: Any,
    cat_ids: Sequence[int] | Mapping[int, int] | None = None,
    masks: Any = None,
) -> list[dict[str, Any]]:
    """Detections → COCO results (one dict per detection, mmdet's ``results2json`` layout).

    ``image_ids`` is one id for all detections or one per detection. ``boxes`` are xyxy (N, 4) and become
    xywh with ``w = x2 - x1``. ``labels`` are 0-based and map through ``cat_ids`` (a sequence or mapping,
    default ``label + 1``). ``masks`` are an (N, H, W) bool/uint8 (float: ≥ 0.5) array or tensor, or a
    list of RLE dicts (``bytes`` counts are decoded to ``str``). With masks, every dict carries both
    ``bbox`` and ``segmentation``, as mmdet's segm results do; :func:`coco_evaluate` drops ``bbox`` for segm.
    """
    b = _numpy(boxes, np.float64).reshape(-1, 4)
    s = _numpy(scores, np.float64).reshape(-1)
    lab = _numpy(labels, np.int64).reshape(-1)
    n = len(b)
    if len(s) != n or len(lab) != n:
        raise ValueError(f"{n} boxes, {len(s)} scores and {len(lab)} labels")
    ids = _numpy(image_ids, np.int64)
    ids = np.full(n, int(ids), dtype=np.int64) if ids.ndim == 0 else ids.reshape(-1)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} image ids for {n} detections")
    cats = (lab + 1).tolist() if cat_ids is None else [int(cat_ids[int(v)]) for v in lab]
    rles = None
    if masks is not None:
        if isinstance(masks, list | tuple):
            rles = []
            for rle in masks:
                rle = dict(rle)
                if isinstance(rle["counts"], bytes):
                    rle["counts"] = rle["counts"].decode()
                rles.append(rle)
        else:
            rles = _encode_masks(masks)
        if len(rles) != n:
            raise ValueError(f"{len(rles)} masks for {n} detections")
    xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1).tolist()
    out = []
    for i in range(n):
        det = {"image_id": int(ids[i]), "bbox": xywh[i], "score": float(s[i]), "category_id": cats[i]}
        if rles is not None:
            det["segmentation"] = rles[i]
        out.append(det)
    return out


def flatten_metrics(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """``{"bbox": {"mAP": ...}}`` → ``{"bbox_mAP": ...}`` (mmdet's key names; scalar stats only)."""
    return {f"{iou}_{k}": float(v) for iou, res in results.items() for k, v in res.items() if k in STAT_NAMES}


def classwise_table(results: Mapping[str, Mapping[str, Any]], keys: Sequence[str] = ("AP", "AP50")) -> str:
    """A per-class text table (3 decimals, NaN for classes without GT) with ``keys`` for each IoU type."""
    iou_types = list(results)
    names = list(results[iou_types[0]]["classwise"]) if iou_types else []
    header = ["category"] + [f"{iou}_{k}" for iou in iou_types for k in keys]
    rows = [header]
    for name in names:
        rows.append([name] + [f"{results[iou]['classwise'][name][k]:.3f}" for iou in iou_types for k in keys])
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = [
        " | ".join(
            cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
