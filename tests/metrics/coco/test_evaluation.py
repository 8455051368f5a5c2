"""COCO bbox/segm evaluation as mmdet's CocoMetric computes it (docs/EVALUATION.md#coco-metric)."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from torchmetrics.utilities.data import dim_zero_cat

from mtp.metrics.coco.evaluation import (
    STAT_NAMES,
    _coco_from_dict,
    coco_evaluate,
    detections_to_coco_results,
    flatten_metrics,
)
from mtp.metrics.coco.metric import CocoDetectionMetric

H, W = 48, 64


def _box_mask(box, h=H, w=W):
    m = torch.zeros(h, w, dtype=torch.bool)
    x1, y1, x2, y2 = (int(v) for v in box)
    m[y1:y2, x1:x2] = True
    return m


def _gt_dict(boxes_per_image, labels_per_image, num_classes, areas=None):
    images = [{"id": i} for i in range(len(boxes_per_image))]
    anns = []
    for i, (boxes, labels) in enumerate(zip(boxes_per_image, labels_per_image, strict=True)):
        for j, ((x1, y1, x2, y2), lab) in enumerate(zip(boxes, labels, strict=True)):
            area = (x2 - x1) * (y2 - y1) if areas is None else areas[i][j]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": lab + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": area,
                    "iscrowd": 0,
                }
            )
    cats = [{"id": k + 1, "name": f"c{k}"} for k in range(num_classes)]
    return {"images": images, "annotations": anns, "categories": cats}


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


def _assert_same_results(r1, r2):
    for k in STAT_NAMES:
        assert _same(r1[k], r2[k]), k
    assert r1["classwise"].keys() == r2["classwise"].keys()
    for name, row in r1["classwise"].items():
        for k, v in row.items():
            assert _same(v, r2["classwise"][name][k]), (name, k)


def test_perfect_predictions_give_one():
    # small (20x20=400), medium (40x40=1600) and large (100x100) objects; class 2 has no GT.
    gt_boxes = [[[0, 0, 20, 20], [30, 30, 70, 70]], [[0, 0, 100, 100]]]
    gt_labels = [[0, 1], [1]]
    gt = _gt_dict(gt_boxes, gt_labels, num_classes=3)
    results = []
    for i, (b, lab) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        results += detections_to_coco_results(i, b, [0.9] * len(b), lab)
    r = coco_evaluate(gt, results)
    for k in STAT_NAMES:
        assert r[k] == 1.0, k
    assert r["classwise"]["c0"]["AP"] == 1.0 and r["classwise"]["c1"]["AP50"] == 1.0
    assert all(math.isnan(v) for v in r["classwise"]["c2"].values())
    assert "maxDets=100 ]" in r["summary"] and "maxDets=1000 ]" in r["summary"]


def test_hand_case_fp_ranked_above_tp():
    # 3 GTs. Detections in score order: TP, FP, TP, and the third GT is missed.
    # recall = [1/3, 1/3, 2/3], precision = [1, 1/2, 2/3] → monotone [1, 2/3, 2/3].
    # 101-point interpolation: r ∈ {0, ..., 0.33} (34 points) → 1; r ∈ {0.34, ..., 0.66} (33) → 2/3;
    # r ∈ {0.67, ..., 1} (34) → 0.  AP = (34 + 33·2/3) / 101 = 56/101 at every IoU threshold (exact boxes).
    gt = _gt_dict([[[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]], [[0, 0, 0]], num_classes=1)
    results = detections_to_coco_results(
        0, [[0, 0, 10, 10], [100, 100, 110, 110], [20, 0, 30, 10]], [0.9, 0.8, 0.7], [0, 0, 0]
    )
    r = coco_evaluate(gt, results, decimals=None)
    assert r["mAP_50"] == pytest.approx(56 / 101, abs=1e-12)
    assert r["mAP"] == pytest.approx(56 / 101, abs=1e-12)
    assert r["AR@100"] == pytest.approx(2 / 3)
    assert coco_evaluate(gt, results)["mAP_50"] == 0.554  # mmdet's 3-decimal reporting
    assert results[0] == {"image_id": 0, "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.9, "category_id": 1}


def test_max_dets_quirk_map_at_100_others_at_1000():
    # One GT. 149 higher-scored FPs, then the TP ranked 150th: outside maxDets=100, inside 1000.
    gt = _gt_dict([[[0, 0, 10, 10]]], [[0]], num_classes=1)
    fp = [[20 + 3 * (k % 10), 20 + 3 * (k // 10), 22 + 3 * (k % 10), 22 + 3 * (k // 10)] for k in range(149)]
    scores = [*np.linspace(0.99, 0.5, 149).tolist(), 0.1]
    results = detections_to_coco_results(0, [*fp, [0, 0, 10, 10]], scores, [0] * 150)
    r = coco_evaluate(gt, results, decimals=None)
    assert r["mAP"] == 0.0  # stats[0]: maxDets 100 (pycocotools' hard-coded default)
    assert r["mAP_50"] == pytest.approx(1 / 150)  # stats[1]: maxDets[2] = 1000; precision 1/150 everywhere
    assert r["mAP_75"] == pytest.approx(1 / 150)
    assert r["mAP_s"] == pytest.approx(1 / 150)
    assert (r["AR@100"], r["AR@300"], r["AR@1000"]) == (0.0, 1.0, 1.0)
    # mmdet's classwise table indexes maxDets[-1] = 1000 as well.
    assert r["classwise"]["c0"]["AP"] == pytest.approx(1 / 150)


def test_segm_differs_from_bbox_and_takes_areas_from_masks():
    # GT A: 10x10 box = mask (small). FP B (score .9): 50x30 box (area 1500, medium) with a 10x10 mask (small).
    # TP (score .5) equals A in box and mask.
    gt_mask = _box_mask([0, 0, 10, 10])
    gt = _gt_dict([[[0, 0, 10, 10]]], [[0]], num_classes=1)
    gt["images"][0].update(height=H, width=W)
    gt["annotations"][0]["segmentation"] = detections_to_coco_results(0, [[0] * 4], [1], [0], masks=gt_mask[None])[0][
        "segmentation"
    ]
    fp_mask = _box_mask([14, 14, 24, 24])
    masks = torch.stack([fp_mask, gt_mask])
    results = detections_to_coco_results(0, [[14, 14, 64, 44], [0, 0, 10, 10]], [0.9, 0.5], [0, 0], masks=masks)
    rb = coco_evaluate(gt, results, "bbox", decimals=None)
    rs = coco_evaluate(gt, results, "segm", decimals=None)
    # (pycocotools' precision is tp / (tp + fp + eps), hence approx)
    assert rb["mAP"] == pytest.approx(0.5) and rs["mAP"] == pytest.approx(0.5)
    assert rb["mAP_s"] == pytest.approx(1.0)  # the FP box is medium → ignored in the small range
    assert rs["mAP_s"] == pytest.approx(0.5)  # the FP mask is small → counts: the area came from the mask
    assert "bbox" in results[0]  # the caller's results are not modified
    # Why mmdet drops "bbox": pycocotools would otherwise take the box area for segm as well.
    coco_gt = _coco_from_dict(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_gt.loadRes([dict(r) for r in results]), "segm")
        ev.params.maxDets = [100, 300, 1000]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[3] == pytest.approx(1.0)

    # A mask covering 31/50 of its box: segm IoU 0.62 → matched at 0.50, 0.55, 0.60 only.
    gt2 = _gt_dict([[[0, 0, 50, 10]]], [[0]], num_classes=1)
    gt2["images"][0].update(height=H, width=W)
    gt2["annotations"][0]["segmentation"] = mask_utils.encode(
        np.asfortranarray(_box_mask([0, 0, 31, 10]).numpy().astype(np.uint8))
    )
    res2 = detections_to_coco_results(0, [[0, 0, 50, 10]], [0.9], [0], masks=_box_mask([0, 0, 50, 10])[None])
    assert coco_evaluate(gt2, res2, "bbox", decimals=None)["mAP"] == pytest.approx(1.0)
    rs2 = coco_evaluate(gt2, res2, "segm", decimals=None)
    assert (rs2["mAP"], rs2["mAP_50"], rs2["mAP_75"]) == (pytest.approx(0.3), pytest.approx(1.0), 0.0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode under numpy 2
def test_results_conversion_round_trip():
    boxes = torch.tensor([[1.5, 2.0, 11.25, 7.0], [0.0, 0.0, 64.0, 48.0]])
    rng = np.random.default_rng(0)
    masks = rng.random((2, H, W)) > 0.5
    res = detections_to_coco_results(
        [7, 9], boxes, torch.tensor([0.25, 0.75]), torch.tensor([2, 0]), cat_ids={0: 5, 2: 11}, masks=masks
    )
    assert [r["image_id"] for r in res] == [7, 9] and [r["category_id"] for r in res] == [11, 5]
    assert res[0]["bbox"] == [1.5, 2.0, 9.75, 5.0] and res[1]["bbox"] == [0.0, 0.0, 64.0, 48.0]
    assert res[0]["score"] == 0.25
    for r, m in zip(res, masks, strict=True):
        assert isinstance(r["segmentation"]["counts"], str)
        assert r["segmentation"]["size"] == [H, W]
        np.testing.assert_array_equal(mask_utils.decode(r["segmentation"]).astype(bool), m)
    # RLE input with bytes counts passes through, decoded to str
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    res2 = detections_to_coco_results(3, boxes.numpy(), [0.25, 0.75], [2, 0], cat_ids=[1, 2, 3], masks=list(rles))
    assert [r["segmentation"] for r in res2] == [r["segmentation"] for r in res]
    assert [r["category_id"] for r in res2] == [3, 1]
    assert detections_to_coco_results(torch.tensor(4), [[0, 0, 1, 1]], [1.0], [0])[0]["image_id"] == 4
    assert detections_to_coco_results(0, torch.zeros(0, 4), [], [], masks=np.zeros((0, H, W), bool)) == []


def _random_batch(seed, n_images, num_classes, with_crowd=True):
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(n_images):
        n = int(torch.randint(0, 5, (1,), generator=g))
        xy = torch.randint(0, 40, (n, 2), generator=g).float()
        wh = torch.randint(4, 24, (n, 2), generator=g).float()
        boxes = torch.cat([xy, (xy + wh).clamp(max=torch.tensor([W, H]).float())], 1)
        labels = torch.randint(0, num_classes, (n,), generator=g)
        gmasks = torch.stack([_box_mask(b) for b in boxes]) if n else torch.zeros(0, H, W, dtype=torch.bool)
        gmasks[:, ::3, ::2] = False  # masks that differ from their boxes
        iscrowd = torch.zeros(n, dtype=torch.int64)
        if with_crowd and n > 2:
            iscrowd[-1] = 1
        # predictions: jittered GTs plus a few random FPs
        jitter = torch.randint(-3, 4, (n, 4), generator=g).float()
        k = int(torch.randint(0, 4, (1,), generator=g))
        fxy = torch.randint(0, 50, (k, 2), generator=g).float()
        fboxes = torch.cat([fxy, fxy + torch.randint(3, 14, (k, 2), generator=g).float()], 1)
        pboxes = torch.cat([(boxes + jitter).clamp(min=0), fboxes])
        plabels = torch.cat([labels, torch.randint(0, num_classes, (k,), generator=g)])
        scores = torch.rand(n + k, generator=g)
        pmasks = torch.stack([_box_mask(b) for b in pboxes]) if n + k else torch.zeros(0, H, W, dtype=torch.bool)
        preds.append({"boxes": pboxes, "scores": scores, "labels": plabels, "masks": pmasks.float() * 0.9})
        targets.append({"boxes": boxes, "labels": labels, "masks": gmasks, "iscrowd": iscrowd})
    return preds, targets


def _reference(preds, targets, num_classes, iou_type):
    """GT dict and results built directly with pycocotools, image ids = running index, area from masks."""
    gt = {"images": [], "annotations": [], "categories": [{"id": k + 1, "name": str(k)} for k in range(num_classes)]}
    results = []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        gt["images"].append({"id": i, "height": H, "width": W})
        for b, lab, m, c in zip(
            t["boxes"].tolist(), t["labels"].tolist(), t["masks"], t["iscrowd"].tolist(), strict=True
        ):
            rle = mask_utils.encode(np.asfortranarray(m.numpy().astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            ann = {"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": lab + 1, "iscrowd": c}
            ann.update(bbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]], area=float(m.sum()), segmentation=rle)
            gt["annotations"].append(ann)
        results += detections_to_coco_results(i, p["boxes"], p["scores"], p["labels"], masks=p["masks"] >= 0.5)
    return coco_evaluate(gt, results, iou_type, decimals=None)


def test_metric_in_chunks_equals_coco_evaluate():
    preds, targets = _random_batch(0, 7, num_classes=3)
    metric = CocoDetectionMetric(iou_types=("bbox", "segm"), num_classes=3, decimals=None)
    for s in range(0, 7, 2):
        metric.update(preds[s : s + 2], targets[s : s + 2])
    out = metric.compute()
    for iou_type in ("bbox", "segm"):
        ref = _reference(preds, targets, 3, iou_type)
        assert 0.0 < ref["mAP_50"] < 1.0
        _assert_same_results(out[iou_type], ref)
    assert out["bbox"]["mAP"] != out["segm"]["mAP"]
    flat = flatten_metrics(out)
    assert flat["bbox_mAP_50"] == out["bbox"]["mAP_50"] and len(flat) == 2 * len(STAT_NAMES)


def test_metric_survives_gather_with_uneven_ranks():
    """Emulates torchmetrics' all_gather: rank 0 has 3 images, rank 1 has 2, rank 2 none."""
    preds, targets = _random_batch(1, 5, num_classes=2)
    ranks = [CocoDetectionMetric(iou_types=("bbox", "segm"), num_classes=2, decimals=None) for _ in range(3)]
    ranks[0].update(preds[:2], targets[:2])
    ranks[0].update(preds[2:3], targets[2:3])
    ranks[1].update(preds[3:], targets[3:])
    names = list(ranks[0]._reductions)

    def pre_cat(m, name):  # what torchmetrics sends from a rank: one tensor per state, empty float if none
        v = getattr(m, name)
        return dim_zero_cat(v) if v else torch.tensor([], dtype=m.dtype)

    others = iter([[pre_cat(ranks[1], n), pre_cat(ranks[2], n)] for n in names])
    ranks[0]._sync_dist(dist_sync_fn=lambda x, group=None: [x, *next(others)])
    out = ranks[0].compute()
    for iou_type in ("bbox", "segm"):
        _assert_same_results(out[iou_type], _reference(preds, targets, 2, iou_type))


