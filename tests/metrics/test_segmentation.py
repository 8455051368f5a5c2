"""SegmentationMetric against a brute-force oracle of mmseg IoUMetric (docs/EVALUATION.md#segmentation-metric)."""

from __future__ import annotations

import math
import re
import socket
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mtp.metrics.segmentation import (
    PER_CLASS_KEYS,
    SUMMARY_KEYS,
    SegmentationMetric,
    changed_class_scores,
    intersect_and_union,
)

IGNORE = 255


# ------------------------------------------------- oracle (docs/EVALUATION.md#segmentation-metric, literally)
def oracle_counts(preds: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = IGNORE):
    """Per image: drop ignored pixels, histogram classes 0..C-1 (others dropped); sum over images."""
    i_tot = np.zeros(num_classes, dtype=np.int64)
    p_tot = np.zeros(num_classes, dtype=np.int64)
    l_tot = np.zeros(num_classes, dtype=np.int64)
    for pred_img, label_img in zip(preds, target, strict=True):
        keep = label_img != ignore_index
        pred_v, label_v = pred_img[keep], label_img[keep]
        for c in range(num_classes):
            i_tot[c] += int(np.sum((pred_v == c) & (label_v == c)))
            p_tot[c] += int(np.sum(pred_v == c))
            l_tot[c] += int(np.sum(label_v == c))
    return i_tot, p_tot + l_tot - i_tot, p_tot, l_tot


def oracle_metrics(i, u, p, lab, beta: float = 1.0) -> dict[str, np.ndarray]:
    def div(a, b):
        return np.array([x / y if y != 0 else math.nan for x, y in zip(a, b, strict=True)], dtype=np.float64)

    precision, recall = div(i, p), div(i, lab)
    fscore = np.array(
        [
            (1 + beta**2) * pr * rc / (beta**2 * pr + rc) if (beta**2 * pr + rc) != 0 else math.nan
            for pr, rc in zip(precision, recall, strict=True)
        ]
    )
    per_class = {
        "IoU": div(i, u),
        "Acc": div(i, lab),
        "Dice": div(2 * i, p + lab),
        "Fscore": fscore,
        "Precision": precision,
        "Recall": recall,
    }
    out = {"aAcc": np.float64(i.sum() / lab.sum())}
    for key, values in per_class.items():
        finite = values[~np.isnan(values)]
        out["m" + key] = np.float64(finite.mean()) if finite.size else np.float64(math.nan)
    return {**out, **per_class}


def assert_results_equal(results: dict[str, torch.Tensor], expected: dict[str, np.ndarray]) -> None:
    assert set(results) == set(SUMMARY_KEYS) | set(PER_CLASS_KEYS)
    for key, value in expected.items():
        torch.testing.assert_close(
            results[key], torch.as_tensor(value, dtype=torch.float64), equal_nan=True, rtol=1e-12, atol=1e-12, msg=key
        )


def random_maps(seed: int, batch: int = 4, num_classes: int = 6, size: tuple[int, int] = (13, 17)):
    """Random pred/label maps with ignore pixels, out-of-range values and absent classes.

    Class C-1 is absent from both, class C-2 is predicted but never in the GT, class 0 is in the GT
    but never predicted; predictions include -1, C and 255; labels include C (out of range).
    """
    g = torch.Generator().manual_seed(seed)
    c = num_classes
    target = torch.randint(0, c - 2, (batch, *size), generator=g)
    preds = torch.randint(1, c - 1, (batch, *size), generator=g)
    noise = torch.rand((batch, *size), generator=g)
    target[noise < 0.15] = IGNORE
    target[(noise > 0.95)] = c  # out-of-range label, not ignored
    preds[(noise > 0.3) & (noise < 0.4)] = target[(noise > 0.3) & (noise < 0.4)].clamp(max=c - 3).clamp(min=1)
    oor = torch.rand((batch, *size), generator=g)
    preds[oor < 0.05] = -1
    preds[(oor > 0.05) & (oor < 0.1)] = c
    preds[(oor > 0.1) & (oor < 0.12)] = 255
    return preds, target


