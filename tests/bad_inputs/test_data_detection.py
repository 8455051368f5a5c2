"""Bad horizontal-detection data (DIOR VOC xml, COCO json, the xView release): broken images, boxes that are not
boxes, annotations that disagree with their image (docs/RELIABILITY.md, "Data")."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mtp.data.datasets.horizontal import DIOR, COCODetection
from mtp.data.synthetic import write_coco, write_dior, write_xview
from tests.bad_inputs.conftest import assert_clear_error, run_mtp
from tests.bad_inputs.data_files import check_data, not_an_image, spec, truncate, write_config, zero_bytes

HBB = "Horizontal Bounding Boxes"


@pytest.fixture
def dior(tmp_path) -> Path:
    """DIOR: trainval 00001..00004 (train 1-3, val 4), test 00005..00006; 128 x 128."""
    root = tmp_path / "dior"
    write_dior(root, n_train=3, n_val=1, n_test=2, size=128)
    return root


def _set_box(xml: Path, k: int, xmin: str, xmax: str) -> None:
    """Rewrite the k-th object's xmin / xmax (or add an object when the file has fewer)."""
    text = xml.read_text()
    box = f"<xmin>{xmin}</xmin><ymin>5</ymin><xmax>{xmax}</xmax><ymax>50</ymax>"
    obj = f"<object><name>ship</name><bndbox>{box}</bndbox></object>"
    xml.write_text(text.replace("</annotation>", obj * (k + 1) + "</annotation>"))


def test_check_data_lists_broken_dior_images_and_size_disagreements(tmp_path, dior):
    images, test_images = dior / "JPEGImages-trainval", dior / "JPEGImages-test"
    truncate(images / "00001.jpg")
    zero_bytes(images / "00002.jpg")
    not_an_image(test_images / "00005.jpg")
    xml = dior / "Annotations" / HBB / "00006.xml"
    xml.write_text(xml.read_text().replace("<height>128</height>", "<height>100</height>"))
    dior_class = "mtp.data.datasets.horizontal.DIOR"
    data = spec("mtp.data.datamodules.DetectionDataModule", train=spec(dior_class, root=dior, split="trainval"),
                test=spec(dior_class, root=dior, split="test"), size=64, filter_empty_train=False)  # fmt: skip
    out = assert_clear_error(check_data(write_config(tmp_path / "c.yaml", data)))
    assert "4 problem(s)" in out
    assert f"[train] {images / '00001.jpg'}: truncated JPEG (no end-of-image marker)" in out
    assert f"[train] {images / '00002.jpg'}: empty file (0 bytes)" in out
    assert f"[test] {test_images / '00005.jpg'}: cannot read image (not an image file" in out
    assert f"[test] {test_images / '00006.jpg'}: image is 128x128 (HxW) but its annotation says 100x128" in out


def test_dior_inverted_boxes_in_several_files_are_listed_together(dior):
    for image_id, k in (("00001", 0), ("00003", 1)):
        _set_box(dior / "Annotations" / HBB / f"{image_id}.xml", k, xmin="40", xmax="10")  # xmax < xmin
    with pytest.raises(ValueError) as info:
        DIOR(dior, "trainval")
    message = str(info.value)
    assert message.startswith("2 bad annotation files: 2 problem(s):")
    for image_id in ("00001", "00003"):
        assert f"{image_id}.xml: object " in message
    assert "empty box xmin=40 ymin=5 xmax=10 ymax=50 (need xmax > xmin, ymax > ymin)" in message


def test_coco_bad_annotations_are_listed_together_and_outside_boxes_counted(tmp_path, caplog):
    write_coco(tmp_path, n_train=3, n_val=1, size=128)
    ann_file = tmp_path / "annotations" / "instances_train.json"
    data = json.loads(ann_file.read_text())
    data["annotations"][0]["bbox"] = [1, 2, 3]
    data["annotations"][1]["image_id"] = 999
    data["annotations"][2]["bbox"] = [1, 2, -5, 4]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(ValueError) as info:
        COCODetection(tmp_path / "train", ann_file)
    message = str(info.value)
    assert f"{ann_file}: 3 bad annotations: 3 problem(s):" in message
    assert "annotation 0 (id " in message and "'bbox' must be [x, y, w, h], got [1, 2, 3]" in message
    assert "annotation 1 (id " in message and "unknown image_id 999" in message
    assert "annotation 2 (id " in message and "invalid 'bbox' [1, 2, -5, 4]" in message
    data = json.loads(ann_file.read_text())
    data["annotations"] = data["annotations"][3:]
    data["annotations"][0]["bbox"] = [5000, 5000, 10, 10]  # far outside the 128 x 128 image
    ann_file.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="mtp.data.datasets.horizontal"):
        ds = COCODetection(tmp_path / "train", ann_file)
    assert ds.num_skipped["outside"] == 1
    image = next(i["file_name"] for i in data["images"] if i["id"] == data["annotations"][0]["image_id"])
    assert f"objects lying outside their image dropped in 1 file(s): {image} (1)" in caplog.text


def test_coco_missing_and_broken_images(tmp_path):
    write_coco(tmp_path, n_train=3, n_val=1, size=128)
    (tmp_path / "train" / "000001.png").unlink()
    ann_file = tmp_path / "annotations" / "instances_train.json"
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*train/000001\.png, listed in .*json"):
        COCODetection(tmp_path / "train", ann_file)
    write_coco(tmp_path, n_train=3, n_val=1, size=128)
    ds = COCODetection(tmp_path / "train", ann_file)
    truncate(tmp_path / "train" / "000002.png")
    with pytest.raises(ValueError, match=r"train/000002\.png: truncated PNG"):
        ds.check_item(2, "quick")


def test_xview_release_with_a_broken_geotiff_stops_the_converter_clearly(tmp_path):
    write_xview(tmp_path / "release", n=2, size=(480, 520))
    broken = zero_bytes(tmp_path / "release" / "train_images" / "1001.tif")
    result = run_mtp("tool", "xview-to-coco", "--geojson", tmp_path / "release" / "xView_train.geojson", "--images",
                     tmp_path / "release" / "train_images", "--out", tmp_path / "out")  # fmt: skip
    assert_clear_error(result, f"mtp tool xview-to-coco: error: {broken}: empty file (0 bytes)")
    result = run_mtp("tool", "xview-to-coco", "--geojson", tmp_path / "x.geojson", "--images", tmp_path, "--out",
                     tmp_path / "o", "--val-fraction", "1.5")  # fmt: skip
    assert_clear_error(result, "argument --val-fraction: must be a number in [0, 1], got '1.5'")
