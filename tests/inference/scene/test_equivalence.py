"""predict-scene equals whole-image inference on a scene that fits in memory: segmentation / change detection
against :func:`mtp.inference.segmentation.slide_inference` (same argmax), detection against per-patch inference
merged by the DOTA rule (:func:`mtp.metrics.dota.submission.merge_patch_detections`; same boxes within 1e-3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from torchvision.ops import batched_nms

from mtp.data.synthetic import write_scene_geotiff
from mtp.data.tools.dota_split import parse_patch_id
from mtp.inference.outputs import IMAGENET_MEAN, IMAGENET_STD
from mtp.inference.scene import SceneOptions, load_task, predict_scene
from mtp.inference.scene.grid import TileGrid
from mtp.inference.scene.objects import cut_by_inner_edge
from mtp.inference.segmentation import slide_inference
from mtp.metrics.dota.submission import merge_patch_detections
from mtp.ops import rbox2hbox
from tests.inference.scene.conftest import oracle_config
from tests.inference.scene.scenes import write_scene

TILE, OVERLAP = 64, 16


def _normalised(path) -> torch.Tensor:
    with rasterio.open(path) as ds:
        image = torch.from_numpy(ds.read().astype(np.float32))
    return (image - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


def _objects(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    features = json.loads(path.read_text())["features"]
    key = "pixel_rbox" if "pixel_rbox" in features[0]["properties"] else "pixel_bbox"
    boxes = np.array([f["properties"][key] for f in features], np.float64)
    scores = np.array([f["properties"]["score"] for f in features])
    labels = np.array([f["properties"]["class_id"] for f in features])
    return _sorted(boxes, scores, labels)


def _sorted(boxes, scores, labels):
    order = np.lexsort((boxes[:, 1], boxes[:, 0], labels, -np.round(scores, 5)))
    return boxes[order], np.round(scores[order], 5), labels[order]


@pytest.mark.parametrize("blend", ["mean"])
def test_segmentation_equals_slide_inference(tmp_path, tiny_task_files, blend):
    scene = write_scene_geotiff(tmp_path / "scene.tif", height=224, width=256, block=128, nodata_fraction=0).images[0]
    config, ckpt = tiny_task_files("segmentation")
    task = load_task(config, ckpt)
    result = predict_scene(task, scene, tmp_path / "out", options=SceneOptions(tile=TILE, overlap=OVERLAP,
                           batch_size=3, progress=False, blend=blend, probs=True))  # fmt: skip
    with torch.no_grad():
        logits = slide_inference(task.model.eval(), _normalised(scene)[None], crop=TILE, stride=TILE - OVERLAP,
                                 size_divisor=16, batch_windows=8)  # fmt: skip
    expected = logits.argmax(1)[0].numpy()
    top2 = logits[0].topk(2, dim=0).values
    tie = (top2[0] - top2[1]).numpy() < 1e-5
    with rasterio.open(result.paths["classes"]) as out:
        got = out.read(1)
    assert got.shape == expected.shape
    assert np.array_equal(got[~tie], expected[~tie])
    assert len(np.unique(expected)) > 1  # a real map, not a constant
    with rasterio.open(result.paths["probs"]) as out:  # the averaged logits themselves, through the softmax
        probs = out.read().astype(np.float64) / 254
    assert np.abs(probs - logits[0].softmax(0).numpy()).max() <= 0.5 / 254 + 1e-6


def test_change_detection_equals_slide_inference(tmp_path, tiny_task_files):
    a, b = write_scene_geotiff(tmp_path / "pair.tif", height=224, width=256, block=128, nodata_fraction=0,
                               pair=True).images  # fmt: skip
    config, ckpt = tiny_task_files("change_detection")
    task = load_task(config, ckpt)
    result = predict_scene(task, a, tmp_path / "out", input_b=b, options=SceneOptions(tile=TILE, overlap=OVERLAP,
                           batch_size=4, progress=False))  # fmt: skip
    pair = torch.cat([_normalised(a), _normalised(b)])[None]
    with torch.no_grad():
        logits = slide_inference(task.model.eval(), pair, crop=TILE, stride=TILE - OVERLAP, size_divisor=16)
    tie = (logits[0, 0] - logits[0, 1]).abs().numpy() < 1e-5
    with rasterio.open(result.paths["change"]) as out:
        got = out.read(1)
    expected = logits.argmax(1)[0].numpy()
    assert np.array_equal(got[~tie], expected[~tie]) and 0 < expected.mean() < 1


def _patch_reference(model_call, image: torch.Tensor, grid: TileGrid, drop_cut: bool, rotated: bool) -> dict:
    """Per-patch detections of the same windows over the in-memory image, in patch pixels, keyed by DOTA patch id."""
    patches = {}
    for y in grid.row_starts:
        for x in grid.col_starts:
            det = model_call(image[None, :, y : y + grid.tile, x : x + grid.tile])[0]
            if drop_cut:
                hb = rbox2hbox(det["boxes"]) if rotated else det["boxes"]
                keep = ~cut_by_inner_edge(hb.double(), grid, y, x)
                det = {k: v[keep] for k, v in det.items() if k != "polygons"}
            patches[f"scene__{grid.tile}__{x}___{y}"] = det
    return patches


@pytest.mark.parametrize("drop_cut", [False, True])
def test_rotated_detection_equals_per_patch_merge(tmp_path, drop_cut):
    from mtp.inference.scene.predictors import RotatedPredictor

    scene = write_scene(tmp_path / "scene.tif", nodata_corner=0)
    task = load_task(oracle_config(tmp_path / "o.yaml", "OracleRotatedDetection"))
    result = predict_scene(task, scene, tmp_path / "out", options=SceneOptions(tile=TILE, overlap=OVERLAP,
                           progress=False, drop_cut=drop_cut))  # fmt: skip
    grid = TileGrid(224, 256, TILE, OVERLAP)
    patches = _patch_reference(RotatedPredictor(task.model), _normalised(scene), grid, drop_cut, rotated=True)
    merged = merge_patch_detections({k: {"rboxes": v["boxes"], "scores": v["scores"], "labels": v["labels"]}
                                     for k, v in patches.items()}, nms_iou=0.1)["scene"]  # fmt: skip
    expected = _sorted(merged["rboxes"].numpy(), merged["scores"].numpy(), merged["labels"].numpy())
    got = _objects(result.paths["objects"])
    assert len(got[0]) == len(expected[0])
    assert len(got[0]) == 3 if drop_cut else len(got[0]) > 3  # without the cut rule, slivers of cut objects survive
    assert np.allclose(got[0], expected[0], atol=1e-3)
    assert np.allclose(got[1], expected[1], atol=1e-5) and np.array_equal(got[2], expected[2])


def test_real_rotated_detector_equals_per_patch_merge(tmp_path, tiny_task_files):
    from mtp.inference.scene.predictors import RotatedPredictor

    scene = write_scene(tmp_path / "scene.tif", nodata_corner=0, height=160, width=160)
    config, ckpt = tiny_task_files("rotated_detection")
    task = load_task(config, ckpt).eval()
    result = predict_scene(task, scene, tmp_path / "out", options=SceneOptions(tile=TILE, overlap=OVERLAP,
                           progress=False, drop_cut=False))  # fmt: skip
    grid = TileGrid(160, 160, TILE, OVERLAP)
    with torch.no_grad():
        patches = _patch_reference(RotatedPredictor(task.model), _normalised(scene), grid, False, rotated=True)
    merged = merge_patch_detections({k: {"rboxes": v["boxes"], "scores": v["scores"], "labels": v["labels"]}
                                     for k, v in patches.items()}, nms_iou=0.1)["scene"]  # fmt: skip
    got = _objects(result.paths["objects"])
    expected = _sorted(merged["rboxes"].numpy(), merged["scores"].numpy(), merged["labels"].numpy())
    assert len(got[0]) == len(expected[0]) > 0
    assert np.allclose(got[0], expected[0], atol=1e-3) and np.array_equal(got[2], expected[2])


def test_horizontal_detection_equals_per_patch_merge(tmp_path):
    from mtp.inference.scene.predictors import HorizontalPredictor

    scene = write_scene(tmp_path / "scene.tif", nodata_corner=0)
    task = load_task(oracle_config(tmp_path / "o.yaml", "OracleDetection"))
    result = predict_scene(task, scene, tmp_path / "out", options=SceneOptions(tile=TILE, overlap=OVERLAP,
                           progress=False))  # fmt: skip
    grid = TileGrid(224, 256, TILE, OVERLAP)
    patches = _patch_reference(HorizontalPredictor(task.model, 1, False), _normalised(scene), grid, True, False)
    boxes, scores, labels = [], [], []
    for pid, det in patches.items():
        _, x, y = parse_patch_id(pid)
        boxes.append(det["boxes"] + torch.tensor([x, y, x, y], dtype=torch.float64))
        scores.append(det["scores"])
        labels.append(det["labels"])
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    keep = batched_nms(boxes, scores.double(), labels, 0.1)
    expected = _sorted(boxes[keep].numpy(), scores[keep].numpy(), labels[keep].numpy())
    got = _objects(result.paths["objects"])
    assert len(got[0]) == len(expected[0]) == 3
    assert np.allclose(got[0], expected[0], atol=1e-3)