# ----------------------------------------------------------------------------- oracle comparisons
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_oracle_with_ignore_absent_and_out_of_range(seed: int) -> None:
    c = 6
    preds, target = random_maps(seed, num_classes=c)
    # the random maps really exercise the edge cases
    valid = target != IGNORE
    assert not (target == c - 1).any() and not (preds == c - 1).any()
    assert (preds[valid] == c - 2).any() and not (target == c - 2).any()
    assert (target == 0).any() and not (preds == 0).any()
    assert ((preds < 0) | (preds >= c)).any() and (target == c).any()

    metric = SegmentationMetric(num_classes=c)
    metric.update(preds[:1], target[:1])
    metric.update(preds[1:], target[1:])  # batch split does not matter: counts are sums
    i, u, p, lab = oracle_counts(preds.numpy(), target.numpy(), c)
    for state, ref in zip(
        (metric.area_intersect, metric.area_union, metric.area_pred, metric.area_label), (i, u, p, lab), strict=True
    ):
        assert state.dtype == torch.int64
        assert state.tolist() == ref.tolist()  # exact integer counts
    results = metric.compute()
    assert_results_equal(results, oracle_metrics(i, u, p, lab))
    # the mmseg NaN rules
    assert all(math.isnan(results[k][c - 1].item()) for k in PER_CLASS_KEYS)  # absent from both
    assert results["IoU"][c - 2].item() == 0.0  # predicted, not in GT: IoU 0, counts in the mean
    assert results["IoU"][0].item() == 0.0 and math.isnan(results["Precision"][0].item())


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_beta_matches_oracle(beta: float) -> None:
    preds, target = random_maps(7, num_classes=5)
    metric = SegmentationMetric(num_classes=5, beta=beta)
    metric.update(preds, target)
    assert_results_equal(metric.compute(), oracle_metrics(*oracle_counts(preds.numpy(), target.numpy(), 5), beta))


def test_logits_equal_argmax_and_other_ignore_index() -> None:
    g = torch.Generator().manual_seed(3)
    c = 4
    logits = torch.randn(3, c, 9, 11, generator=g)
    target = torch.randint(-1, c, (3, 9, 11), generator=g)  # -1 is the ignore value here
    probs = logits.softmax(dim=1)
    m_logits, m_probs, m_map = (SegmentationMetric(c, ignore_index=-1) for _ in range(3))
    m_logits.update(logits, target)
    m_probs.update(probs, target)
    m_map.update(logits.argmax(1).to(torch.uint8), target)
    assert m_logits.area_union.tolist() == m_map.area_union.tolist() == m_probs.area_union.tolist()
    ref = oracle_metrics(*oracle_counts(logits.argmax(1).numpy(), target.numpy(), c, ignore_index=-1))
    for m in (m_logits, m_probs, m_map):
        assert_results_equal(m.compute(), ref)


def test_intersect_and_union_single_image_any_shape() -> None:
    pred = torch.tensor([[0, 1, 2], [2, 2, 9]])
    label = torch.tensor([[0, 1, 1], [255, 2, 2]])
    i, u, p, lab = intersect_and_union(pred, label, 3)
    assert (i.tolist(), p.tolist(), lab.tolist(), u.tolist()) == ([1, 1, 1], [1, 1, 2], [1, 2, 2], [1, 2, 3])


