"""Semantic-segmentation and change-detection metrics equivalent to mmseg's ``IoUMetric``.

Semantics (docs/EVALUATION.md#segmentation-metric, docs/EVALUATION.md#change-detection-metric):

* Per image, pixels whose label equals ``ignore_index`` (255) are removed. On the remaining pixels
  four per-class pixel counts are taken: ``I_c`` (pred == label == c), ``P_c`` (pred == c),
  ``L_c`` (label == c) and ``U_c = P_c + L_c - I_c``.
* Values outside ``[0, C-1]`` are dropped silently, as ``torch.histc(bins=C, min=0, max=C-1)`` does in
  mmseg: an out-of-range prediction adds nothing to any ``P_c`` or ``I_c`` (its pixel still counts in
  ``L`` of its label), and an out-of-range label (other than ``ignore_index``) adds nothing to any
  ``L_c`` or ``I_c`` (its pixel still counts in ``P`` of its prediction).
* The counts are summed over the **whole dataset** (every ``update`` and, under DDP, every rank) before
  any ratio is taken; the result is *not* a per-image mean.
* Per class: ``IoU = I/U``, ``Acc = Recall = I/L``, ``Dice = 2I/(P+L)``, ``Precision = I/P`` and
  ``Fscore = (1+β²)·Precision·Recall / (β²·Precision + Recall)``. A 0/0 is NaN, exactly as in mmseg:
  a class absent from both prediction and GT is NaN everywhere and left out of the means; a class
  absent from the GT but predicted gets IoU 0 and counts. Following the formula literally, Fscore is
  also NaN when Precision or Recall is NaN, or when both are 0 (a class predicted and present but never
  hit), where Dice is 0.
* ``aAcc = ΣI / ΣL``; ``mIoU``, ``mAcc``, ``mDice``, ``mFscore``, ``mPrecision`` and ``mRecall`` are the
  NaN-mean over classes (``nan_to_num`` off, as mmseg's default).

:meth:`SegmentationMetric.compute` returns **fractions in [0, 1]**. mmseg prints and logs the same
values ×100 rounded to 2 decimals (numpy ``round``); :meth:`SegmentationMetric.to_json` and
:meth:`SegmentationMetric.table` do that conversion. Counts are exact int64 (mmseg sums float32
histograms, which lose exactness past 2^24 pixels per class), ratios are taken in float64, so the
second decimal can differ from mmseg's only on rare rounding ties.

``reduce_zero_label`` is not the metric's business: it belongs to the loading transform (0 → 255,
v → v − 1), as in mmseg.

Change detection (Open-CD, binary, 2 classes): the headline "F1" is the per-class Fscore of class 1
("changed"), not mFscore; see :func:`changed_class_scores`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "PER_CLASS_KEYS",
    "SUMMARY_KEYS",
    "TABLE_KEYS",
    "SegmentationMetric",
    "changed_class_scores",
    "intersect_and_union",
]

#: Scalar entries of :meth:`SegmentationMetric.compute`, in mmseg's reporting order.
SUMMARY_KEYS = ("aAcc", "mIoU", "mAcc", "mDice", "mFscore", "mPrecision", "mRecall")
#: Per-class entries of :meth:`SegmentationMetric.compute` (tensors of length C).
PER_CLASS_KEYS = ("IoU", "Acc", "Dice", "Fscore", "Precision", "Recall")
#: Columns of the per-class table (mmseg's ``['mIoU', 'mFscore']`` table plus Acc).
TABLE_KEYS = ("IoU", "Acc", "Fscore", "Precision", "Recall")


def intersect_and_union(
    preds: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-class int64 pixel counts ``(I, U, P, L)`` of integer maps ``preds`` and ``target``.

    ``preds`` and ``target`` have the same shape (any); all their pixels are pooled. Pixels with
    ``target == ignore_index`` are skipped; values outside ``[0, num_classes-1]`` are dropped as
    ``torch.histc`` drops them (see the module docstring). One ``torch.bincount`` over a joint
    (label, pred) index: out-of-range values go to an extra row/column ``C`` and ignored pixels to a
    last trash bin, so the output length is fixed and no boolean indexing is needed. On CUDA,
    ``bincount`` synchronises once (it checks the largest index).
    """
    c = num_classes
    pred = preds.reshape(-1).long()
    label = target.reshape(-1).long()
    pred = torch.where((pred >= 0) & (pred < c), pred, c)
    joint = torch.where((label >= 0) & (label < c), label, c) * (c + 1) + pred
    joint = torch.where(label == ignore_index, (c + 1) ** 2, joint)
    cm = torch.bincount(joint, minlength=(c + 1) ** 2 + 1)[: (c + 1) ** 2].view(c + 1, c + 1)
    area_intersect = cm.diagonal()[:c]
    area_pred = cm[:, :c].sum(0)  # every non-ignored pixel, whatever its label
    area_label = cm[:c, :].sum(1)  # every non-ignored pixel, whatever its prediction
    return area_intersect, area_pred + area_label - area_intersect, area_pred, area_label


