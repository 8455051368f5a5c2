"""Scene-classification metrics: top-1 / top-k accuracy (mmpretrain ``Accuracy``), per-class accuracy and
the confusion matrix, as one DDP-safe torchmetrics ``Metric``.

Semantics:

* ``update(logits, target)``: logits/scores (N, C) float, target (N,) int64 in [0, C-1]. Top-1 uses the
  arg-max (ties: the lowest index, as ``topk``); top-k counts a sample correct when its target is among
  the ``k`` highest scores (``k`` is clamped to C, so with fewer than k classes top-k is 1).
* States are sums (the C x C confusion matrix, the top-k hit count, the sample count) reduced with
  ``sum`` across processes, so the result is the accuracy over the whole dataset on every rank.
* ``confusion[i, j]`` = number of samples of true class i predicted as j (rows = truth).
* ``per_class`` accuracy of class i = ``confusion[i, i] / confusion[i].sum()`` (the recall; NaN for a
  class without samples); ``mean_per_class`` is the NaN-mean of it.

:meth:`ClassificationMetric.compute` returns fractions in [0, 1]; :meth:`ClassificationMetric.to_json`
reports percentages with 2 decimals under mmpretrain's names ``accuracy/top1`` / ``accuracy/top5``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["ClassificationMetric"]


class ClassificationMetric(Metric):
    """Confusion matrix + top-k accuracy. ``class_names`` (optional) label the table and the JSON."""

    full_state_update = False

    def __init__(self, num_classes: int, top_k: int = 5, class_names: Sequence[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_classes < 1 or top_k < 1:
            raise ValueError(f"num_classes and top_k must be >= 1, got {num_classes}, {top_k}")
        self.num_classes, self.top_k = num_classes, top_k
        self.class_names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("topk_correct", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    @property
    def k(self) -> int:
        return min(self.top_k, self.num_classes)

    def update(self, logits: Tensor, target: Tensor) -> None:
        c = self.num_classes
        if logits.ndim != 2 or logits.shape[1] != c or target.shape != logits.shape[:1]:
            raise ValueError(
                f"expected logits (N, {c}) and target (N,), got {tuple(logits.shape)}, {tuple(target.shape)}"
            )
        target = target.long()
        topk = logits.topk(self.k, dim=1).indices
        joint = target * c + topk[:, 0]
        self.confusion += torch.bincount(joint, minlength=c * c).reshape(c, c)
        self.topk_correct += (topk == target[:, None]).any(dim=1).sum()
        self.total += target.numel()

    def compute(self) -> dict[str, Tensor]:
        """``top1``, ``topk`` (k = self.k), ``mean_per_class`` scalars; ``per_class`` (C,); ``confusion`` (C, C)."""
        confusion = self.confusion
        total = self.total.clamp(min=1).double()
        support = confusion.sum(dim=1).double()
        per_class = confusion.diagonal().double() / support  # NaN where a class has no samples
        return {
            "top1": confusion.diagonal().sum().double() / total,
            "topk": self.topk_correct.double() / total,
            "mean_per_class": per_class.nanmean(),
            "per_class": per_class,
            "support": support.long(),
            "confusion": confusion.clone(),
        }

    def to_json(self, results: dict[str, Tensor]) -> dict:
        """mmpretrain-style percentages (2 decimals), per-class accuracy and the confusion matrix."""

        def pct(value: Tensor) -> float | None:
            v = float(value)
            return None if math.isnan(v) else round(100.0 * v, 2)

        out = {
            "accuracy/top1": pct(results["top1"]),
            f"accuracy/top{self.k}": pct(results["topk"]),
            "accuracy/mean_per_class": pct(results["mean_per_class"]),
            "num_samples": int(self.total),
        }
        for name, acc in zip(self.class_names, results["per_class"], strict=True):
            out[f"accuracy.{name}"] = pct(acc)
        out["classes"] = list(self.class_names)
        out["confusion_matrix"] = results["confusion"].tolist()
        return out

    def table(self, results: dict[str, Tensor]) -> str:
        """Per-class accuracy table (%, samples) plus the overall lines."""
        width = max(12, *(len(n) for n in self.class_names))
        lines = [f"{'class':<{width}} | {'acc %':>7} | {'samples':>7}", "-" * (width + 22)]
        for name, acc, n in zip(self.class_names, results["per_class"], results["support"], strict=True):
            value = "nan" if math.isnan(float(acc)) else f"{100 * float(acc):.2f}"
            lines.append(f"{name:<{width}} | {value:>7} | {int(n):>7}")
        lines.append("-" * (width + 22))
        lines.append(f"{'top-1':<{width}} | {100 * float(results['top1']):>7.2f} | {int(self.total):>7}")
        lines.append(f"{f'top-{self.k}':<{width}} | {100 * float(results['topk']):>7.2f} |")
        return "\n".join(lines)


def confusion_matrix_image(confusion: Tensor, class_names: Sequence[str], cell: int | None = None):
    """Draw a confusion matrix (rows = truth, columns = prediction) as an (H, W, 3) uint8 RGB array.

    Cells are shaded white -> blue by the row-normalised fraction and show the raw count when they are
    large enough; rows carry ``index: name`` on the left, columns the index on top. cv2 drawing only.
    """
    import cv2
    import numpy as np

    counts = confusion.detach().cpu().long().numpy()
    c = counts.shape[0]
    cell = cell or max(14, min(48, 900 // max(c, 1)))
    labels = [f"{i}: {n}" for i, n in enumerate(class_names)]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.3, cell / 80)
    left = 8 + max(cv2.getTextSize(t, font, scale, 1)[0][0] for t in labels)
    top = 12 + 2 * cv2.getTextSize("0", font, scale, 1)[0][1] + 8
    img = np.full((top + c * cell + 8, left + c * cell + 8, 3), 255, np.uint8)
    rows = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros(counts.shape, np.float64), where=rows > 0)
    cv2.putText(img, "truth \\ prediction", (4, 14), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(c):
        y = top + i * cell
        cv2.putText(img, labels[i], (4, y + cell // 2 + 4), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, str(i), (left + i * cell + 2, top - 6), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(c):
            x, f = left + j * cell, frac[i, j]
            colour = (int(255 * (1 - 0.9 * f)), int(255 * (1 - 0.6 * f)), 255)  # RGB: white -> blue
            cv2.rectangle(img, (x, y), (x + cell - 1, y + cell - 1), colour, -1)
            cv2.rectangle(img, (x, y), (x + cell - 1, y + cell - 1), (200, 200, 200), 1)
            if counts[i, j] and cell >= 20:
                ink = (255, 255, 255) if f > 0.5 else (0, 0, 0)
                cv2.putText(img, str(counts[i, j]), (x + 2, y + cell // 2 + 4), font, scale * 0.8, ink, 1, cv2.LINE_AA)
    return img
