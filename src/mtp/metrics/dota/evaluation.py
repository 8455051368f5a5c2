"""Oriented-detection mAP: the DOTA devkit Task1 rule and mmrotate's local ``eval_rbbox_map`` rule.

Written from the rules in docs/EVALUATION.md#dota-map (no devkit/mmrotate code). The two rules differ
(docs/EVALUATION.md#dota-devkit-versus-mmrotate), and MTP's numbers depend on both.

:func:`eval_dota_devkit` (official DOTA server, Task1):

* geometry: the raw 8-point GT quadrilaterals and the detection polygons;
* IoU: HBB prefilter with the legacy +1 (only pairs with HBB IoU > 0 are considered), then polygon IoU
  (shapely, float64);
* match: ``ovmax > thr`` (strict);
* difficult: excluded from npos, and detections whose best GT is difficult are neither TP nor FP
  (``ignore_difficult=False`` reproduces the v1.5 script, which forces difficult = 0);
* AP: 11-point (``use_07=True``) in float64 with the devkit's accumulation; mAP = sum of APs / number of classes.

:func:`eval_rbbox_map` (mmrotate ``DOTAMetric``, MTP's local evaluation: DIOR-R test, DOTA val, pretraining val):

* geometry: GT minAreaRect rboxes (polygons are converted), detection rboxes;
* IoU: :func:`mtp.ops.rotated.iou.rotated_iou` in float32 (mmcv computes in float32);
* match: ``ious_max >= thr``;
* difficult: counted as normal GT (``ignore_difficult=False``); explicit ``ignore`` flags act like
  devkit-difficult;
* AP: ``mode='11points'`` by default with mmdet's arithmetic (float32 TP/FP, precision and AP); mAP = mean
  over the classes with at least one non-ignored GT.

Both walk the detections of a class in score order (``np.argsort(-scores)`` on the detections in input order:
file order for the devkit, image order then per-image order for mmrotate, so ties resolve as in the
references given the same input). A detection on an image without annotations is matched against no GT
(an FP); the devkit itself would raise. Self-intersecting (invalid) polygons are repaired with
``shapely.make_valid`` (the devkit's signed-area polyiou gives a different number for them); GT
polygons with non-positive union give IoU 0. The accumulating (DDP-safe) metric object
is :class:`mtp.metrics.dota.metric.DOTAMeanAP`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import shapely
import torch

from mtp.metrics.dota.ap import match_detections, pr_curve, voc_ap
from mtp.ops.rotated.boxes import poly2rbox
from mtp.ops.rotated.iou import rotated_iou

__all__ = ["eval_dota_devkit", "eval_rbbox_map", "polygon_iou_devkit"]

log = logging.getLogger(__name__)


def _np(x: Any, dtype: Any, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x if x is not None else [], dtype=dtype)
    if shape_tail and arr.size == 0:
        arr = arr.reshape((0, *shape_tail))
    return arr


def _shapely_polys(polys: np.ndarray) -> np.ndarray:
    geoms = shapely.polygons(polys.reshape(-1, 4, 2))
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms[bad] = shapely.make_valid(geoms[bad])
    return geoms


def polygon_iou_devkit(det_polys: np.ndarray, gt_polys: np.ndarray) -> np.ndarray:
    """DOTA devkit IoU of (D, 8) detection polygons against (G, 8) GT polygons -> (D, G) float64.

    Pairs whose horizontal boxes do not overlap under the devkit's legacy ``+1`` rule
    (iw = max(ixmax - ixmin + 1, 0), union (w + 1)(h + 1) + ...) are ``-inf`` (never considered); the others
    get the polygon IoU I / (A1 + A2 - I) in float64 (shapely; equal to the devkit's ``polyiou`` for simple
    polygons).
    """
    d, g = det_polys.reshape(-1, 8), gt_polys.reshape(-1, 8)
    out = np.full((len(d), len(g)), -np.inf)
    if len(d) == 0 or len(g) == 0:
        return out
    dx0, dx1 = d[:, 0::2].min(1)[:, None], d[:, 0::2].max(1)[:, None]
    dy0, dy1 = d[:, 1::2].min(1)[:, None], d[:, 1::2].max(1)[:, None]
    gx0, gx1 = g[:, 0::2].min(1)[None], g[:, 0::2].max(1)[None]
    gy0, gy1 = g[:, 1::2].min(1)[None], g[:, 1::2].max(1)[None]
    iw = np.maximum(np.minimum(dx1, gx1) - np.maximum(dx0, gx0) + 1.0, 0.0)
    ih = np.maximum(np.minimum(dy1, gy1) - np.maximum(dy0, gy0) + 1.0, 0.0)
    inter = iw * ih
    union = (dx1 - dx0 + 1.0) * (dy1 - dy0 + 1.0) + (gx1 - gx0 + 1.0) * (gy1 - gy0 + 1.0) - inter
    di, gi = np.nonzero(inter / union > 0)
    if len(di) == 0:
        return out
    dg, gg = _shapely_polys(d), _shapely_polys(g)
    ia = shapely.area(shapely.intersection(dg[di], gg[gi]))
    un = shapely.area(dg)[di] + shapely.area(gg)[gi] - ia
    out[di, gi] = np.where(un > 0, ia / np.where(un > 0, un, 1.0), 0.0)
    return out


def _class_blocks(det_labels: np.ndarray, gt_labels: np.ndarray):
    """Per class with detections in one image: (det positions, GT positions); classes never interact."""
    for c in np.unique(det_labels):
        yield np.nonzero(det_labels == c)[0], np.nonzero(gt_labels == c)[0]


def _group(image_index: np.ndarray, n_images: int) -> list[np.ndarray]:
    order = np.argsort(image_index, kind="stable")
    bounds = np.searchsorted(image_index[order], np.arange(n_images + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n_images)]


def _result(names, npos, num_dets, curves, aps, mean_ap) -> dict[str, Any]:
    return {
        "mAP": float(mean_ap),
        "AP": dict(zip(names, aps, strict=True)),
        "recall": {n: c[0] for n, c in zip(names, curves, strict=True)},
        "precision": {n: c[1] for n, c in zip(names, curves, strict=True)},
        "npos": dict(zip(names, npos, strict=True)),
        "num_dets": dict(zip(names, num_dets, strict=True)),
    }


def _label_indices(labels: Any, names: Sequence[str], where: str) -> np.ndarray:
    """GT labels as class names or indices -> indices; names outside ``names`` become -1 (not evaluated)."""
    labels = list(labels.tolist() if isinstance(labels, (np.ndarray, torch.Tensor)) else labels)
    index = {n: i for i, n in enumerate(names)}
    out = []
    for lab in labels:
        if isinstance(lab, str):
            out.append(index.get(lab, -1))
        else:
            k = int(lab)
            if not 0 <= k < len(names):
                raise ValueError(f"{where}: label {k} outside [0, {len(names)})")
            out.append(k)
    return np.asarray(out, dtype=np.int64)


def eval_dota_devkit(
    detections: Mapping[str, Sequence[tuple[str, float, Any]]],
    annotations: Mapping[str, Mapping[str, Any]],
    class_names: Sequence[str],
    iou_thr: float = 0.5,
    use_07: bool = True,
    ignore_difficult: bool = True,
) -> dict[str, Any]:
    """DOTA devkit Task1 evaluation (the official server rule, docs/EVALUATION.md#dota-devkit-versus-mmrotate).

    Args:
        detections: class name -> list of ``(image_id, score, poly8)`` (the rows of ``Task1_<class>.txt``, in
            file order; see :func:`mtp.metrics.dota.submission.read_dota_task1`). Classes not in ``class_names`` are
            ignored.
        annotations: image id -> ``{"polygons": (N, 8), "labels": (N,) class names or indices into
            class_names, "difficult": (N,) optional (> 0 means difficult)}``.
        class_names: the evaluated classes (mAP divides by their number, classes without GT score AP 0).
        iou_thr: match when the polygon IoU is **strictly greater** than this.
        use_07: 11-point AP (the devkit's ``main()`` default); False: area AP.
        ignore_difficult: True for the v1.0 script; False reproduces the v1.5 script (difficult forced to 0).

    Returns:
        ``{"mAP", "AP": {class: ap}, "recall": {class: curve}, "precision": {class: curve},
        "npos": {class: int}, "num_dets": {class: int}}``.
    """
    names = list(class_names)
    image_ids = list(annotations)
    img_index = {k: i for i, k in enumerate(image_ids)}
    gts = []
    for img in image_ids:
        ann = annotations[img]
        polys = _np(ann.get("polygons"), np.float64, (8,)).reshape(-1, 8)
        labels = _label_indices(ann.get("labels", []), names, f"annotations[{img!r}]")
        diff = _np(ann.get("difficult"), np.float64) if ann.get("difficult") is not None else np.zeros(len(polys))
        if not (len(polys) == len(labels) == len(diff)):
            raise ValueError(f"annotations[{img!r}]: polygons/labels/difficult lengths differ")
        gts.append((polys, labels, (diff > 0) & ignore_difficult))
    class_index = {n: c for c, n in enumerate(names)}
    d_img, d_cls, d_score, d_poly = [], [], [], []
    unknown: set[str] = set()
    for name, rows in detections.items():
        if name not in names:
            log.warning("detections for class %r not in class_names: ignored", name)
            continue
        for img, score, poly in rows:
            if img not in img_index:
                unknown.add(img)
                img_index[img] = len(gts)
                gts.append((np.zeros((0, 8)), np.zeros(0, np.int64), np.zeros(0, bool)))
            d_img.append(img_index[img])
            d_cls.append(class_index[name])
            d_score.append(float(score))
            d_poly.append(np.asarray(poly, dtype=np.float64).reshape(8))
    if unknown:
        log.warning("%d image(s) with detections but no annotations (their detections are FPs)", len(unknown))
    d_img, d_cls = np.asarray(d_img, np.int64), np.asarray(d_cls, np.int64)
    d_score = np.asarray(d_score, np.float64)
    d_poly = np.asarray(d_poly, np.float64).reshape(-1, 8)
    orders = []  # per class: flat indices in score order (the devkit's argsort on file order)
    rank = np.zeros(len(d_score), np.int64)
    for c in range(len(names)):
        idx = np.nonzero(d_cls == c)[0]
        order = idx[np.argsort(-d_score[idx])]
        rank[order] = np.arange(len(order))
        orders.append(order)
    tp, fp = np.zeros(len(d_score)), np.zeros(len(d_score))
    for i, dets in enumerate(_group(d_img, len(gts))):
        polys, labels, ignored = gts[i]
        for dpos, gpos in _class_blocks(d_cls[dets], labels):
            block = dets[dpos]
            ious = polygon_iou_devkit(d_poly[block], polys[gpos])
            walk = np.argsort(rank[block])  # the class's global score order, restricted to this image
            tp[block], fp[block] = match_detections(ious, ignored[gpos], walk, iou_thr, strict=True)
    npos = [int(sum(((g[1] == c) & ~g[2]).sum() for g in gts)) for c in range(len(names))]
    curves = [pr_curve(tp[o], fp[o], npos[c], style="devkit") for c, o in enumerate(orders)]
    aps = [voc_ap(r, p, "11points" if use_07 else "area", "devkit") for r, p in curves]
    mean_ap = sum(aps) / len(names) if names else 0.0
    return _result(names, npos, [len(o) for o in orders], curves, aps, mean_ap)


def eval_rbbox_map(
    detections: Sequence[Mapping[str, Any]],
    annotations: Sequence[Mapping[str, Any]],
    class_names: Sequence[str] | int,
    iou_thr: float = 0.5,
    mode: str = "11points",
    ignore_difficult: bool = False,
    iou_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """mmrotate's local rotated mAP (``eval_rbbox_map`` as used by DOTAMetric;
    docs/EVALUATION.md#dota-devkit-versus-mmrotate).

    Args:
        detections: per image ``{"rboxes": (D, 5), "scores": (D,), "labels": (D,)}`` (rboxes in our
            (cx, cy, w, h, theta-radians) convention; arrays or tensors).
        annotations: per image (same order) ``{"rboxes": (N, 5)}`` or ``{"polygons": (N, 8)}`` (converted to
            their minimum-area rectangle, as mmrotate's ``qbox2rbox``), ``"labels": (N,)``, optional
            ``"difficult": (N,)`` and ``"ignore": (N,) bool``.
        class_names: names (for the result keys) or the number of classes (keys "0", "1", ...).
        iou_thr: match when the rotated IoU is **>=** this.
        mode: ``'11points'`` (mmrotate default, used by MTP) or ``'area'``.
        ignore_difficult: treat difficult > 0 GTs as ignored (mmrotate's DOTADataset does not: diff_thr=100).
        iou_fn: pairwise rbox IoU (default :func:`mtp.ops.rotated.iou.rotated_iou`), called in float32.

    Returns:
        as :func:`eval_dota_devkit`; mAP is the mean over classes with at least one non-ignored GT (0 if none).
    """

    iou_fn = iou_fn or rotated_iou
    names = [str(i) for i in range(class_names)] if isinstance(class_names, int) else list(class_names)
    if len(detections) != len(annotations):
        raise ValueError(f"{len(detections)} detection entries for {len(annotations)} annotated images")
    parts: list[tuple[np.ndarray, ...]] = []
    npos = np.zeros(len(names), np.int64)
    for i, (det, ann) in enumerate(zip(detections, annotations, strict=True)):
        if ann.get("rboxes") is not None:
            g_boxes = _np(ann["rboxes"], np.float64, (5,)).reshape(-1, 5)
        else:
            polys = torch.as_tensor(_np(ann.get("polygons"), np.float64, (8,)).reshape(-1, 8))
            g_boxes = poly2rbox(polys).numpy()
        g_cls = _label_indices(ann.get("labels", []), names, f"annotations[{i}]")
        ignored = _np(ann.get("ignore"), bool) if ann.get("ignore") is not None else np.zeros(len(g_boxes), bool)
        if ignore_difficult and ann.get("difficult") is not None:
            ignored = ignored | (_np(ann["difficult"], np.float64) > 0)
        if not (len(g_boxes) == len(g_cls) == len(ignored)):
            raise ValueError(f"annotations[{i}]: rboxes/labels/ignore lengths differ")
        perm = np.argsort(ignored, kind="stable")  # non-ignored GTs first, as mmdet concatenates them
        g_boxes, g_cls, ignored = g_boxes[perm], g_cls[perm], ignored[perm]
        npos += np.bincount(g_cls[(~ignored) & (g_cls >= 0)], minlength=len(names))
        boxes = _np(det.get("rboxes"), np.float64, (5,)).reshape(-1, 5)
        scores = _np(det.get("scores"), np.float64).reshape(-1)
        labels = _np(det.get("labels"), np.int64).reshape(-1)
        if not (len(boxes) == len(scores) == len(labels)):
            raise ValueError(f"detections[{i}]: rboxes/scores/labels lengths differ")
        if labels.size and not (labels.min() >= 0 and labels.max() < len(names)):
            raise ValueError(f"detections[{i}]: labels outside [0, {len(names)})")
        tp, fp = np.zeros(len(boxes)), np.zeros(len(boxes))
        for dpos, gpos in _class_blocks(labels, g_cls):
            if len(gpos):
                d32 = torch.as_tensor(boxes[dpos], dtype=torch.float32)
                ious = iou_fn(d32, torch.as_tensor(g_boxes[gpos], dtype=torch.float32)).double().cpu().numpy()
            else:
                ious = np.zeros((len(dpos), 0))
            walk = np.argsort(-scores[dpos])  # mmdet sorts each image's detections of the class
            tp[dpos], fp[dpos] = match_detections(ious, ignored[gpos], walk, iou_thr, strict=False)
        parts.append((scores, labels, tp, fp))
    # image order, then each image's input order: the order mmdet stacks the per-image results in
    scores = np.concatenate([np.zeros(0), *(p[0] for p in parts)])
    cls = np.concatenate([np.zeros(0, np.int64), *(p[1] for p in parts)])
    tp = np.concatenate([np.zeros(0), *(p[2] for p in parts)])
    fp = np.concatenate([np.zeros(0), *(p[3] for p in parts)])
    curves, aps, num_dets = [], [], []
    for c in range(len(names)):
        idx = np.nonzero(cls == c)[0]
        order = idx[np.argsort(-scores[idx])]
        rec, prec = pr_curve(tp[order], fp[order], int(npos[c]), style="mmdet")
        curves.append((rec, prec))
        aps.append(voc_ap(rec, prec, mode, "mmdet"))
        num_dets.append(len(order))
    with_gt = [ap for ap, n in zip(aps, npos, strict=True) if n > 0]
    mean_ap = float(np.asarray(with_gt, dtype=np.float32).mean()) if with_gt else 0.0  # float32 APs in mmdet
    return _result(names, [int(n) for n in npos], num_dets, curves, aps, mean_ap)

