"""Horizontal-detection readers: DIOR (VOC xml) and COCODetection round trips of the synthetic writers, splits and
layouts, clipping / skipping counts, errors naming file and object (xml) or annotation (json), the mmdet filter
(filter_empty + min_size)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torchvision import tv_tensors

from mtp.data.datasets.horizontal import DIOR, DIOR_CLASSES, COCODetection
from mtp.data.datasets.rotated_formats import AnnotationError
from mtp.data.synthetic import DIOR_CLASSES as SYNTHETIC_DIOR_CLASSES
from mtp.data.synthetic import OBJECT_CLASSES, SceneGenerator, write_coco, write_dior
from mtp.data.synthetic.class_maps import to_dior
from mtp.data.synthetic.writers_common import OBJECT_SCENES, save_image

SIZE = 128

# The official DIOR order (docs/CONVENTIONS.md#class-orders), in index order.
FACTS_DIOR = [
    "airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney", "expressway-service-area",
    "expressway-toll-station", "dam", "golffield", "groundtrackfield", "harbor", "overpass", "ship", "stadium",
    "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill",
]  # fmt: skip


def voc_xml(objects: list[tuple[str, tuple]], hw: tuple[int, int] | None = (SIZE, SIZE)) -> str:
    size = f"<size><width>{hw[1]}</width><height>{hw[0]}</height><depth>3</depth></size>" if hw else ""
    objs = "".join(
        f"<object><name>{n}</name><bndbox>" + "".join(f"<{t}>{v}</{t}>" for t, v in zip(
            ("xmin", "ymin", "xmax", "ymax"), box, strict=True)) + "</bndbox></object>"
        for n, box in objects
    )  # fmt: skip
    return f"<annotation><filename>x.jpg</filename>{size}{objs}</annotation>"


@pytest.fixture(scope="module")
def dior_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dior")
    write_dior(root, seed=0, n_train=3, n_val=2, n_test=2, size=SIZE)
    return root


@pytest.fixture
def dior_copy(dior_root, tmp_path) -> Path:
    root = tmp_path / "dior"
    shutil.copytree(dior_root, root)
    return root


def hbb(root: Path, image_id: str) -> Path:
    return root / "Annotations" / "Horizontal Bounding Boxes" / f"{image_id}.xml"


def expected_dior(index: int) -> tuple[np.ndarray, np.ndarray]:
    scene = SceneGenerator(0, SIZE, scene_classes=OBJECT_SCENES).scene(index)
    boxes, labels = [], []
    for obj in scene.objects:
        name = to_dior(obj)
        if name is not None:
            x1, y1, x2, y2 = np.rint(obj.hbox)
            boxes.append([max(x1, 0), max(y1, 0), min(x2, SIZE), min(y2, SIZE)])
            labels.append(DIOR_CLASSES.index(name))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def test_class_list_is_the_official_order():
    assert list(DIOR_CLASSES) == FACTS_DIOR and SYNTHETIC_DIOR_CLASSES == DIOR_CLASSES


@pytest.mark.parametrize(("split", "ids"), [("trainval", range(5)), ("train", range(3)), ("val", (3, 4)),
                                            ("test", (5, 6))])  # fmt: skip
def test_dior_round_trip(dior_root, split, ids):
    ds = DIOR(dior_root, split)
    assert len(ds) == len(ids) and ds.num_classes == 20 and len(ds.palette) == 20
    assert ds.num_clipped == 0 and ds.num_skipped == {"outside": 0}
    for i, k in enumerate(ids):
        sample = ds[i]
        assert isinstance(sample["image"], tv_tensors.Image) and sample["image"].dtype == torch.uint8
        assert tuple(sample["image"].shape) == (3, SIZE, SIZE) and sample["ori_hw"] == (SIZE, SIZE)
        boxes = sample["boxes"]
        assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format.name == "XYXY"
        assert boxes.dtype == torch.float32 and tuple(boxes.canvas_size) == (SIZE, SIZE)
        exp_boxes, exp_labels = expected_dior(k)
        np.testing.assert_array_equal(boxes.numpy(), exp_boxes)
        np.testing.assert_array_equal(sample["labels"].numpy(), exp_labels)
        assert sample["labels"].dtype == torch.int64 and "masks" not in sample
        assert sample["image_id"] == f"{k + 1:05d}" and sample["image_path"].endswith(f"{k + 1:05d}.jpg")
        folder = "JPEGImages-test" if split == "test" else "JPEGImages-trainval"
        assert Path(sample["image_path"]).parent.name == folder


def test_dior_layouts(dior_copy):
    (dior_copy / "ImageSets" / "Main" / "trainval.txt").unlink()  # falls back to train + val
    assert [s["image_id"] for s in DIOR(dior_copy, "trainval")] == [f"{k:05d}" for k in range(1, 6)]
    ann = dior_copy / "Annotations"
    shutil.rmtree(ann / "Oriented Bounding Boxes")
    for p in (ann / "Horizontal Bounding Boxes").iterdir():
        p.rename(ann / p.name)
    (ann / "Horizontal Bounding Boxes").rmdir()
    ds = DIOR(dior_copy, "test")  # original release: Annotations/<id>.xml
    np.testing.assert_array_equal(ds[0]["boxes"].numpy(), expected_dior(5)[0])
    with pytest.raises(ValueError, match="split must be one of"):
        DIOR(dior_copy, "validation")


def test_dior_names_are_lower_cased_and_boxes_clipped(dior_copy, caplog):
    objects = [("Expressway-Service-area", (10, 10, 40, 30)), (" Vehicle ", (-5, 50, 20, 140)),
               ("ship", (130, 10, 140, 20)), ("airplane", (110, 100, 128, 128))]  # fmt: skip
    hbb(dior_copy, "00006").write_text(voc_xml(objects))
    with caplog.at_level(logging.WARNING, logger="mtp"):
        ds = DIOR(dior_copy, "test")
    assert ds.num_clipped == 1 and ds.num_skipped == {"outside": 1}
    assert "1 box(es) clipped" in caplog.text and "'outside': 1" in caplog.text
    sample = ds[0]
    np.testing.assert_array_equal(sample["boxes"].numpy(), [[10, 10, 40, 30], [0, 50, 20, 128], [110, 100, 128, 128]])
    assert sample["labels"].tolist() == [6, 18, 0]


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ([("ship", (1, 1, 5, 5)), ("ship", (20, 5, 20, 9))], "object 1: empty box xmin=20 ymin=5 xmax=20"),
        ([("ship", (1, 9, 5, 5))], "object 0: empty box"),
        ([("ship", (1, 1, 5, 5)), ("castle", (1, 1, 5, 5))], "object 1: unknown class name 'castle'"),
        ([("ship", (1, "a", 5, 5))], "object 0: non-numeric <ymin>"),
    ],
)
def test_dior_bad_objects_name_file_and_object(dior_copy, objects, message):
    hbb(dior_copy, "00007").write_text(voc_xml(objects))
    with pytest.raises(AnnotationError, match=message) as info:
        DIOR(dior_copy, "test")
    assert str(hbb(dior_copy, "00007")) in str(info.value)


def test_dior_missing_files_name_the_path(dior_copy):
    (dior_copy / "JPEGImages-test" / "00007.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"JPEGImages-test/00007"):
        DIOR(dior_copy, "test")
    hbb(dior_copy, "00002").unlink()
    with pytest.raises(FileNotFoundError, match=r"Horizontal Bounding Boxes/00002.xml"):
        DIOR(dior_copy, "train")
    (dior_copy / "ImageSets" / "Main" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"val\.txt"):
        DIOR(dior_copy, "val")


def test_dior_image_size_mismatch_is_reported(dior_copy):
    hbb(dior_copy, "00006").write_text(voc_xml([("ship", (1, 1, 5, 5))], hw=(80, SIZE)))
    ds = DIOR(dior_copy, "test")
    with pytest.raises(ValueError, match=r"00006.jpg: image is 128x128 .* annotation says 80x128"):
        ds[0]


def test_filter_empty_and_min_size_are_counted_and_logged_once(dior_copy, caplog):
    hbb(dior_copy, "00001").write_text(voc_xml([]))  # no objects
    save_image(dior_copy / "JPEGImages-trainval" / "00002.jpg", np.zeros((20, 64, 3), np.uint8))  # shorter side 20
    hbb(dior_copy, "00002").write_text(voc_xml([("ship", (1, 1, 5, 5))], hw=None))  # size from the image
    ds = DIOR(dior_copy, "trainval")
    assert len(ds) == 5 and ds.num_filtered == {"empty": 0, "small": 0}
    assert ds[1]["ori_hw"] == (20, 64)
    with caplog.at_level(logging.INFO, logger="mtp"):
        ds.set_filter(True, 32)
    assert len(ds) == 3 and ds.num_filtered == {"empty": 1, "small": 1}
    assert [s["image_id"] for s in ds] == ["00003", "00004", "00005"]
    assert len([r for r in caplog.records if "filter" in r.getMessage()]) == 1
    assert "2 of 5 image(s) hidden (1 without objects, 1 with a side < 32 px)" in caplog.text
    ds.filter_empty = False  # the small image stays hidden, the empty one comes back
    assert len(ds) == 4 and ds.num_filtered == {"empty": 0, "small": 1} and ds.min_size == 32
    ds.min_size = 0
    assert len(ds) == 5


def test_filter_errors_when_nothing_is_left(dior_copy):
    hbb(dior_copy, "00006").write_text(voc_xml([]))
    hbb(dior_copy, "00007").write_text(voc_xml([]))
    ds = DIOR(dior_copy, "test")
    with pytest.raises(ValueError, match="none of the 2 images"):
        ds.filter_empty = True
    assert len(ds) == 2 and not ds.filter_empty  # unchanged after the error
    with pytest.raises(ValueError, match="none of the 2 images"):
        DIOR(dior_copy, "test", filter_empty=True)


# ------------------------------------------------------------------ COCO


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    write_coco(root, seed=1, n_train=3, n_val=1, size=SIZE)
    return root


def test_coco_round_trip_with_masks(coco_root):
    ann_file = coco_root / "annotations" / "instances_train.json"
    ds = COCODetection(coco_root / "train", ann_file, with_masks=True)
    assert ds.classes == OBJECT_CLASSES and ds.category_ids == (1, 2, 3, 4, 5, 6) and len(ds) == 3
    gen = SceneGenerator(1, SIZE, scene_classes=OBJECT_SCENES)
    data = json.loads(ann_file.read_text())
    for i in range(3):
        sample, scene = ds[i], gen.scene(i)
        assert sample["image_id"] == i + 1 and isinstance(sample["image_id"], int)
        anns = [a for a in data["annotations"] if a["image_id"] == i + 1]
        xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        np.testing.assert_allclose(sample["boxes"].numpy(), np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
        assert sample["labels"].tolist() == [o.label for o in scene.objects]
        masks = sample["masks"]
        assert isinstance(masks, tv_tensors.Mask) and masks.dtype == torch.uint8
        assert tuple(masks.shape) == (len(scene.objects), SIZE, SIZE)
        expected = np.stack([o.mask for o in scene.objects]) if scene.objects else np.zeros((0, SIZE, SIZE), bool)
        np.testing.assert_array_equal(masks.numpy().astype(bool), expected)
    assert sum(len(ds[i]["labels"]) for i in range(3)) > 0
    assert "masks" not in COCODetection(coco_root / "train", ann_file)[0]


def coco_json(tmp_path: Path, annotations: list[dict], categories=None, images=None) -> Path:
    (tmp_path / "img").mkdir(exist_ok=True)
    save_image(tmp_path / "img" / "a.png", np.zeros((40, 60, 3), np.uint8))
    data = {
        "images": images if images is not None else [{"id": 5, "file_name": "a.png", "height": 40, "width": 60}],
        "annotations": annotations,
        "categories": categories if categories is not None else [{"id": 7, "name": "b"}, {"id": 2, "name": "a"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def ann(k: int, bbox, category_id=7, **extra) -> dict:
    return {"id": k, "image_id": 5, "category_id": category_id, "bbox": bbox, "area": 1.0, "iscrowd": 0, **extra}


def test_coco_category_order_skips_and_clipping(tmp_path, caplog):
    anns = [ann(1, [10, 5, 20, 10], 2), ann(2, [1, 1, 4, 4], 7), ann(3, [0, 0, 9, 9], 7, iscrowd=1),
            ann(4, [3, 3, 0.5, 8]), ann(5, [70, 5, 4, 4]), ann(6, [50, 30, 20, 20]),
            ann(7, [5, 5, 3, 3], area=0)]  # fmt: skip
    path = coco_json(tmp_path, anns)
    with caplog.at_level(logging.WARNING, logger="mtp"):
        ds = COCODetection(tmp_path / "img", path)
    assert ds.classes == ("b", "a") and ds.category_ids == (7, 2)
    assert ds.num_skipped == {"crowd": 1, "small": 2, "outside": 1, "other_category": 0} and ds.num_clipped == 1
    assert "clipped" in caplog.text
    sample = ds[0]
    np.testing.assert_array_equal(sample["boxes"].numpy(), [[10, 5, 30, 15], [1, 1, 5, 5], [50, 30, 60, 40]])
    assert sample["labels"].tolist() == [1, 0, 0] and sample["image_id"] == 5
    chosen = COCODetection(tmp_path / "img", path, classes=["a"])
    assert chosen.classes == ("a",) and chosen[0]["labels"].tolist() == [0]
    assert chosen.num_skipped["other_category"] == 6
    with pytest.raises(ValueError, match=r"classes \['c'\] are not categories"):
        COCODetection(tmp_path / "img", path, classes=["a", "c"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools.decode under numpy 2
def test_coco_polygon_and_rle_masks(tmp_path):
    full = np.zeros((40, 60), np.uint8)
    full[10:20, 5:25] = 1
    compressed = mask_utils.encode(np.asfortranarray(full))
    uncompressed = {"size": [40, 60], "counts": [int(v) for v in _runs(full)]}
    anns = [ann(1, [5, 10, 20, 10], segmentation=[[5, 10, 25, 10, 25, 20, 5, 20]]),
            ann(2, [5, 10, 20, 10], segmentation={"size": [40, 60], "counts": compressed["counts"].decode()}),
            ann(3, [5, 10, 20, 10], segmentation=uncompressed)]  # fmt: skip
    masks = COCODetection(tmp_path / "img", coco_json(tmp_path, anns), with_masks=True)[0]["masks"].numpy()
    polygon = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[5, 10, 25, 10, 25, 20, 5, 20]], 40, 60)))
    np.testing.assert_array_equal(masks[0], polygon)
    assert abs(int(masks[0].sum()) - 200) <= 30  # the rectangle, up to pycocotools' polygon rasterisation
    np.testing.assert_array_equal(masks[1], full)
    np.testing.assert_array_equal(masks[2], full)


def _runs(mask: np.ndarray) -> list[int]:
    flat = mask.reshape(-1, order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    return [*counts, run]


@pytest.mark.parametrize(
    ("anns", "message"),
    [
        ([ann(1, [1, 1, 4, 4]), {**ann(2, [1, 1, 4, 4]), "image_id": 9}], r"annotation 1 \(id 2\): unknown image_id 9"),
        ([ann(1, [1, 1, 4, 4], category_id=3)], r"annotation 0 \(id 1\): unknown category_id 3"),
        ([ann(1, [1, 1, 4])], r"annotation 0 \(id 1\): 'bbox' must be \[x, y, w, h\]"),
        ([ann(1, [1, 1, -4, 4])], r"annotation 0 \(id 1\): invalid 'bbox'"),
    ],
)
def test_coco_bad_annotations_name_file_and_index(tmp_path, anns, message):
    path = coco_json(tmp_path, anns)
    with pytest.raises(AnnotationError, match=message) as info:
        COCODetection(tmp_path / "img", path)
    assert str(path) in str(info.value)


def test_coco_bad_files(tmp_path):
    path = coco_json(tmp_path, [ann(1, [1, 1, 4, 4])])
    with pytest.raises(AnnotationError, match="no segmentation"):
        COCODetection(tmp_path / "img", path, with_masks=True)
    images = [{"id": 5, "file_name": "a.png", "height": 40, "width": 60},
              {"id": 6, "file_name": "gone.png", "height": 40, "width": 60}]  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"img/gone.png"):
        COCODetection(tmp_path / "img", coco_json(tmp_path, [], images=images))
    with pytest.raises(AnnotationError, match="duplicate category id 7"):
        COCODetection(tmp_path / "img", coco_json(tmp_path, [], categories=[{"id": 7, "name": "a"}] * 2))
    with pytest.raises(FileNotFoundError, match=r"nothing\.json"):
        COCODetection(tmp_path / "img", tmp_path / "nothing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad\.json"):
        COCODetection(tmp_path / "img", tmp_path / "bad.json")


def test_coco_size_from_header_and_min_size(tmp_path):
    path = coco_json(tmp_path, [ann(1, [1, 1, 4, 4])], images=[{"id": 5, "file_name": "a.png"}])
    ds = COCODetection(tmp_path / "img", path)
    assert ds.records[0].hw == (40, 60) and ds[0]["ori_hw"] == (40, 60)
    ds.set_filter(True, 32)
    assert len(ds) == 1
    with pytest.raises(ValueError, match="none of the 1 images"):
        ds.min_size = 41