# ----------------------------------------------------------------------------- accumulation and hand values
def test_dataset_accumulation_is_not_a_per_image_mean() -> None:
    # image A: 2x2, perfect. image B: 4x4, class 1 GT in 8 pixels, predicted in only 2 of them.
    pred_a = torch.tensor([[[0, 1], [0, 1]]])
    label_a = pred_a.clone()
    label_b = torch.tensor([[[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]])
    pred_b = torch.zeros_like(label_b)
    pred_b[0, 3, :2] = 1
    metric = SegmentationMetric(2)
    metric.update(pred_a, label_a)
    metric.update(pred_b, label_b)
    # dataset counts: I = [2+8, 2+2], P = [2+14, 2+2], L = [2+8, 2+8] -> U = [16, 10]
    results = metric.compute()
    assert results["IoU"].tolist() == pytest.approx([10 / 16, 4 / 10])
    assert results["mIoU"].item() == pytest.approx((10 / 16 + 4 / 10) / 2)  # 0.5125
    assert results["aAcc"].item() == pytest.approx(14 / 20)
    per_image = []
    for p, t in ((pred_a, label_a), (pred_b, label_b)):
        m = SegmentationMetric(2)
        m.update(p, t)
        per_image.append(m.compute()["mIoU"].item())
    assert np.mean(per_image) == pytest.approx((1.0 + (8 / 14 + 2 / 8) / 2) / 2)  # 0.7054
    assert abs(np.mean(per_image) - results["mIoU"].item()) > 0.1


def test_hand_computed_example() -> None:
    c = 4  # class 3 is absent from both -> NaN, excluded
    target = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
    preds = torch.tensor([[[0, 1, 1], [1, 0, 2]]])  # the ignored pixel's prediction (2) is not counted
    metric = SegmentationMetric(c, class_names=["road", "building", "water", "snow"])
    metric.update(preds, target)
    # I = [1, 2, 0, 0], P = [2, 3, 0, 0], L = [2, 2, 1, 0], U = [3, 3, 1, 0]
    assert metric.area_intersect.tolist() == [1, 2, 0, 0]
    assert metric.area_pred.tolist() == [2, 3, 0, 0]
    assert metric.area_label.tolist() == [2, 2, 1, 0]
    assert metric.area_union.tolist() == [3, 3, 1, 0]
    r = metric.compute()
    nan = math.nan
    torch.testing.assert_close(r["IoU"], torch.tensor([1 / 3, 2 / 3, 0, nan], dtype=torch.float64), equal_nan=True)
    torch.testing.assert_close(
        r["Precision"], torch.tensor([0.5, 2 / 3, nan, nan], dtype=torch.float64), equal_nan=True
    )
    torch.testing.assert_close(r["Recall"], torch.tensor([0.5, 1.0, 0.0, nan], dtype=torch.float64), equal_nan=True)
    torch.testing.assert_close(r["Fscore"], torch.tensor([0.5, 0.8, nan, nan], dtype=torch.float64), equal_nan=True)
    torch.testing.assert_close(r["Dice"], torch.tensor([0.5, 0.8, 0.0, nan], dtype=torch.float64), equal_nan=True)
    assert r["aAcc"].item() == pytest.approx(0.6)
    assert r["mIoU"].item() == pytest.approx(1 / 3)
    assert r["mAcc"].item() == pytest.approx(0.5)
    assert r["mFscore"].item() == pytest.approx(0.65)
    assert r["mPrecision"].item() == pytest.approx(7 / 12)
    assert r["mDice"].item() == pytest.approx(1.3 / 3)

    js = metric.to_json(r)
    assert js["aAcc"] == 60.0 and js["mIoU"] == 33.33 and js["mFscore"] == 65.0 and js["mDice"] == 43.33
    assert js["IoU.building"] == 66.67 and js["Fscore.water"] is None and js["IoU.snow"] is None
    assert all(v is None or type(v) is float for v in js.values())
    table = metric.table()
    assert re.search(
        r"\|\s*building\s*\|\s*66\.67\s*\|\s*100\.00\s*\|\s*80\.00\s*\|\s*66\.67\s*\|\s*100\.00\s*\|", table
    )
    assert re.search(r"\|\s*snow\s*\|\s*nan\s*\|", table)
    assert "mIoU: 33.33" in table and "aAcc: 60.00" in table


def test_class_predicted_but_absent_from_gt_counts_as_zero() -> None:
    metric = SegmentationMetric(2)
    metric.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    r = metric.compute()
    assert r["IoU"].tolist() == [0.5, 0.0]
    assert r["mIoU"].item() == 0.25


def test_changed_class_scores() -> None:
    # TP = 6, FP = 2, FN = 3 for class 1; class 0 much larger (its F1 would dominate mFscore)
    target = torch.tensor([[0] * 20 + [1] * 9 + [255] * 3])
    preds = torch.tensor([[0] * 18 + [1] * 2 + [1] * 6 + [0] * 3 + [1] * 3])
    metric = SegmentationMetric(2, class_names=["unchanged", "changed"], beta=2.0)  # F1 regardless of beta
    metric.update(preds, target)
    s = changed_class_scores(metric.compute())
    assert s["Precision"].item() == pytest.approx(6 / 8)
    assert s["Recall"].item() == pytest.approx(6 / 9)
    assert s["F1"].item() == pytest.approx(2 * 6 / (2 * 6 + 2 + 3))
    assert s["IoU"].item() == pytest.approx(6 / 11)
    with pytest.raises(ValueError, match="out of range"):
        changed_class_scores(metric.compute(), changed_index=2)


# ----------------------------------------------------------------------------- large counts, errors
def test_int64_states_do_not_overflow() -> None:
    metric = SegmentationMetric(2)
    for state in (metric.area_intersect, metric.area_union, metric.area_pred, metric.area_label):
        assert state.dtype == torch.int64
    big = 3 * 2**31 + 5  # more pixels than int32 (and float32) can count exactly
    for state in (metric.area_intersect, metric.area_union, metric.area_pred, metric.area_label):
        state += big
    ones = torch.ones(4, 256, 256, dtype=torch.int64)  # all-correct class-1 map, 2^18 pixels
    for _ in range(3):
        metric.update(ones, ones)
    assert metric.area_intersect.tolist() == [big, big + 3 * 2**18]
    assert metric.area_label.sum().item() == 2 * big + 3 * 2**18
    metric.area_pred[0] += 1  # one wrong pixel out of > 1.3e10: still resolved in float64
    metric.area_union[0] += 1
    metric.area_label[1] += 1
    metric.area_union[1] += 1
    r = metric.compute()
    assert r["aAcc"].item() == (2 * big + 3 * 2**18) / (2 * big + 3 * 2**18 + 1) < 1.0


def test_shape_mismatch_error_names_both_shapes() -> None:
    metric = SegmentationMetric(3)
    with pytest.raises(ValueError, match=re.escape("(2, 4, 4)") + ".*" + re.escape("(2, 4, 5)")):
        metric.update(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape("(2, 3, 4, 4)") + ".*" + re.escape("(2, 4, 5)")):
        metric.update(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="5 channels"):
        metric.update(torch.zeros(2, 5, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class map"):
        metric.update(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="class_names"):
        SegmentationMetric(3, class_names=["a", "b"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    preds, target = random_maps(11, batch=8, num_classes=6, size=(64, 96))
    cpu, gpu = SegmentationMetric(6), SegmentationMetric(6).cuda()
    cpu.update(preds, target)
    gpu.update(preds.cuda(), target.cuda())
    assert gpu.area_union.device.type == "cuda"
    assert gpu.area_union.cpu().tolist() == cpu.area_union.tolist()
    r_cpu, r_gpu = cpu.compute(), gpu.compute()
    for k in r_cpu:
        torch.testing.assert_close(r_gpu[k].cpu(), r_cpu[k], equal_nan=True)


# ----------------------------------------------------------------------------- DDP (gloo, 2 processes)
def ddp_batches(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Different data per rank: rank 0 two batches, rank 1 one batch of another size."""
    if rank == 0:
        return [random_maps(100, batch=2, num_classes=5), random_maps(101, batch=1, num_classes=5, size=(8, 8))]
    return [random_maps(200, batch=3, num_classes=5, size=(21, 9))]


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size, timeout=timedelta(seconds=30)
    )
    try:
        metric = SegmentationMetric(5)
        for preds, target in ddp_batches(rank):
            metric.update(preds, target)
        local_union = metric.area_union.clone()
        results = metric.compute()
        assert torch.equal(metric.area_union, local_union)  # the local state is restored after the sync
        torch.save({k: v.cpu() for k, v in results.items()}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_ddp_two_ranks_equal_single_process_union(tmp_path: Path) -> None:
    world_size, deadline = 2, time.monotonic() + 60
    ctx = mp.start_processes(
        _ddp_worker, args=(world_size, _free_port(), str(tmp_path)), nprocs=world_size, join=False, start_method="spawn"
    )
    try:
        while not ctx.join(timeout=0.1):
            if time.monotonic() > deadline:
                pytest.fail("DDP workers did not finish within 60 s")
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    single = SegmentationMetric(5)
    for rank in range(world_size):
        for preds, target in ddp_batches(rank):
            single.update(preds, target)
    expected = single.compute()
    assert not math.isnan(expected["mIoU"].item())
    for rank in range(world_size):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert set(got) == set(expected)
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, equal_nan=True, rtol=0, atol=0, msg=f"rank {rank} {key}")