def _percent(value: float | Tensor) -> float | None:
    """mmseg's reporting: ×100, numpy round to 2 decimals; NaN → None."""
    value = float(value)
    return None if math.isnan(value) else float(np.round(value * 100, 2))


class SegmentationMetric(Metric):
    """mmseg ``IoUMetric`` (mIoU + mDice + mFscore) as a torchmetrics metric; DDP-safe.

    Args:
        num_classes: C; classes are ``0..C-1``.
        ignore_index: label value whose pixels are skipped (255, the project's mask convention).
        class_names: C names for :meth:`table` and :meth:`to_json` (default ``"0"``, ``"1"``, ...).
        beta: β of the Fscore (1 → F1).

    ``update(preds, target)``: ``target`` is an integer map (B, H, W); ``preds`` is either an integer
    class map of the same shape or (B, C, H, W) logits / probabilities (argmax over C). CPU or CUDA.

    ``compute()`` returns a dict of float64 tensors, fractions in [0, 1]: the scalars
    :data:`SUMMARY_KEYS` and the per-class vectors :data:`PER_CLASS_KEYS` (NaN where 0/0). See the
    module docstring for the exact rules. Log only the scalars (e.g. ``log_dict({k: r[k] for k in
    SUMMARY_KEYS})``); write :meth:`to_json` to a metrics file and print :meth:`table`.

    States are per-class int64 sums (``dist_reduce_fx="sum"``), so dataset totals over 2^31 pixels
    are exact and DDP gives the metric of the union of all ranks' data.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    area_intersect: Tensor
    area_union: Tensor
    area_pred: Tensor
    area_label: Tensor

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        class_names: Sequence[str] | None = None,
        beta: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if class_names is None:
            class_names = [str(i) for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names given for num_classes={num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names)
        self.beta = float(beta)
        for name in ("area_intersect", "area_union", "area_pred", "area_label"):
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add the pixel counts of a batch; see the class docstring for the accepted shapes."""
        if target.is_floating_point() or target.is_complex():
            raise ValueError(f"target must be an integer class map, got dtype {target.dtype}")
        if preds.ndim == target.ndim + 1 and target.ndim >= 1:
            if preds.shape[:1] + preds.shape[2:] != target.shape:
                raise ValueError(
                    f"preds (logits, B x C x ...) shape {tuple(preds.shape)} does not match "
                    f"target shape {tuple(target.shape)}"
                )
            if preds.shape[1] != self.num_classes:
                raise ValueError(
                    f"preds (logits) shape {tuple(preds.shape)} has {preds.shape[1]} channels, "
                    f"expected num_classes={self.num_classes} (target shape {tuple(target.shape)})"
                )
            preds = preds.argmax(dim=1)
        elif preds.shape != target.shape:
            raise ValueError(
                f"preds shape {tuple(preds.shape)} does not match target shape {tuple(target.shape)}; "
                "expected equal shapes (class maps) or preds = B x C x target spatial shape (logits)"
            )
        elif preds.is_floating_point() or preds.is_complex():
            raise ValueError(
                f"preds of target's shape must be an integer class map, got dtype {preds.dtype} "
                "(pass B x C x H x W logits/probabilities to take the argmax)"
            )
        counts = intersect_and_union(preds, target, self.num_classes, self.ignore_index)
        device = self.area_intersect.device
        self.area_intersect += counts[0].to(device)
        self.area_union += counts[1].to(device)
        self.area_pred += counts[2].to(device)
        self.area_label += counts[3].to(device)

    def compute(self) -> dict[str, Tensor]:
        """The metrics of all pixels seen so far (fractions; NaN where 0/0)."""
        i, u = self.area_intersect.double(), self.area_union.double()
        p, lab = self.area_pred.double(), self.area_label.double()
        precision = i / p
        recall = i / lab
        b2 = self.beta**2
        per_class = {
            "IoU": i / u,
            "Acc": recall,
            "Dice": 2 * i / (p + lab),
            "Fscore": (1 + b2) * precision * recall / (b2 * precision + recall),
            "Precision": precision,
            "Recall": recall,
        }
        results = {"aAcc": i.sum() / lab.sum()}
        for key in PER_CLASS_KEYS:
            results["m" + key] = torch.nanmean(per_class[key])
        return {**{k: results[k] for k in SUMMARY_KEYS}, **per_class}

    def _results(self, results: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
        results = self.compute() if results is None else results
        return {k: torch.as_tensor(v).detach().cpu() for k, v in results.items()}  # one transfer, not C syncs

    def table(self, results: Mapping[str, Tensor] | None = None) -> str:
        """mmseg-style per-class text table (×100, 2 decimals, ``nan`` kept) and a summary line."""
        results = self._results(results)
        header = ("Class", *TABLE_KEYS)
        rows = [(name, *(_fmt(results[k][c]) for k in TABLE_KEYS)) for c, name in enumerate(self.class_names)]
        widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
        rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

        def line(cells: Sequence[str]) -> str:
            padded = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
            return "| " + " | ".join(padded) + " |"

        summary = "Summary: " + ", ".join(f"{k}: {_fmt(results[k])}" for k in SUMMARY_KEYS)
        return "\n".join(["per class results:", rule, line(header), rule, *map(line, rows), rule, summary])

    def to_json(self, results: Mapping[str, Tensor] | None = None) -> dict[str, float | None]:
        """Plain floats for a metrics JSON: ×100, rounded to 2 decimals, NaN → None.

        Keys: the :data:`SUMMARY_KEYS` (``"mIoU"`` ...) and ``"<metric>.<class name>"`` for every
        per-class metric (``"IoU.building"``, as mmseg 0.x named them).
        """
        results = self._results(results)
        out = {k: _percent(results[k]) for k in SUMMARY_KEYS}
        for key in PER_CLASS_KEYS:
            for c, name in enumerate(self.class_names):
                out[f"{key}.{name}"] = _percent(results[key][c])
        return out


def _fmt(value: float | Tensor) -> str:
    pct = _percent(value)
    return "nan" if pct is None else f"{pct:.2f}"


def changed_class_scores(results: Mapping[str, Tensor], changed_index: int = 1) -> dict[str, Tensor]:
    """Change-detection headline numbers: F1, Precision, Recall and IoU of class ``changed``.

    ``results`` is :meth:`SegmentationMetric.compute`'s output of a binary CD metric (Open-CD:
    2 classes, 0 unchanged, 1 changed, 255 ignored). With the dataset-accumulated counts of the
    changed class, TP = I, FP = P − I, FN = L − I: Precision = TP/(TP+FP), Recall = TP/(TP+FN),
    F1 = 2PR/(P+R) (computed here, so it is F1 whatever β the metric used) and IoU = TP/(TP+FP+FN).
    Returns 0-d float tensors, fractions (×100 for the README numbers, e.g. LEVIR F1 92.67).
    """
    n = results["IoU"].numel()
    if not 0 <= changed_index < n:
        raise ValueError(f"changed_index {changed_index} out of range for {n} classes")
    precision = results["Precision"][changed_index]
    recall = results["Recall"][changed_index]
    return {
        "F1": 2 * precision * recall / (precision + recall),
        "Precision": precision,
        "Recall": recall,
        "IoU": results["IoU"][changed_index],
    }
