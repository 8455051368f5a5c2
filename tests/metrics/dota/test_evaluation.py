"""DOTA mAP (devkit and mmrotate rules) against brute-force re-statements of docs/EVALUATION.md#dota-map."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon
from torchmetrics.utilities import dim_zero_cat

from mtp.metrics.dota.ap import ELEVEN_POINT_THRESHOLDS, format_ap_table, pr_curve, precision_envelope, voc_ap
from mtp.metrics.dota.evaluation import eval_dota_devkit, eval_rbbox_map, polygon_iou_devkit
from mtp.metrics.dota.metric import DOTAMeanAP
from mtp.ops.rotated.boxes import rbox2poly
from mtp.ops.rotated.iou import rotated_iou


# ----------------------------------------------------------------------------- voc_ap
def test_eleven_point_thresholds_are_the_quirky_floats():
    for key in ("devkit", "mmdet"):
        t = ELEVEN_POINT_THRESHOLDS[key]
        assert len(t) == 11
        assert t[3] == 0.30000000000000004 and t[6] == 0.6000000000000001 and t[7] == 0.7000000000000001
        assert t.tolist() == [i * 0.1 for i in range(11)]


@pytest.mark.parametrize("thresholds", ["devkit", "mmdet"])
def test_recall_point_three_does_not_reach_the_fourth_threshold(thresholds):
    exact = 3 / 11 if thresholds == "devkit" else float(np.float32(np.float32(3) / np.float32(11)))
    assert voc_ap(np.array([0.1, 0.2, 0.3]), np.ones(3), "11points", thresholds) == exact
    assert voc_ap(np.array([0.1, 0.2, 0.3 + 1e-12]), np.ones(3), "11points", thresholds) == pytest.approx(4 / 11)
    # the same through the counts: 3 TPs of 10 GTs (recall is float64 in both styles)
    rec, prec = pr_curve(np.ones(3), np.zeros(3), npos=10, style=thresholds)
    assert rec.dtype == np.float64 and rec[-1] == 0.3
    assert voc_ap(rec, prec, "11points", thresholds) == exact


def test_mmdet_style_uses_float32_precision_and_accumulator():
    rec, prec = pr_curve(np.array([1, 0, 1.0]), np.array([0, 1, 0.0]), npos=2, style="mmdet")
    assert prec.dtype == np.float32 and prec[-1] == np.float32(2) / np.float32(3)
    _, prec64 = pr_curve(np.array([1, 0, 1.0]), np.array([0, 1, 0.0]), npos=2, style="devkit")
    assert prec64[-1] == 2 / 3
    ap32, ap64 = voc_ap(rec, prec, thresholds="mmdet"), voc_ap(rec, prec64, thresholds="devkit")
    assert ap32 != ap64 and ap32 == pytest.approx(ap64, abs=1e-7)
    assert float(np.float32(ap32)) == ap32


def test_area_mode_hand_example():
    # padded: rec [0, .25, .5, .5, 1, 1], prec [0, 1, .5, 2/3, .5, 0] -> envelope [1, 1, 2/3, 2/3, .5, 0]
    # AP = .25 * 1 + .25 * 2/3 + .5 * .5
    ap = voc_ap(np.array([0.25, 0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3, 0.5]), mode="area")
    assert ap == pytest.approx(0.25 + 0.25 * 2 / 3 + 0.25, abs=1e-15)


def test_voc_ap_edge_cases():
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0), mode="area") == 0.0
    assert voc_ap(np.array([1.0]), np.array([1.0])) == pytest.approx(1.0)
    assert voc_ap(np.array([1.0]), np.array([1.0]), mode="area") == 1.0
    with pytest.raises(ValueError):
        voc_ap(np.ones(2), np.ones(3))
    with pytest.raises(ValueError):
        voc_ap(np.ones(2), np.ones(2), mode="voc")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_precision_envelope_is_the_monotone_running_max(prec):
    p = np.array(prec)
    env = precision_envelope(p)
    assert np.all(np.diff(env) <= 0) and np.all(env >= p)
    assert env.tolist() == [max(prec[i:]) for i in range(len(prec))]


# ----------------------------------------------------------------------------- brute force re-statements
def _hbb_iou_plus_one(a: np.ndarray, b: np.ndarray) -> float:
    ax0, ax1, ay0, ay1 = min(a[0::2]), max(a[0::2]), min(a[1::2]), max(a[1::2])
    bx0, bx1, by0, by1 = min(b[0::2]), max(b[0::2]), min(b[1::2]), max(b[1::2])
    iw = max(min(ax1, bx1) - max(ax0, bx0) + 1.0, 0.0)
    ih = max(min(ay1, by1) - max(ay0, by0) + 1.0, 0.0)
    inter = iw * ih
    return inter / ((ax1 - ax0 + 1.0) * (ay1 - ay0 + 1.0) + (bx1 - bx0 + 1.0) * (by1 - by0 + 1.0) - inter)


def _poly_iou(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = Polygon(a.reshape(4, 2)), Polygon(b.reshape(4, 2))
    inter = pa.intersection(pb).area
    return inter / (pa.area + pb.area - inter)


def brute_devkit(dets, anns, classes, thr=0.5, use_07=True):
    """Matching core + devkit rule (docs/EVALUATION.md#dota-map), one detection at a time. Scores are distinct."""
    aps = {}
    for c in classes:
        gt = {
            img: [
                (np.asarray(p), bool(d))
                for p, lab, d in zip(a["polygons"], a["labels"], a["difficult"], strict=True)
                if lab == c
            ]
            for img, a in anns.items()
        }
        npos = sum(not d for g in gt.values() for _, d in g)
        used = {img: [False] * len(g) for img, g in gt.items()}
        tps, fps = [], []
        for img, _, poly in sorted(dets.get(c, []), key=lambda r: -r[1]):
            best, jbest = -math.inf, -1
            for j, (g, _) in enumerate(gt[img]):
                if _hbb_iou_plus_one(np.asarray(poly), g) > 0:
                    iou = _poly_iou(np.asarray(poly), g)
                    if iou > best:
                        best, jbest = iou, j
            if best > thr:
                if gt[img][jbest][1]:
                    tps.append(0.0), fps.append(0.0)
                elif not used[img][jbest]:
                    used[img][jbest] = True
                    tps.append(1.0), fps.append(0.0)
                else:
                    tps.append(0.0), fps.append(1.0)
            else:
                tps.append(0.0), fps.append(1.0)
        ctp, cfp, rec, prec = 0.0, 0.0, [], []
        for t, f in zip(tps, fps, strict=True):
            ctp, cfp = ctp + t, cfp + f
            rec.append(ctp / npos if npos else 0.0)
            prec.append(ctp / max(ctp + cfp, np.finfo(np.float64).eps))
        if use_07:
            ap = 0.0
            for i in range(11):
                t = i * 0.1
                reached = [p for r, p in zip(rec, prec, strict=True) if r >= t]
                ap = ap + (max(reached) if reached else 0.0) / 11.0
        else:
            r, p = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
            for i in range(len(p) - 2, -1, -1):
                p[i] = max(p[i], p[i + 1])
            ap = sum((r[i + 1] - r[i]) * p[i + 1] for i in range(len(r) - 1) if r[i + 1] != r[i])
        aps[c] = ap
    return aps


def _random_quad(rng, cx, cy, size):
    if rng.random() < 0.5:  # a rotated rectangle
        box = torch.tensor([cx, cy, size * rng.uniform(0.5, 1.5), size * rng.uniform(0.3, 1.0), rng.uniform(-3, 3)])
        return rbox2poly(box.double()).numpy()
    ang = np.sort(rng.uniform(0, 2 * np.pi, 4))  # star-shaped (simple, possibly non-convex) quadrilateral
    rad = size * rng.uniform(0.4, 1.0, 4)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).reshape(8)


