"""The VOC-style AP core shared by the DOTA devkit and mmrotate evaluations (docs/EVALUATION.md#matching-core).

Written from the documented rules, not from either code base:

* :func:`voc_ap` — 11-point (VOC07) or area (VOC2010+) AP of one recall/precision curve. The 11 recall
  thresholds are the *floating-point* values ``np.arange(0, 1.1, 0.1)`` (devkit) or
  ``np.arange(0, 1 + 1e-3, 0.1)`` (mmdet); both give 0.30000000000000004, 0.6000000000000001 and
  0.7000000000000001, so a recall of exactly 0.3 does **not** reach the fourth threshold (recalls 0.1, 0.2,
  0.3 at precision 1 give 3/11, not 4/11). The two styles also accumulate differently (devkit: ``ap += p/11``
  per threshold in float64; mmdet: float32 sum, then divide by 11), which differ by float32 rounding; both are
  reproduced.
* :func:`match_detections` — the greedy match of one image: walk the detections in the given order, take the
  GT with maximum IoU (first index on ties, ignored/difficult GTs included), and call it TP (unmatched,
  not ignored), FP (already matched: **no fallback to the second-best GT**, or IoU below threshold) or
  neither (ignored/difficult GT). ``strict=True`` is the devkit's ``ovmax > thr``, ``False`` mmdet's ``>=``.
* :func:`format_ap_table` — the per-class text table of an evaluation result.
* :func:`pr_curve` — cumulative TP/FP to recall/precision with the devkit (float64) or mmdet (float32 counts and
  precision, float64 recall) conventions. Recall is float64 in both, so the 0.3 / 0.6 / 0.7 quirk applies to both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "ELEVEN_POINT_THRESHOLDS",
    "format_ap_table",
    "match_detections",
    "pr_curve",
    "precision_envelope",
    "voc_ap",
]

#: The devkit thresholds ``np.arange(0, 1.1, 0.1)``; mmdet's ``np.arange(0, 1 + 1e-3, 0.1)`` is identical.
ELEVEN_POINT_THRESHOLDS = {"devkit": np.arange(0.0, 1.1, 0.1), "mmdet": np.arange(0.0, 1.0 + 1e-3, 0.1)}


def precision_envelope(precision: np.ndarray) -> np.ndarray:
    """Running maximum of the precision taken from the right: the monotone (non-increasing) envelope."""
    p = np.asarray(precision, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    return np.maximum.accumulate(p[::-1])[::-1]


def voc_ap(recall: np.ndarray, precision: np.ndarray, mode: str = "11points", thresholds: str = "devkit") -> float:
    """Average precision of one class from its cumulative recall and precision curves.

    Args:
        recall, precision: 1-D arrays in detection-rank order (recall non-decreasing).
        mode: ``'11points'`` (VOC07: mean over the 11 thresholds t of max{precision | recall >= t}, 0 when no
            recall reaches t) or ``'area'`` (curve padded as [0, rec, 1] / [0, prec, 0], precision made
            monotone from the right, AP = sum (r[i+1] - r[i]) p[i+1] where the recall changes).
        thresholds: ``'devkit'`` (float64 throughout, ``ap += p / 11`` per threshold) or ``'mmdet'`` (mmdet's
            arithmetic: precision taken as float32, the AP accumulated in float32 and divided by 11 at the
            end; the area result is stored as float32). The threshold values are identical (module docstring);
            the results differ by float32 rounding (~1e-8) at most.
    """
    if thresholds not in ELEVEN_POINT_THRESHOLDS:
        raise ValueError(f"thresholds must be 'devkit' or 'mmdet', got {thresholds!r}")
    mmdet = thresholds == "mmdet"
    rec = np.asarray(recall, dtype=np.float64).reshape(-1)
    prec = np.asarray(precision, dtype=np.float32 if mmdet else np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"recall and precision differ in length: {rec.shape} vs {prec.shape}")
    if mode == "area":
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = precision_envelope(np.concatenate(([0.0], prec.astype(np.float64), [0.0])))
        idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
        area = np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1])
        return float(np.float32(area)) if mmdet else float(area)
    if mode != "11points":
        raise ValueError(f"mode must be '11points' or 'area', got {mode!r}")
    maxima = []
    for t in ELEVEN_POINT_THRESHOLDS[thresholds]:
        reached = prec[rec >= t]
        maxima.append(reached.max() if reached.size else prec.dtype.type(0))
    if mmdet:
        acc = np.float32(0.0)
        for p in maxima:
            acc = np.float32(acc + p)
        return float(np.float32(acc / np.float32(11.0)))
    ap = 0.0
    for p in maxima:
        ap = ap + float(p) / 11.0
    return float(ap)


def match_detections(
    ious: np.ndarray, gt_ignored: np.ndarray, order: np.ndarray, iou_thr: float, strict: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy VOC matching of the detections of one image against its GTs.

    Args:
        ious: (D, G) IoU matrix; entries that must never match (other classes, GTs removed by a prefilter)
            are ``-inf``.
        gt_ignored: (G,) bool — difficult / ignored GTs (a detection whose best GT is one of them is neither
            TP nor FP).
        order: detection indices in the order they are walked (score descending).
        iou_thr: the IoU threshold; ``strict`` selects ``>`` (devkit) or ``>=`` (mmdet/mmrotate).

    Returns:
        (tp, fp): (D,) float64 0/1 arrays indexed like the rows of ``ious``.
    """
    n_det = ious.shape[0]
    tp = np.zeros(n_det, dtype=np.float64)
    fp = np.zeros(n_det, dtype=np.float64)
    if n_det == 0:
        return tp, fp
    if ious.shape[1] == 0:
        fp[:] = 1.0
        return tp, fp
    best = ious.argmax(axis=1)  # first maximum, as np.argmax in both references
    ovmax = ious[np.arange(n_det), best]
    passed = ovmax > iou_thr if strict else ovmax >= iou_thr
    covered = np.zeros(ious.shape[1], dtype=bool)
    for d in np.asarray(order, dtype=np.int64).tolist():
        if not passed[d]:
            fp[d] = 1.0
            continue
        j = best[d]
        if gt_ignored[j]:
            continue
        if covered[j]:
            fp[d] = 1.0
        else:
            covered[j] = True
            tp[d] = 1.0
    return tp, fp


