"""DOTA / FAIR1M result files: patch merging, Task1 submission files, FAIR1M xml, labelTxt reading.

This is the one place for detection *result* I/O (docs/CONVENTIONS.md#dota-labeltxt, docs/EVALUATION.md#protocols,
docs/EVALUATION.md#dota-merging):

* :func:`merge_patch_detections` — split-patch predictions back to original images (mmrotate's
  ``merge_results``): (x, y) from the first ``__<digits>___<digits>`` of the patch id, original id = text
  before the first ``__``; centres translated by (x, y) (no rate division: predictions are in native patch
  pixels with mmrotate's splitter); per image and class rotated NMS at IoU 0.1
  (:func:`mtp.ops.rotated.nms.batched_rotated_nms`, which suppresses at IoU **>** thr like mmcv's CUDA kernel).
* :func:`write_dota_task1` / :func:`read_dota_task1` — ``Task1_<class>.txt``, lines
  ``image_id score x1 y1 x2 y2 x3 y3 x4 y4``; polygons are the rbox corners (``rbox2poly``) with 2
  decimals; the score gets ``score_decimals`` (default 4: mmrotate 1.x rounds to 2, which creates ties whose
  server order is undefined).
* :func:`write_fair1m_xml` — one xml per test image in the layout of MTP's converter
  (docs/EVALUATION.md#fair1m-submissions), in :mod:`mtp.metrics.dota.fair1m`.
* :func:`read_dota_labeltxt` / :func:`read_dota_annotations` — a small standalone labelTxt reader (header lines
  with < 9 tokens skipped as the devkit does, difficult defaults to 0, malformed lines raise with file:line).
* :func:`zip_submission` — zip a result folder for the evaluation server.
* :func:`evaluate_task1_dirs` — ``Task1_*.txt`` folder + labelTxt folder -> devkit or mmrotate evaluation
  (``mtp tool dota-eval``).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtp.data.tools.dota_split import parse_patch_id
from mtp.metrics.dota.evaluation import eval_dota_devkit, eval_rbbox_map
from mtp.metrics.dota.fair1m import fair1m_official_name, write_fair1m_xml
from mtp.ops.rotated.boxes import poly2rbox, rbox2poly
from mtp.ops.rotated.nms import batched_rotated_nms

__all__ = [
    "evaluate_task1_dirs",
    "fair1m_official_name",
    "merge_patch_detections",
    "read_dota_annotations",
    "read_dota_labeltxt",
    "read_dota_task1",
    "write_dota_task1",
    "write_fair1m_xml",
    "zip_submission",
]

log = logging.getLogger(__name__)


def merge_patch_detections(
    results: Mapping[str, Mapping[str, Any]], nms_iou: float = 0.1
) -> dict[str, dict[str, Tensor]]:
    """Merge per-patch detections into per-original-image detections.

    Args:
        results: patch id -> ``{"rboxes": (D, 5), "scores": (D,), "labels": (D,)}`` in patch pixels.
        nms_iou: rotated-NMS threshold per image and class (0.1 as mmrotate's DOTAMetric).

    Returns:
        original id (sorted) -> the same dict in original-image pixels (rboxes float64), score-descending.
        Runs on the device of the inputs.
    """
    groups: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {}
    for pid, det in results.items():
        orig, x, y = parse_patch_id(pid)
        boxes = torch.as_tensor(det["rboxes"]).reshape(-1, 5).double().clone()
        boxes[:, 0] += x
        boxes[:, 1] += y
        scores = torch.as_tensor(det["scores"], device=boxes.device).reshape(-1)
        labels = torch.as_tensor(det["labels"], device=boxes.device).reshape(-1).long()
        groups.setdefault(orig, []).append((boxes, scores, labels))
    merged = {}
    for orig in sorted(groups):
        boxes, scores, labels = (torch.cat(parts) for parts in zip(*groups[orig], strict=True))
        keep = batched_rotated_nms(boxes, scores, labels, nms_iou) if len(boxes) else labels.new_zeros(0)
        merged[orig] = {"rboxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
    return merged


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def write_dota_task1(
    out_dir: str | Path,
    merged: Mapping[str, Mapping[str, Any]],
    class_names: Sequence[str],
    score_decimals: int = 4,
) -> list[Path]:
    """Write ``out_dir/Task1_<class>.txt`` for every class (empty files included); returns the paths.

    Lines ``image_id score x1 y1 ... x4 y4``, images in sorted id order, detections in score order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines: dict[int, list[str]] = {c: [] for c in range(len(class_names))}
    for image_id in sorted(merged):
        det = merged[image_id]
        boxes = torch.as_tensor(det["rboxes"]).detach().cpu().reshape(-1, 5).double()
        polys = rbox2poly(boxes).numpy()
        scores, labels = _np(det["scores"]).reshape(-1), _np(det["labels"]).reshape(-1).astype(np.int64)
        for k in np.argsort(-scores, kind="stable"):
            if not 0 <= labels[k] < len(class_names):
                raise ValueError(f"{image_id}: label {labels[k]} outside [0, {len(class_names)})")
            coords = " ".join(f"{v:.2f}" for v in polys[k])
            lines[int(labels[k])].append(f"{image_id} {scores[k]:.{score_decimals}f} {coords}\n")
    paths = []
    for c, name in enumerate(class_names):
        path = out / f"Task1_{name}.txt"
        path.write_text("".join(lines[c]))
        paths.append(path)
    return paths


def read_dota_task1(det_dir: str | Path) -> dict[str, list[tuple[str, float, np.ndarray]]]:
    """``Task1_<class>.txt`` files -> class -> ``[(image_id, score, poly8 float64), ...]`` in file order
    (the input of :func:`mtp.metrics.dota.evaluation.eval_dota_devkit`)."""
    folder = Path(det_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"detection folder not found: {folder}")
    out: dict[str, list[tuple[str, float, np.ndarray]]] = {}
    for path in sorted(folder.glob("Task1_*.txt")):
        rows = out.setdefault(path.stem[len("Task1_") :], [])
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                if len(tokens) != 10:
                    raise ValueError(f"expected 10 fields, got {len(tokens)}")
                rows.append((tokens[0], float(tokens[1]), np.array([float(t) for t in tokens[2:]])))
            except ValueError as err:
                raise ValueError(f"{path}:{n}: malformed Task1 line {line!r} ({err})") from None
    return out


def read_dota_labeltxt(path: str | Path) -> dict[str, Any]:
    """One DOTA labelTxt file -> ``{"polygons": (N, 8) float64, "labels": [class names], "difficult": (N,)}``.

    Lines ``x1 y1 ... x4 y4 class [difficult]``; lines with fewer than 9 tokens (``imagesource:``, ``gsd:``
    headers) are skipped as the devkit does; difficult defaults to 0 (2 = truncated in split patches).
    """
    path = Path(path)
    polys, names, difficult = [], [], []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        tokens = line.split()
        if len(tokens) < 9:
            continue
        try:
            if len(tokens) > 10:
                raise ValueError(f"expected 9 or 10 fields, got {len(tokens)}")
            polys.append([float(t) for t in tokens[:8]])
            difficult.append(int(tokens[9]) if len(tokens) == 10 else 0)
        except ValueError as err:
            raise ValueError(f"{path}:{n}: malformed DOTA line {line!r} ({err})") from None
        names.append(tokens[8])
    return {
        "polygons": np.asarray(polys, dtype=np.float64).reshape(-1, 8),
        "labels": names,
        "difficult": np.asarray(difficult, dtype=np.int64),
    }


def read_dota_annotations(ann_dir: str | Path) -> dict[str, dict[str, Any]]:
    """A labelTxt folder -> image id (file stem, sorted) -> :func:`read_dota_labeltxt` dict."""
    folder = Path(ann_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"annotation folder not found: {folder}")
    return {p.stem: read_dota_labeltxt(p) for p in sorted(folder.glob("*.txt"))}


def zip_submission(result_dir: str | Path, zip_path: str | Path, arc_root: str | None = None) -> Path:
    """Zip the files of ``result_dir`` (sorted, flat) into ``zip_path``.

    DOTA wants the ``Task1_*.txt`` files at the zip root (``arc_root=None``); for FAIR1M pass
    ``arc_root='test'`` so the xml files sit in a ``test/`` folder as MTP's converter produces.
    """
    src, dst = Path(result_dir), Path(zip_path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in src.iterdir() if p.is_file() and p.resolve() != dst.resolve()):
            zf.write(path, f"{arc_root}/{path.name}" if arc_root else path.name)
    return dst


def evaluate_task1_dirs(
    det_dir: str | Path,
    ann_dir: str | Path,
    class_names: Sequence[str],
    mode: str = "devkit",
    iou_thr: float = 0.5,
    ap_mode: str = "11points",
    ignore_difficult: bool | None = None,
) -> dict[str, Any]:
    """Evaluate a ``Task1_<class>.txt`` folder against a DOTA labelTxt folder.

    ``mode='devkit'``: :func:`~mtp.metrics.dota.evaluation.eval_dota_devkit` on the raw polygons (difficult
    ignored unless ``ignore_difficult=False``, the v1.5 rule). ``mode='mmrotate'``:
    :func:`~mtp.metrics.dota.evaluation.eval_rbbox_map`
    on the minimum-area rectangles of GT and detection polygons (difficult counted unless
    ``ignore_difficult=True``). Images are the label files; detections on other images are FPs. Classes
    without a Task1 file have no detections; files of classes outside ``class_names`` are ignored.
    """

    anns = read_dota_annotations(ann_dir)
    dets = read_dota_task1(det_dir)
    names = list(class_names)
    if mode == "devkit":
        ignore = True if ignore_difficult is None else ignore_difficult
        return eval_dota_devkit(dets, anns, names, iou_thr, use_07=ap_mode == "11points", ignore_difficult=ignore)
    if mode != "mmrotate":
        raise ValueError(f"mode must be 'devkit' or 'mmrotate', got {mode!r}")
    per_image: dict[str, list[tuple[np.ndarray, float, int]]] = {img: [] for img in anns}
    for name, rows in dets.items():
        if name not in names:
            log.warning("detections for class %r not in class_names: ignored", name)
            continue
        for img, score, poly in rows:
            per_image.setdefault(img, []).append((poly, score, names.index(name)))
    det_list, ann_list = [], []
    for img, rows in per_image.items():
        polys = torch.as_tensor(np.asarray([r[0] for r in rows], dtype=np.float64).reshape(-1, 8))
        det_list.append({"rboxes": poly2rbox(polys), "scores": [r[1] for r in rows], "labels": [r[2] for r in rows]})
        ann_list.append(anns.get(img, {"polygons": np.zeros((0, 8)), "labels": [], "difficult": np.zeros(0)}))
    return eval_rbbox_map(det_list, ann_list, names, iou_thr, mode=ap_mode, ignore_difficult=bool(ignore_difficult))