def random_case(seed, classes=("a", "b", "c"), n_images=3):
    rng = np.random.default_rng(seed)
    anns, dets = {}, {c: [] for c in classes}
    for i in range(n_images):
        n = int(rng.integers(0, 6))
        polys = [_random_quad(rng, *rng.uniform(10, 90, 2), rng.uniform(5, 20)) for _ in range(n)]
        labels = [classes[int(k)] for k in rng.integers(0, len(classes), n)]
        anns[f"img{i}"] = {
            "polygons": np.array(polys).reshape(-1, 8),
            "labels": labels,
            "difficult": (rng.random(n) < 0.25).astype(int),
        }
        for p, lab in zip(polys, labels, strict=True):
            for _ in range(int(rng.integers(0, 3))):  # 0, 1 or 2 (duplicate) detections per object
                det = p + rng.normal(0, rng.choice([0.5, 3.0]), 8)
                while not Polygon(det.reshape(4, 2)).is_valid:  # keep the quads simple (no bow-ties)
                    det = p + rng.normal(0, 0.5, 8)
                c = lab if rng.random() < 0.85 else classes[int(rng.integers(0, len(classes)))]
                dets[c].append((f"img{i}", 0.0, det))
        for _ in range(int(rng.integers(0, 3))):  # background false positives
            c = classes[int(rng.integers(0, len(classes)))]
            dets[c].append((f"img{i}", 0.0, _random_quad(rng, *rng.uniform(10, 90, 2), rng.uniform(5, 20))))
    scores = rng.permutation(sum(len(v) for v in dets.values())) / 100 + 0.001  # distinct
    k = 0
    for c in classes:
        dets[c] = [(img, float(scores[k + j]), poly) for j, (img, _, poly) in enumerate(dets[c])]
        k += len(dets[c])
    return dets, anns