def test_empty_predictions():
    gt = _gt_dict([[[0, 0, 10, 10]]], [[0]], num_classes=2)
    r = coco_evaluate(gt, [])
    assert r["mAP"] == 0.0 and r["mAP_50"] == 0.0 and r["AR@100"] == 0.0 and r["mAP_m"] == -1.0
    assert math.isnan(r["classwise"]["c1"]["AP"]) and r["classwise"]["c0"]["AP"] == 0.0
    metric = CocoDetectionMetric(iou_types=("bbox", "segm"), class_names=["a", "b"])
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    metric.update(
        [{**empty, "masks": torch.zeros(0, H, W, dtype=torch.bool)}],
        [
            {
                "boxes": torch.tensor([[0.0, 0, 10, 10]]),
                "labels": torch.tensor([0]),
                "masks": _box_mask([0, 0, 10, 10])[None],
            }
        ],
    )
    out = metric.compute()
    assert out["bbox"]["mAP"] == 0.0 and out["segm"]["mAP"] == 0.0


def test_categories_without_gt_are_excluded():
    metric = CocoDetectionMetric(class_names=["a", "b", "c"], decimals=None)
    gt_box = torch.tensor([[0.0, 0, 10, 10]])
    pred = {
        "boxes": torch.tensor([[20.0, 20, 30, 30], [0, 0, 10, 10]]),
        "scores": torch.tensor([0.9, 0.5]),
        "labels": torch.tensor([1, 0]),
    }
    metric.update([pred], [{"boxes": gt_box, "labels": torch.tensor([0])}])
    out = metric.compute()["bbox"]
    assert out["mAP"] == pytest.approx(1.0)  # the high-scored FP of class "b" (no GT) does not count
    assert out["classwise"]["a"]["AP"] == pytest.approx(1.0)
    assert math.isnan(out["classwise"]["b"]["AP"]) and math.isnan(out["classwise"]["c"]["AP50"])


