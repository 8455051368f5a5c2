"""COCO and SAMRS (SOTA / SIOR / FAST) writers, read back with json, pycocotools, PIL and xml.etree."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mtp.data.synthetic import OBJECT_CLASSES, SceneGenerator, write_coco, write_samrs
from mtp.data.synthetic.writers_common import OBJECT_SCENES
from mtp.data.synthetic.writers_instances import SAMRS_LAYOUTS, SAMRS_SCENES

# pycocotools' decode trips a numpy 2 copy-keyword DeprecationWarning inside the library
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")


def _decode(segmentation: dict) -> np.ndarray:
    rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def test_coco(tmp_path):
    summary = write_coco(tmp_path, seed=0, n_train=2, n_val=1, size=128)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations", "train", "val"]
    gen = SceneGenerator(0, 128, scene_classes=OBJECT_SCENES)
    running, total = 0, 0
    for split, n in (("train", 2), ("val", 1)):
        coco = COCO(str(tmp_path / "annotations" / f"instances_{split}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(OBJECT_CLASSES)
        assert coco.getCatIds() == list(range(1, len(OBJECT_CLASSES) + 1))
        for image_info in coco.loadImgs(sorted(coco.getImgIds())):
            scene = gen.scene(running)
            running += 1
            assert (image_info["height"], image_info["width"]) == (128, 128)
            image = np.asarray(Image.open(tmp_path / split / image_info["file_name"]))
            np.testing.assert_array_equal(image, scene.image)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_info["id"]]))
            assert len(anns) == len(scene.objects)
            for ann, obj in zip(anns, scene.objects, strict=True):
                assert coco.loadCats(ann["category_id"])[0]["name"] == obj.category
                np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), obj.mask)
                x, y, w, h = ann["bbox"]
                np.testing.assert_allclose([x, y, x + w, y + h], obj.hbox, atol=1.6)
                assert ann["area"] == obj.mask.sum() and ann["iscrowd"] == 0
                np.testing.assert_allclose(ann["rbox"], obj.rbox)
            total += len(anns)
        assert len(coco.getImgIds()) == n
    assert total == summary.num_objects > 0


@pytest.mark.parametrize("variant", ["sota", "sior", "fast"])
def test_samrs(tmp_path, variant):
    classes, mapping, base, img_dir, suffix, gray_dir, box_dir, prefix = SAMRS_LAYOUTS[variant]
    summary = write_samrs(tmp_path, variant=variant, seed=0, n_train=2, n_val=1, size=128)
    expected_base = {"sota": "dotav2_1024_rbb/trainval", "sior": "dior", "fast": "fair1m_1024/trainval"}[variant]
    assert base == expected_base
    root = tmp_path / base
    assert sorted(p.name for p in root.glob("*.json")) == [
        f"{prefix}_train_ins_segmentation.json",
        f"{prefix}_valid_ins_segmentation.json",
    ]
    gen = SceneGenerator(0, 128, scene_classes=SAMRS_SCENES[variant])
    total = 0
    for split in ("train", "valid"):
        data = json.loads((root / f"{prefix}_{split}_ins_segmentation.json").read_text())
        assert data["categories"] == [{"id": i, "name": n} for i, n in enumerate(classes)]
        for image_info in data["images"]:
            stem = image_info["file_name"].rsplit(".", 1)[0]
            assert image_info["file_name"].endswith(suffix) and image_info["segm_file"] == f"{stem}.pkl"
            scene = gen.scene(image_info["id"])
            image = np.asarray(Image.open(root / img_dir / image_info["file_name"]))
            assert image.shape == (128, 128, 3)
            gray = np.asarray(Image.open(root / gray_dir / f"{stem}.png"))
            assert gray.dtype == np.uint8 and gray.ndim == 2
            assert set(np.unique(gray).tolist()) <= {255, *range(len(classes))}
            anns = [a for a in data.get("annotations", []) if a["image_id"] == image_info["id"]]
            expected = [o for o in scene.objects if mapping(o) is not None]
            assert len(anns) == len(expected)
            covered = np.zeros(gray.shape, bool)
            for ann, obj in zip(anns, expected, strict=True):
                assert classes[ann["category_id"]] == mapping(obj)
                m = _decode(ann["segmentation"])
                np.testing.assert_array_equal(m, obj.mask)
                assert (gray[m] == ann["category_id"]).all()
                assert ann["area"] == m.sum() and ann["iscrowd"] == 0 and len(ann["bbox"]) == 4
                covered |= m
            assert (gray[~covered] == 255).all()
            if variant == "sior":
                objs = ET.parse(root / box_dir / f"{stem}.xml").getroot().findall("object")
                assert [o.findtext("name") for o in objs] == [mapping(o) for o in expected]
                assert all(o.find("robndbox") is not None for o in objs)
            else:
                lines = (root / box_dir / f"{stem}.txt").read_text().splitlines()
                assert all(len(line.split()) == 10 for line in lines)  # no imagesource/gsd header
                assert [line.split()[8] for line in lines] == [mapping(o) for o in expected]
            total += len(anns)
    assert total == summary.num_objects > 0