@pytest.mark.parametrize("seed", range(12))
def test_devkit_equals_brute_force(seed):
    classes = ("a", "b", "c")
    dets, anns = random_case(seed, classes)
    for use_07 in (True, False):
        got = eval_dota_devkit(dets, anns, classes, use_07=use_07)
        want = brute_devkit(dets, anns, classes, use_07=use_07)
        assert got["AP"] == want  # exact
        assert got["mAP"] == sum(want.values()) / 3


def test_polygon_iou_devkit_prefilter_and_values():
    a = np.array([[0, 0, 3, 0, 3, 1, 0, 1.0]])
    b = np.array([[1, 0, 4, 0, 4, 1, 1, 1.0], [10, 10, 12, 10, 12, 12, 10, 12], [3.5, 0, 5, 0, 5, 1, 3.5, 1]])
    ious = polygon_iou_devkit(a, b)
    assert ious[0, 0] == 0.5
    assert ious[0, 1] == -np.inf  # HBBs apart: never considered
    assert ious[0, 2] == 0.0  # HBB gap of 0.5 px passes the legacy +1 prefilter, polygon IoU 0
    bowtie = np.array([[0, 0, 3, 1, 3, 0, 0, 1.0]])  # self-intersecting: repaired, no GEOS error
    assert 0 < polygon_iou_devkit(bowtie, a)[0, 0] < 1


# ----------------------------------------------------------------------------- known cases
def box_poly(x0, y0, x1, y1):
    return np.array([x0, y0, x1, y0, x1, y1, x0, y1], dtype=np.float64)


def box_rbox(x0, y0, x1, y1):
    return [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, 0.0]


def both_modes(det_boxes, gt_boxes, gt_difficult=None, classes=("a",), det_labels=None, gt_labels=None):
    """Evaluate one image in both modes; boxes are xyxy, scores descending in the given order."""
    n_det, n_gt = len(det_boxes), len(gt_boxes)
    det_labels = det_labels or [0] * n_det
    gt_labels = gt_labels or [0] * n_gt
    diff = gt_difficult or [0] * n_gt
    scores = [0.9 - 0.1 * k for k in range(n_det)]
    dets = {c: [] for c in classes}
    for b, s, lab in zip(det_boxes, scores, det_labels, strict=True):
        dets[classes[lab]].append(("img", s, box_poly(*b)))
    anns = {
        "img": {
            "polygons": np.array([box_poly(*b) for b in gt_boxes]).reshape(-1, 8),
            "labels": gt_labels,
            "difficult": diff,
        }
    }
    devkit = eval_dota_devkit(dets, anns, classes)
    mm = eval_rbbox_map(
        [{"rboxes": [box_rbox(*b) for b in det_boxes], "scores": scores, "labels": det_labels}],
        [{"rboxes": [box_rbox(*b) for b in gt_boxes], "labels": gt_labels, "difficult": diff}],
        classes,
    )
    return devkit, mm