def pr_curve(tp: np.ndarray, fp: np.ndarray, npos: int, style: str = "devkit") -> tuple[np.ndarray, np.ndarray]:
    """Cumulative recall and precision from per-detection TP/FP flags already in rank order.

    ``devkit``: float64; precision = TP / max(TP + FP, float64 eps); recall = TP / npos, and 0 when npos == 0
    (where the devkit divides by zero: its NaN recalls give AP 0 in 11-point mode, as these zeros do).
    ``mmdet``: float32 TP/FP counts (mmdet's dtype); recall = TP / max(npos, float32 eps) in float64 (the
    count array is an int array there), precision = TP / max(TP + FP, float32 eps) in float32.
    """
    if style == "devkit":
        ctp = np.cumsum(np.asarray(tp, dtype=np.float64))
        cfp = np.cumsum(np.asarray(fp, dtype=np.float64))
        rec = ctp / float(npos) if npos > 0 else np.zeros_like(ctp)
        prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    elif style == "mmdet":
        ctp = np.cumsum(np.asarray(tp, dtype=np.float32))
        cfp = np.cumsum(np.asarray(fp, dtype=np.float32))
        eps = np.finfo(np.float32).eps
        rec = ctp.astype(np.float64) / max(float(npos), float(eps))
        prec = ctp / np.maximum(ctp + cfp, eps)
    else:
        raise ValueError(f"style must be 'devkit' or 'mmdet', got {style!r}")
    return rec, prec


def format_ap_table(result: Mapping[str, Any], digits: int = 4) -> str:
    """Per-class text table (class, gts, dets, recall, ap) and the mAP line from an evaluation result."""
    names = list(result["AP"])
    width = max([5, *(len(n) for n in names)])
    lines = [f"{'class':<{width}} | {'gts':>6} | {'dets':>7} | {'recall':>{digits + 2}} | {'ap':>{digits + 2}}"]
    lines.append("-" * len(lines[0]))
    for n in names:
        rec = result["recall"][n]
        final = float(rec[-1]) if len(rec) else 0.0
        lines.append(
            f"{n:<{width}} | {result['npos'][n]:>6d} | {result['num_dets'][n]:>7d} | "
            f"{final:>{digits + 2}.{digits}f} | {result['AP'][n]:>{digits + 2}.{digits}f}"
        )
    lines.append("-" * len(lines[0]))
    lines.append(f"{'mAP':<{width}} | {'':>6} | {'':>7} | {'':>{digits + 2}} | {result['mAP']:>{digits + 2}.{digits}f}")
    return "\n".join(lines)