def test_gt_area_choice():
    # GT box 40x40 (1600: medium) with a 20x20 mask (400: small); perfect box prediction.
    box = torch.tensor([[0.0, 0, 40, 40]])
    target = {"boxes": box, "labels": torch.tensor([0]), "masks": _box_mask([0, 0, 20, 20])[None]}
    pred = {"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    by_mask = CocoDetectionMetric(num_classes=1)
    by_mask.update([pred], [target])
    by_box = CocoDetectionMetric(num_classes=1, gt_area="box")
    by_box.update([pred], [target])
    given = CocoDetectionMetric(num_classes=1)
    given.update([pred], [{**target, "area": torch.tensor([10000.0])}])
    assert (by_mask.compute()["bbox"]["mAP_s"], by_mask.compute()["bbox"]["mAP_m"]) == (1.0, -1.0)
    assert (by_box.compute()["bbox"]["mAP_s"], by_box.compute()["bbox"]["mAP_m"]) == (-1.0, 1.0)
    assert given.compute()["bbox"]["mAP_l"] == 1.0


def test_per_class_table():
    preds, targets = _random_batch(2, 4, num_classes=3, with_crowd=False)
    metric = CocoDetectionMetric(iou_types=("bbox", "segm"), class_names=["plane", "ship", "tank"])
    metric.update(preds, targets)
    out = metric.compute()
    table = metric.table()
    lines = table.splitlines()
    assert lines[0].split(" | ")[0].strip() == "category"
    assert [h.strip() for h in lines[0].split("|")][1:] == ["bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50"]
    assert len(lines) == 2 + 3
    for name, line in zip(["plane", "ship", "tank"], lines[2:], strict=True):
        cells = [c.strip() for c in line.split("|")]
        assert cells[0] == name
        assert cells[1] == f"{out['bbox']['classwise'][name]['AP']:.3f}"
        assert cells[4] == f"{out['segm']['classwise'][name]['AP50']:.3f}"


def test_invalid_inputs():
    with pytest.raises(ValueError):
        CocoDetectionMetric(iou_types=("keypoints",))
    metric = CocoDetectionMetric(iou_types=("segm",))
    with pytest.raises(ValueError, match="masks"):
        metric.update(
            [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}],
            [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}],
        )
    with pytest.raises(ValueError):
        coco_evaluate(
            _gt_dict([[]], [[]], 1), [{"image_id": 0, "bbox": [0, 0, 1, 1], "score": 1.0, "category_id": 1}], "segm"
        )