def test_perfect_and_all_off():
    gts = [(0, 0, 10, 10), (20, 20, 30, 25)]
    for res in both_modes(gts, gts):
        assert res["mAP"] == pytest.approx(1.0)
    for res in both_modes([(50, 50, 60, 60), (70, 70, 80, 80)], gts):
        assert res["mAP"] == 0.0


def test_false_positive_ranked_above_true_positive():
    for res in both_modes([(50, 50, 60, 60), (0, 0, 10, 10)], [(0, 0, 10, 10)]):
        np.testing.assert_allclose(res["precision"]["a"], [0.0, 0.5])
        np.testing.assert_allclose(res["recall"]["a"], [0.0, 1.0])
        assert res["mAP"] == pytest.approx(0.5)


def test_no_fallback_to_the_second_best_gt():
    # det 2 overlaps GT A (IoU .739) more than GT B (IoU .6); A is taken by det 1 -> FP, not TP on B
    for res in both_modes([(0, 0, 10, 10), (1.5, 0, 11.5, 10)], [(0, 0, 10, 10), (4, 0, 14, 10)]):
        assert res["recall"]["a"].tolist() == [0.5, 0.5]
        assert res["mAP"] == pytest.approx(6 / 11)


def test_iou_exactly_half_strict_in_devkit_inclusive_in_mmrotate():
    devkit, mm = both_modes([(1, 0, 4, 1)], [(0, 0, 3, 1)])  # IoU = 2 / 4 = 0.5 exactly
    assert devkit["mAP"] == 0.0
    assert mm["mAP"] == pytest.approx(1.0)


def test_difficult_ignored_by_devkit_counted_by_mmrotate():
    gts, diff = [(0, 0, 10, 10), (20, 0, 30, 10)], [0, 1]
    devkit, mm = both_modes([(0, 0, 10, 10)], gts, diff)
    assert devkit["npos"]["a"] == 1 and devkit["mAP"] == pytest.approx(1.0)
    assert mm["npos"]["a"] == 2 and mm["mAP"] == pytest.approx(6 / 11)
    # a detection on the difficult GT, ranked first: devkit neither TP nor FP, mmrotate a TP
    devkit, mm = both_modes([(20, 0, 30, 10), (0, 0, 10, 10)], gts, diff)
    assert devkit["precision"]["a"].tolist() == [0.0, 1.0] and devkit["mAP"] == pytest.approx(1.0)
    assert mm["mAP"] == pytest.approx(1.0)
    # mmrotate with ignore_difficult behaves like the devkit
    mm_ignore = eval_rbbox_map(
        [{"rboxes": [box_rbox(20, 0, 30, 10), box_rbox(0, 0, 10, 10)], "scores": [0.9, 0.8], "labels": [0, 0]}],
        [{"rboxes": [box_rbox(*b) for b in gts], "labels": [0, 0], "difficult": diff}],
        ["a"],
        ignore_difficult=True,
    )
    assert mm_ignore["npos"]["a"] == 1 and mm_ignore["precision"]["a"].tolist() == [0.0, 1.0]


def test_devkit_v15_rule_counts_difficult():
    dets = {"a": [("img", 0.9, box_poly(0, 0, 10, 10))]}
    anns = {
        "img": {
            "polygons": np.stack([box_poly(0, 0, 10, 10), box_poly(20, 0, 30, 10)]),
            "labels": ["a", "a"],
            "difficult": [0, 1],
        }
    }
    assert eval_dota_devkit(dets, anns, ["a"], ignore_difficult=False)["npos"]["a"] == 2


