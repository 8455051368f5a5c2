"""``DOTAMeanAP``: rotated-detection mAP as a torchmetrics ``Metric`` (validation during training).

The metric only accumulates; :meth:`DOTAMeanAP.compute` runs :func:`mtp.metrics.dota.evaluation.eval_rbbox_map`
(``mode='mmrotate'``, the default: what MTP's logs report for DIOR-R / DOTA-val) or
:func:`mtp.metrics.dota.evaluation.eval_dota_devkit` (``mode='devkit'``: polygons, strict >, difficult ignored).

DDP: every state is a list of tensors with ``dist_reduce_fx='cat'``. Per-image structure survives the
concatenation because each update also appends the per-image box counts (``det_counts``, ``gt_counts``):
after a sync every state is the rank-ordered concatenation, so splitting the boxes by the gathered counts gives
back the images (each rank's images get distinct positions; no image-id bookkeeping is needed). Updating in
chunks or all at once gives the same result. A rank that never calls ``update`` contributes nothing (torchmetrics
substitutes an empty tensor). Evaluation runs on the CPU in float64 (IoU in float32 as mmcv).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from mtp.metrics.dota.ap import format_ap_table
from mtp.metrics.dota.evaluation import eval_dota_devkit, eval_rbbox_map
from mtp.ops.rotated.boxes import rbox2poly

__all__ = ["DOTAMeanAP"]

_STATES = ("det_rboxes", "det_scores", "det_labels", "det_counts", "gt_rboxes", "gt_labels", "gt_difficult")


def _cat(state: list[Tensor] | Tensor, tail: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    if isinstance(state, list) and len(state) == 0:
        return torch.zeros((0, *tail), dtype=dtype)
    out = dim_zero_cat(state).detach().cpu()
    return out.reshape(-1, *tail).to(dtype)


class DOTAMeanAP(Metric):
    """Rotated mAP over a dataset.

    Args:
        class_names: class names (result keys ``AP_<name>``) or the number of classes.
        iou_thr: IoU threshold (0.5).
        mode: ``'mmrotate'`` (``eval_rbbox_map``: minAreaRect GT rboxes, >=, difficult counted unless
            ``ignore_difficult``, mean over classes with GT) or ``'devkit'`` (``eval_dota_devkit``: polygons —
            the targets' ``polygons`` when given, else the rbox corners —, strict >, difficult ignored,
            sum / number of classes).
        ap_mode: ``'11points'`` (both references' default) or ``'area'``.
        ignore_difficult: default False for mmrotate, True for devkit.

    ``update(preds, targets)``: per image, ``preds[i] = {"rboxes": (D, 5), "scores": (D,), "labels": (D,)}``
    and ``targets[i] = {"rboxes": (N, 5), "labels": (N,), "difficult": (N,) optional, "polygons": (N, 8)
    optional}``. ``compute()`` returns ``{"mAP": tensor, "AP_<class>": tensor, ...}`` (float64, in [0, 1]);
    the full result of the last compute (curves, npos, ...) is kept in ``last_result`` and :meth:`table`
    formats it.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        class_names: Sequence[str] | int,
        iou_thr: float = 0.5,
        mode: str = "mmrotate",
        ap_mode: str = "11points",
        ignore_difficult: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("mmrotate", "devkit"):
            raise ValueError(f"mode must be 'mmrotate' or 'devkit', got {mode!r}")
        if ap_mode not in ("11points", "area"):
            raise ValueError(f"ap_mode must be '11points' or 'area', got {ap_mode!r}")
        self.class_names = (
            [str(i) for i in range(class_names)] if isinstance(class_names, int) else [str(n) for n in class_names]
        )
        self.iou_thr = float(iou_thr)
        self.mode = mode
        self.ap_mode = ap_mode
        self.ignore_difficult = (mode == "devkit") if ignore_difficult is None else bool(ignore_difficult)
        self.last_result: dict[str, Any] | None = None
        for name in (*_STATES, "gt_counts"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        if mode == "devkit":
            self.add_state("gt_polygons", default=[], dist_reduce_fx="cat")

    def update(self, preds: Sequence[dict[str, Tensor]], targets: Sequence[dict[str, Tensor]]) -> None:
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")

        dev = self.device
        det_counts, gt_counts = [], []
        for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
            boxes = torch.as_tensor(p["rboxes"], device=dev).detach().reshape(-1, 5).double()
            scores = torch.as_tensor(p["scores"], device=dev).detach().reshape(-1).double()
            labels = torch.as_tensor(p["labels"], device=dev).detach().reshape(-1).long()
            if not (len(boxes) == len(scores) == len(labels)):
                raise ValueError(f"preds[{i}]: rboxes/scores/labels lengths differ")
            g_boxes = torch.as_tensor(t["rboxes"], device=dev).detach().reshape(-1, 5).double()
            g_labels = torch.as_tensor(t["labels"], device=dev).detach().reshape(-1).long()
            diff = t.get("difficult")
            g_diff = (
                torch.zeros(len(g_boxes), dtype=torch.long, device=dev)
                if diff is None
                else torch.as_tensor(diff, device=dev).detach().reshape(-1).long()
            )
            if not (len(g_boxes) == len(g_labels) == len(g_diff)):
                raise ValueError(f"targets[{i}]: rboxes/labels/difficult lengths differ")
            self.det_rboxes.append(boxes)
            self.det_scores.append(scores)
            self.det_labels.append(labels)
            self.gt_rboxes.append(g_boxes)
            self.gt_labels.append(g_labels)
            self.gt_difficult.append(g_diff)
            if self.mode == "devkit":
                polys = t.get("polygons")
                polys = rbox2poly(g_boxes) if polys is None else torch.as_tensor(polys, device=dev).detach()
                self.gt_polygons.append(polys.reshape(-1, 8).double())
            det_counts.append(len(boxes))
            gt_counts.append(len(g_boxes))
        self.det_counts.append(torch.tensor(det_counts, dtype=torch.long, device=dev))
        self.gt_counts.append(torch.tensor(gt_counts, dtype=torch.long, device=dev))

    def _images(self) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        """States -> per-image (detections, annotations) on the CPU."""
        det_counts = _cat(self.det_counts, (), torch.long).tolist()
        gt_counts = _cat(self.gt_counts, (), torch.long).tolist()
        det = {
            "rboxes": _cat(self.det_rboxes, (5,), torch.float64).split(det_counts),
            "scores": _cat(self.det_scores, (), torch.float64).split(det_counts),
            "labels": _cat(self.det_labels, (), torch.long).split(det_counts),
        }
        gt = {
            "rboxes": _cat(self.gt_rboxes, (5,), torch.float64).split(gt_counts),
            "labels": _cat(self.gt_labels, (), torch.long).split(gt_counts),
            "difficult": _cat(self.gt_difficult, (), torch.long).split(gt_counts),
        }
        if self.mode == "devkit":
            gt["polygons"] = _cat(self.gt_polygons, (8,), torch.float64).split(gt_counts)
        n = len(det_counts)
        return [{k: v[i] for k, v in det.items()} for i in range(n)], [
            {k: v[i] for k, v in gt.items()} for i in range(n)
        ]

    def evaluate(self) -> dict[str, Any]:
        """The full evaluation result (as :func:`~mtp.metrics.dota.evaluation.eval_rbbox_map`) of the accumulated
        data."""

        dets, anns = self._images()
        if self.mode == "mmrotate":
            return eval_rbbox_map(
                dets, anns, self.class_names, self.iou_thr, mode=self.ap_mode, ignore_difficult=self.ignore_difficult
            )
        rows: dict[str, list] = {n: [] for n in self.class_names}
        for i, d in enumerate(dets):
            polys = rbox2poly(d["rboxes"]).numpy()
            for poly, score, label in zip(polys, d["scores"].tolist(), d["labels"].tolist(), strict=True):
                rows[self.class_names[label]].append((str(i), score, poly))
        annotations = {str(i): {k: v.numpy() for k, v in a.items() if k != "rboxes"} for i, a in enumerate(anns)}
        return eval_dota_devkit(
            rows,
            annotations,
            self.class_names,
            self.iou_thr,
            use_07=self.ap_mode == "11points",
            ignore_difficult=self.ignore_difficult,
        )

    def compute(self) -> dict[str, Tensor]:
        result = self.evaluate()
        self.last_result = result
        out = {"mAP": torch.tensor(result["mAP"], dtype=torch.float64)}
        for name, ap in result["AP"].items():
            out[f"AP_{name}"] = torch.tensor(ap, dtype=torch.float64)
        return out

    def table(self, digits: int = 4) -> str:
        """Per-class text table of the last :meth:`compute` (computes now if there is none)."""

        if self.last_result is None:
            self.last_result = self.evaluate()
        return format_ap_table(self.last_result, digits=digits)
