"""dior-to-coco: the official output names, pycocotools-valid jsons whose boxes equal the xml (w = xmax − xmin,
no +1), 0-based category ids in the official order, file names relative to JPEGImages, errors, the CLI."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from mtp.cli import main
from mtp.data.datasets.horizontal import DIOR, DIOR_CLASSES, COCODetection
from mtp.data.datasets.rotated_formats import AnnotationError
from mtp.data.synthetic import write_dior
from mtp.data.tools.dior_coco import dior_split_to_coco, dior_to_coco


@pytest.fixture(scope="module")
def dior(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dior")
    write_dior(root, seed=3, n_train=3, n_val=2, n_test=2, size=128)
    return root


def xml_objects(path: Path) -> list[tuple[str, list[int]]]:
    root = ET.parse(path).getroot()
    return [(o.findtext("name"), [int(o.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")])
            for o in root.iter("object")]  # fmt: skip


def test_jsons_match_the_xml(dior, tmp_path, capsys):
    summary = dior_to_coco(dior, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIOR_test_coco.json", "DIOR_trainval_coco.json"]
    assert summary["trainval"]["images"] == 5 and summary["test"]["images"] == 2
    for split, folder in (("trainval", "JPEGImages-trainval"), ("test", "JPEGImages-test")):
        coco = COCO(str(tmp_path / f"DIOR_{split}_coco.json"))
        ids = (dior / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(DIOR_CLASSES)
        assert coco.getCatIds() == list(range(20))
        assert sorted(coco.getImgIds()) == list(range(len(ids)))
        n_objects = 0
        for image_id, stem in enumerate(ids):
            img = coco.loadImgs(image_id)[0]
            assert img["file_name"] == f"{stem}.jpg" and (dior / folder / img["file_name"]).is_file()
            assert (img["height"], img["width"]) == (128, 128)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            expected = xml_objects(dior / "Annotations" / "Horizontal Bounding Boxes" / f"{stem}.xml")
            assert len(anns) == len(expected)
            for a, (name, (x1, y1, x2, y2)) in zip(anns, expected, strict=True):
                assert a["bbox"] == [x1, y1, x2 - x1, y2 - y1] and all(isinstance(v, int) for v in a["bbox"])
                assert a["area"] == (x2 - x1) * (y2 - y1) and a["iscrowd"] == 0 and a["segmentation"] == []
                assert a["category_id"] == DIOR_CLASSES.index(name.lower())
            n_objects += len(anns)
        assert n_objects == summary[split]["annotations"] > 0
    capsys.readouterr()  # pycocotools prints


def test_coco_reader_on_the_output_equals_the_xml_reader(dior, tmp_path):
    dior_to_coco(dior, tmp_path, splits=("trainval",))
    coco = COCODetection(dior / "JPEGImages-trainval", tmp_path / "DIOR_trainval_coco.json")
    voc = DIOR(dior, "trainval")
    assert coco.classes == voc.classes and len(coco) == len(voc)
    for a, b in zip(coco, voc, strict=True):
        np.testing.assert_array_equal(a["boxes"].numpy(), b["boxes"].numpy())
        assert a["labels"].tolist() == b["labels"].tolist() and Path(a["image_path"]).stem == b["image_id"]


def test_one_based_ids_and_boxes_written_unclipped(dior, tmp_path):
    root = tmp_path / "dior"
    shutil.copytree(dior, root)
    (root / "Annotations" / "Horizontal Bounding Boxes" / "00006.xml").write_text(
        "<annotation><object><name>Expressway-toll-station</name><bndbox><xmin>-3</xmin><ymin>5</ymin>"
        "<xmax>130</xmax><ymax>9</ymax></bndbox></object></annotation>"
    )
    data = dior_split_to_coco(root, "test", first_category_id=1)
    assert data["categories"][0] == {"id": 1, "name": "airplane"} and data["categories"][-1]["id"] == 20
    ann = data["annotations"][0]
    assert ann["bbox"] == [-3, 5, 133, 4] and ann["category_id"] == DIOR_CLASSES.index("expressway-toll-station") + 1


def test_errors_name_the_file(dior, tmp_path):
    root = tmp_path / "dior"
    shutil.copytree(dior, root)
    xml = root / "Annotations" / "Horizontal Bounding Boxes" / "00007.xml"
    xml.write_text("<annotation><object><name>ship</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>5</xmax>"
                   "<ymax>9</ymax></bndbox></object></annotation>")  # fmt: skip
    with pytest.raises(AnnotationError, match=r"00007.xml: object 0: empty box"):
        dior_to_coco(root, tmp_path / "out", splits=("test",))
    (root / "JPEGImages-trainval" / "00002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="JPEGImages-trainval/00002"):
        dior_to_coco(root, tmp_path / "out", splits=("trainval",))


def test_cli(dior, tmp_path, capsys):
    assert main(["tool", "dior-to-coco", "--root", str(dior), "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["images"] == 2
    assert (tmp_path / "DIOR_trainval_coco.json").is_file() and (tmp_path / "DIOR_test_coco.json").is_file()