def test_map_denominators_differ():
    # class b detected perfectly, class a half, class c has detections but no GT
    devkit, mm = both_modes(
        [(0, 0, 10, 10), (40, 40, 50, 50), (60, 60, 70, 70)],
        [(0, 0, 10, 10), (20, 0, 30, 10), (40, 40, 50, 50)],
        classes=("a", "b", "c"),
        det_labels=[0, 1, 2],
        gt_labels=[0, 0, 1],
    )
    for res in (devkit, mm):
        assert res["AP"]["a"] == pytest.approx(6 / 11) and res["AP"]["b"] == pytest.approx(1.0)
        assert res["AP"]["c"] == 0.0 and res["npos"]["c"] == 0
    assert devkit["mAP"] == pytest.approx((6 / 11 + 1) / 3)
    assert mm["mAP"] == pytest.approx((6 / 11 + 1) / 2)
    table = format_ap_table(mm)
    assert "mAP" in table and table.count("\n") == 3 + 3


def test_rbbox_map_accepts_polygon_gt_and_unknown_labels():
    polys = np.stack([box_poly(0, 0, 10, 4), box_poly(20, 0, 24, 10)])
    res = eval_rbbox_map(
        [
            {
                "rboxes": torch.tensor([box_rbox(0, 0, 10, 4), box_rbox(20, 0, 24, 10)]),
                "scores": [0.9, 0.8],
                "labels": [0, 0],
            }
        ],
        [{"polygons": polys, "labels": ["a", "zzz"]}],
        ["a"],
    )
    assert res["npos"]["a"] == 1 and res["AP"]["a"] == pytest.approx(1.0)
    assert res["precision"]["a"].tolist() == [1.0, 0.5]


def brute_mmrotate(preds, targets, num_classes, thr=0.5):
    """Matching core + mmrotate rule (docs/EVALUATION.md#dota-map): rotated IoU, >=, difficult counted, ignore flags
    ignored, mean over GT classes."""
    aps, with_gt = [], []
    for c in range(num_classes):
        rows, npos, used = [], 0, {}
        for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
            keep = [k for k in range(len(t["labels"])) if int(t["labels"][k]) == c]
            ign = [bool(t["ignore"][k]) for k in keep]
            gts = [t["rboxes"][k] for k in keep]
            npos += sum(not x for x in ign)
            used[i] = [False] * len(gts)
            for k in range(len(p["labels"])):
                if int(p["labels"][k]) != c:
                    continue
                best, jbest = -1.0, -1
                for order in sorted(range(len(gts)), key=lambda j: ign[j]):  # non-ignored GTs first
                    iou = float(rotated_iou(p["rboxes"][k : k + 1].float(), gts[order][None].float()))
                    if iou > best:
                        best, jbest = iou, order
                rows.append((float(p["scores"][k]), i, best, jbest, ign))
        tp, fp = [], []
        for _, i, best, j, ign in sorted(rows, key=lambda r: -r[0]):
            if j >= 0 and best >= thr:
                if ign[j]:
                    tp.append(0), fp.append(0)
                elif not used[i][j]:
                    used[i][j] = True
                    tp.append(1), fp.append(0)
                else:
                    tp.append(0), fp.append(1)
            else:
                tp.append(0), fp.append(1)
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        rec = ctp / max(npos, 1e-7)
        prec = ctp / np.maximum(ctp + cfp, 1e-7)
        ap = sum(max([q for r, q in zip(rec, prec, strict=True) if r >= i * 0.1], default=0.0) for i in range(11)) / 11
        aps.append(ap)
        if npos:
            with_gt.append(ap)
    return aps, (sum(with_gt) / len(with_gt) if with_gt else 0.0)


@pytest.mark.parametrize("seed", range(4))
def test_rbbox_map_equals_brute_force(seed):
    preds, targets = random_batches(seed + 10, n_images=5)
    g = torch.Generator().manual_seed(seed)
    for t in targets:
        t["ignore"] = torch.rand(len(t["labels"]), generator=g) < 0.2
    got = eval_rbbox_map(preds, targets, 3)
    want_aps, want_map = brute_mmrotate(preds, targets, 3)
    assert list(got["AP"].values()) == pytest.approx(want_aps, abs=1e-6)
    assert got["mAP"] == pytest.approx(want_map, abs=1e-6)


