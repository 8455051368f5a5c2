"""xview-to-coco: the official type_id table, tile origins, centre-based tile assignment with clipping, the seeded
split, skipped / malformed features, end-to-end conversion of the synthetic release (write_xview), the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from mtp.cli import main
from mtp.data.datasets.horizontal import COCODetection
from mtp.data.datasets.rotated_formats import AnnotationError
from mtp.data.synthetic import write_dataset, write_xview
from mtp.data.synthetic.writers_common import save_image
from mtp.data.tools.xview import (
    XVIEW_CLASSES,
    XVIEW_TYPE_IDS,
    convert_xview,
    read_xview_geojson,
    split_images,
    tile_boxes,
    tile_origins,
    type_id_to_label,
)

DROPPED = (14, 16, 22, 30, 31, 39, 43, 46, 48, 58, 67, 68, 69, 70, 75, 78, 80, 81, 82, 85, 87, 88, 90, 92)


def test_type_id_table():
    assert len(XVIEW_TYPE_IDS) == len(set(XVIEW_TYPE_IDS)) == len(XVIEW_CLASSES) == 60
    pairs = {11: 0, 12: 1, 13: 2, 15: 3, 17: 4, 18: 5, 23: 9, 40: 23, 41: 24, 44: 26, 59: 38, 60: 39, 66: 45,
             71: 46, 73: 48, 76: 50, 77: 51, 79: 52, 83: 53, 86: 55, 89: 56, 91: 57, 93: 58, 94: 59}  # fmt: skip
    assert all(type_id_to_label(t) == lab for t, lab in pairs.items())
    assert all(type_id_to_label(t) is None for t in (*DROPPED, 0, 10, 95, 100))
    assert set(range(11, 95)) == set(XVIEW_TYPE_IDS) | set(DROPPED)
    assert XVIEW_CLASSES[0] == "Fixed-wing Aircraft" and XVIEW_CLASSES[5] == "Small Car"
    assert XVIEW_CLASSES[48] == "Building" and XVIEW_CLASSES[55] == "Storage Tank" and XVIEW_CLASSES[59] == "Tower"


@pytest.mark.parametrize(("length", "origins"), [(300, [0]), (416, [0]), (417, [0, 1]), (832, [0, 416]),
                                                 (1000, [0, 292, 584]), (1001, [0, 292, 585])])  # fmt: skip
def test_tile_origins(length, origins):
    assert tile_origins(length, 416) == origins


def test_box_goes_to_the_tile_of_its_centre_clipped():
    boxes = np.array([[400, 10, 440, 30],  # centre x 420: tile x0=416 only
                      [380, 400, 420, 430],  # centre (400, 415): tile (0, 0) only, crosses into three others
                      [10, 10, 20, 20]])  # fmt: skip
    tiles, dropped = tile_boxes(boxes, np.array([1, 2, 3]), (832, 832))
    assert dropped == 0
    by_origin = {(x0, y0): (b.tolist(), lab.tolist()) for x0, y0, b, lab in tiles}
    assert set(by_origin) == {(0, 0), (416, 0)}
    assert by_origin[(0, 0)] == ([[380, 400, 415, 415], [10, 10, 20, 20]], [2, 3])  # x2 / y2 capped at 415
    assert by_origin[(416, 0)] == ([[0, 10, 24, 30]], [1])  # x1 clipped to the tile start


def test_overlapping_tiles_share_boxes_and_empty_clips_are_dropped():
    tiles, dropped = tile_boxes(np.array([[400, 5, 420, 25], [415, 40, 416, 60]]), np.array([0, 1]), (416, 1000))
    origins = {x0: b.tolist() for x0, _, b, _ in tiles}
    assert set(origins) == {0, 292}  # centre 410 is in [0, 416) and [292, 708)
    assert origins[0] == [[400, 5, 415, 25]] and origins[292] == [[108, 5, 128, 25], [123, 40, 124, 60]]
    assert dropped == 1  # [415, 416) capped to 415 in tile 0


def test_seeded_split():
    names = [f"{k}.tif" for k in range(20)]
    a, b = split_images(names, 0.25, seed=1), split_images(list(reversed(names)), 0.25, seed=1)
    assert a == b and len(a[0]) == 15 and len(a[1]) == 5 and sorted(a[0] + a[1]) == sorted(names)
    assert split_images(names, 0.25, seed=2) != a
    train, val = split_images(names, seed=0, num_train=12)
    assert len(train) == 12 and len(val) == 8
    with pytest.raises(ValueError, match="val_fraction"):
        split_images(names, 1.5)


def feature(bounds, type_id, image_id):
    return {"type": "Feature", "geometry": None,
            "properties": {"bounds_imcoords": bounds, "type_id": type_id, "image_id": image_id}}  # fmt: skip


def test_read_geojson_skips_and_errors(tmp_path):
    path = tmp_path / "x.geojson"
    no_bounds = {"type": "Feature", "properties": {"type_id": 18, "image_id": "a.tif"}}
    feats = [feature("1,2,30,40", 18, "a.tif"), feature("1,2,30,40", 75, "a.tif"), feature("5,5,9,9", 82, "b.tif"),
             no_bounds, feature("0,0,4,4", 94, "b.tif")]  # fmt: skip
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    objects, counts = read_xview_geojson(path)
    assert objects == {"a.tif": [((1, 2, 30, 40), 5)], "b.tif": [((0, 0, 4, 4), 59)]}
    assert counts["unknown_type_id"] == 2 and counts["unknown_type_ids"] == {75: 1, 82: 1} and counts["no_bounds"] == 1
    cases = (("1,2,3", "feature 1: malformed bounds_imcoords '1,2,3'"),
             ("1,2,x,4", "feature 1: malformed bounds_imcoords"), ("1,2,nan,4", "feature 1: malformed"))  # fmt: skip
    for bad, message in cases:
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [feats[0], feature(bad, 18, "a.tif")]}))
        with pytest.raises(AnnotationError, match=message) as info:
            read_xview_geojson(path)
        assert str(path) in str(info.value)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature("1,2,3,4", "car", "a.tif")]}))
    with pytest.raises(AnnotationError, match="feature 0: bad type_id 'car'"):
        read_xview_geojson(path)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("xview")
    write_xview(root, seed=0, n=4, size=(500, 832))
    return root


def test_writer_output(release):
    data = json.loads((release / "xView_train.geojson").read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) > 20
    names = {f["properties"]["image_id"] for f in data["features"]}
    assert names <= {"1000.tif", "1001.tif", "1002.tif", "1003.tif"}
    assert cv2.imread(str(release / "train_images" / "1000.tif")).shape == (500, 832, 3)
    for f in data["features"]:
        x1, y1, x2, y2 = map(int, f["properties"]["bounds_imcoords"].split(","))
        assert x2 > x1 and y2 > y1 and type_id_to_label(f["properties"]["type_id"]) is not None
        assert f["geometry"]["type"] == "Polygon" and len(f["geometry"]["coordinates"][0]) == 5


def test_convert_end_to_end(release, tmp_path, capsys):
    geojson = tmp_path / "xView_train.geojson"
    data = json.loads((release / "xView_train.geojson").read_text())
    data["features"] += [feature("10,10,50,50", 75, "1000.tif"), feature("10,10,50,50", 18, "1395.tif"),
                         feature("900,10,950,50", 18, "1000.tif")]  # fmt: skip
    geojson.write_text(json.dumps(data))
    out = tmp_path / "out"
    summary = convert_xview(geojson, release / "train_images", out, val_fraction=0.25, seed=3)
    assert summary["images"] == {"train": 3, "val": 1}
    assert summary["skipped"] == {"no_bounds": 0, "unknown_type_id": 1, "missing_image": 1, "degenerate": 1,
                                  "degenerate_in_tile": summary["skipped"]["degenerate_in_tile"]}  # fmt: skip
    assert summary["missing_images"] == ["1395.tif"] and summary["unknown_type_ids"] == {75: 1}
    split = json.loads((out / "split.json").read_text())
    assert split["seed"] == 3 and len(split["train"]) == 3
    objects, _ = read_xview_geojson(geojson)
    total_expected = 0
    for split_name in ("train", "val"):
        coco = COCO(str(out / f"xview_{split_name}_coco_format.json"))
        assert coco.getCatIds() == list(range(60)) and coco.loadCats(48)[0]["name"] == "Building"
        assert len(coco.getImgIds()) == summary["tiles"][split_name]
        for img in coco.loadImgs(coco.getImgIds()):
            tile = cv2.imread(str(out / split_name / "images" / img["file_name"]))
            assert tile.shape == (416, 416, 3) and (img["width"], img["height"]) == (416, 416)
            for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
                x, y, w, h = a["bbox"]
                assert x >= 0 and y >= 0 and x + w <= 415 and y + h <= 415 and w > 0 and h > 0
                assert a["area"] == w * h and a["iscrowd"] == 0 and 0 <= a["category_id"] < 60
        # tiles are crops of the source; every object is in exactly the tiles containing its centre
        # (image 500 x 832: tile origins x 0 / 416, y 0 / 84)
        for name in split[split_name]:
            src = cv2.imread(str(release / "train_images" / name))
            crops = [src[y0 : y0 + 416, x0 : x0 + 416] for y0 in (0, 84) for x0 in (0, 416)]
            for img in coco.loadImgs(coco.getImgIds()):
                if img["file_name"].startswith(Path(name).stem + "_"):
                    tile = cv2.imread(str(out / split_name / "images" / img["file_name"]))
                    assert any(np.array_equal(c, tile) for c in crops)
            for box, _ in objects[name]:
                b = np.clip(np.array(box, float), 0, [832, 500, 832, 500])
                if b[2] > b[0] and b[3] > b[1]:
                    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
                    origins = [(x0, y0) for x0 in (0, 416) for y0 in (0, 84)]
                    total_expected += sum(x0 <= cx < x0 + 416 and y0 <= cy < y0 + 416 for x0, y0 in origins)
    n_written = summary["objects"]["train"] + summary["objects"]["val"]
    assert n_written == total_expected - summary["skipped"]["degenerate_in_tile"]
    ann_file = out / "xview_train_coco_format.json"
    train = COCODetection(out / "train" / "images", ann_file, filter_empty=True, min_size=32)
    assert train.num_classes == 60 and len(train) == summary["tiles"]["train"]
    assert train[0]["image"].shape == (3, 416, 416)
    capsys.readouterr()


def test_small_image_is_padded_grey(tmp_path):
    save_image(tmp_path / "img" / "7.tif", np.full((100, 200, 3), 10, np.uint8))
    path = tmp_path / "x.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature("150,50,260,90", 18, "7.tif")]}))
    summary = convert_xview(path, tmp_path / "img", tmp_path / "out", val_fraction=0.0)
    assert summary["tiles"] == {"train": 1, "val": 0}
    tile = cv2.imread(str(tmp_path / "out" / "train" / "images" / "7_0.png"))
    assert tile.shape == (416, 416, 3) and (tile[:100, :200] == 10).all() and (tile[100:] == 128).all()
    data = json.loads((tmp_path / "out" / "xview_train_coco_format.json").read_text())
    assert data["annotations"][0]["bbox"] == [150, 50, 50, 40]  # clipped to the image (x2 = 200)
    assert json.loads((tmp_path / "out" / "xview_val_coco_format.json").read_text())["images"] == []


def test_cli_and_make_synthetic(tmp_path, capsys):
    assert main(["tool", "make-synthetic", "--format", "xview", "--out", str(tmp_path / "rel"), "--n", "2",
                 "--size", "200"]) == 0  # fmt: skip
    assert "xview: 2 images" in capsys.readouterr().out
    summary = write_dataset("xview", tmp_path / "rel2", n=1, size=64)
    assert summary.num_images == 1
    rel = tmp_path / "rel"
    args = ["tool", "xview-to-coco", "--geojson", str(rel / "xView_train.geojson"), "--images",
            str(rel / "train_images"), "--out", str(tmp_path / "out"), "--num-train", "1", "--seed", "4"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == {"train": 1, "val": 1} and result["tiles"] == {"train": 1, "val": 1}
    assert (tmp_path / "out" / "xview_train_coco_format.json").is_file()
