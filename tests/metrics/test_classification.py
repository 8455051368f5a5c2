"""Classification metric against a hand computation; accumulation, merging (DDP reduction), outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtp.metrics.classification import ClassificationMetric, confusion_matrix_image

# 6 samples, 4 classes; class 3 never occurs in the targets.
LOGITS = torch.tensor(
    [
        [5.0, 1.0, 0.0, 2.0],  # target 0: top1 0 (hit)
        [0.0, 3.0, 4.0, 1.0],  # target 1: top1 2, top2 {2, 1} (hit)
        [1.0, 0.0, 2.0, 3.0],  # target 2: top1 3, top2 {3, 2} (hit)
        [2.0, 9.0, 0.0, 1.0],  # target 1: top1 1 (hit)
        [0.0, 1.0, 2.0, 3.0],  # target 0: top1 3, top2 {3, 2} (miss)
        [0.0, 0.0, 7.0, 1.0],  # target 2: top1 2 (hit)
    ]
)
TARGET = torch.tensor([0, 1, 2, 1, 0, 2])


def hand(logits: np.ndarray, target: np.ndarray, k: int) -> dict:
    c = logits.shape[1]
    confusion = np.zeros((c, c), np.int64)
    topk = 0
    for row, t in zip(logits, target, strict=True):
        order = sorted(range(c), key=lambda j: (-row[j], j))
        confusion[t, order[0]] += 1
        topk += t in order[:k]
    per_class = [confusion[i, i] / confusion[i].sum() if confusion[i].sum() else math.nan for i in range(c)]
    return {
        "confusion": confusion,
        "top1": np.trace(confusion) / len(target),
        "topk": topk / len(target),
        "pc": per_class,
    }


def test_matches_a_hand_computation_over_several_updates():
    metric = ClassificationMetric(4, top_k=2, class_names=["a", "b", "c", "d"])
    metric.update(LOGITS[:4], TARGET[:4])
    metric.update(LOGITS[4:], TARGET[4:])
    out = metric.compute()
    ref = hand(LOGITS.numpy(), TARGET.numpy(), 2)
    assert out["confusion"].tolist() == ref["confusion"].tolist()
    assert out["confusion"].tolist() == [[1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    assert float(out["top1"]) == pytest.approx(ref["top1"]) == pytest.approx(3 / 6)
    assert float(out["topk"]) == pytest.approx(ref["topk"]) == pytest.approx(5 / 6)
    np.testing.assert_allclose(out["per_class"].numpy(), ref["pc"])  # [0.5, 0.5, 0.5, nan]
    assert math.isnan(float(out["per_class"][3])) and float(out["mean_per_class"]) == pytest.approx(0.5)
    js = metric.to_json(out)
    assert js["accuracy/top1"] == 50.0 and js["accuracy/top2"] == 83.33 and js["accuracy.d"] is None
    assert js["confusion_matrix"][0] == [1, 0, 0, 1] and js["classes"] == ["a", "b", "c", "d"]
    table = metric.table(out)
    assert "top-1" in table and " 50.00 |       2" in table and "nan" in table


def test_random_data_against_hand_and_merge_equals_one_pass():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(50, 7, generator=g), torch.randint(0, 7, (50,), generator=g)
    ref = hand(logits.numpy(), target.numpy(), 5)
    a, b, whole = ClassificationMetric(7), ClassificationMetric(7), ClassificationMetric(7)
    a.update(logits[:20], target[:20])
    b.update(logits[20:], target[20:])
    whole.update(logits, target)
    a.merge_state(b)  # the same sum reduction DDP applies across ranks
    for m in (a, whole):
        out = m.compute()
        assert out["confusion"].tolist() == ref["confusion"].tolist()
        assert float(out["topk"]) == pytest.approx(ref["topk"])
    assert all(fx is torch.sum or getattr(fx, "__name__", "") == "dim_zero_sum" for fx in a._reductions.values())


def test_top_k_is_clamped_and_bad_shapes_fail():
    metric = ClassificationMetric(3, top_k=5)
    metric.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    assert metric.k == 3 and float(metric.compute()["topk"]) == 1.0
    with pytest.raises(ValueError, match=r"logits \(N, 3\)"):
        metric.update(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))


def test_confusion_matrix_image():
    names = [f"class {i}" for i in range(5)]
    confusion = torch.tensor([[3, 1, 0, 0, 0]] + [[0] * 5] * 4)
    img = confusion_matrix_image(confusion, names)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[0] > 5 * 14 and img.shape[1] > 5 * 14
    # the (0, 0) cell (75 % of row 0) is darker than the (0, 2) cell (0 %), which stays white
    cell = max(14, min(48, 900 // 5))
    h0 = img.shape[0] - 8 - 5 * cell
    w0 = img.shape[1] - 8 - 5 * cell
    first = img[h0 + 3, w0 + 3]
    empty = img[h0 + 3, w0 + 2 * cell + 3]
    assert empty.tolist() == [255, 255, 255] and first.sum() < 600