# ----------------------------------------------------------------------------- DOTAMeanAP
def random_batches(seed, n_images=6, num_classes=3):
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(n_images):
        n = int(torch.randint(0, 5, (1,), generator=g))
        gt = torch.cat(
            [
                torch.rand(n, 2, generator=g) * 100,
                torch.rand(n, 2, generator=g) * 20 + 5,
                torch.rand(n, 1, generator=g) * 3,
            ],
            1,
        )
        labels = torch.randint(0, num_classes, (n,), generator=g)
        det = gt.repeat(2, 1) + torch.randn(2 * n, 5, generator=g) * torch.tensor([2.0, 2.0, 1.0, 1.0, 0.1])
        det_labels = torch.where(torch.rand(2 * n, generator=g) < 0.9, labels.repeat(2), labels.repeat(2).flip(0))
        preds.append({"rboxes": det.float(), "scores": torch.rand(2 * n, generator=g), "labels": det_labels})
        targets.append({"rboxes": gt, "labels": labels, "difficult": (torch.rand(n, generator=g) < 0.3).long()})
    return preds, targets


@pytest.mark.parametrize("mode", ["mmrotate", "devkit"])
def test_metric_equals_functional_and_chunking(mode):
    preds, targets = random_batches(0)
    if mode == "mmrotate":
        want = eval_rbbox_map(preds, targets, ["x", "y", "z"])
    else:
        dets = {c: [] for c in "xyz"}
        for i, p in enumerate(preds):
            for box, s, lab in zip(
                rbox2poly(p["rboxes"].double()).numpy(), p["scores"].tolist(), p["labels"], strict=True
            ):
                dets["xyz"[lab]].append((str(i), s, box))
        anns = {
            str(i): {
                "polygons": rbox2poly(t["rboxes"].double()).numpy(),
                "labels": t["labels"].numpy(),
                "difficult": t["difficult"].numpy(),
            }
            for i, t in enumerate(targets)
        }
        want = eval_dota_devkit(dets, anns, "xyz")
    assert 0 < want["mAP"] < 1
    whole, chunked = DOTAMeanAP(["x", "y", "z"], mode=mode), DOTAMeanAP(["x", "y", "z"], mode=mode)
    whole.update(preds, targets)
    for k in range(0, len(preds), 2):
        chunked.update(preds[k : k + 2], targets[k : k + 2])
    for metric in (whole, chunked):
        out = metric.compute()
        assert set(out) == {"mAP", "AP_x", "AP_y", "AP_z"}
        assert out["mAP"].item() == want["mAP"]
        assert out["AP_y"].item() == want["AP"]["y"]
    rows = whole.table().splitlines()
    assert [r.split()[0] for r in rows[2:5]] == ["x", "y", "z"] and rows[-1].startswith("mAP")
    whole.reset()
    assert whole.det_rboxes == []
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert whole.compute()["mAP"].item() == 0.0


def _emulated_sync(rank0: DOTAMeanAP, others: list[DOTAMeanAP]) -> None:
    """Run torchmetrics' own ``_sync_dist`` on rank 0 with a gather that returns every rank's state."""
    gathered = []
    for attr in rank0._reductions:
        states = []
        for m in others:
            value = getattr(m, attr)
            states.append(dim_zero_cat(value) if value else torch.tensor([], dtype=m.dtype))
        gathered.append(states)
    it = iter(gathered)
    rank0._sync_dist(dist_sync_fn=lambda t, group=None: [t, *next(it)])


def test_metric_states_merge_like_ddp():
    preds, targets = random_batches(1, n_images=7)
    single = DOTAMeanAP(3)
    single.update(preds, targets)
    want = single.compute()["mAP"].item()
    r0, r1, r2 = DOTAMeanAP(3), DOTAMeanAP(3), DOTAMeanAP(3)  # r2 never updates
    r0.update(preds[:3], targets[:3])
    r1.update(preds[3:5], targets[3:5])
    r1.update(preds[5:], targets[5:])
    _emulated_sync(r0, [r1, r2])
    assert isinstance(r0.det_rboxes, torch.Tensor)
    assert r0.compute()["mAP"].item() == want
