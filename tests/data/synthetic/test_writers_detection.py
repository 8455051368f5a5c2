"""DOTA, DIOR / DIOR-R and FAIR1M writers, read back with plain tools (text parsing, xml.etree, PIL, cv2)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mtp.data.synthetic import (
    DIOR_CLASSES,
    DOTA_V1_CLASSES,
    FAIR1M_CLASSES,
    SceneGenerator,
    clockwise_from_top_left,
    regularize_le90,
    write_dior,
    write_dota,
    write_fair1m,
)
from mtp.data.synthetic.class_maps import to_dior, to_dota, to_fair1m
from mtp.data.synthetic.writers_common import OBJECT_SCENES
from mtp.data.synthetic.writers_detection import ROBNDBOX_FIELDS


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _assert_same_rbox(quad: np.ndarray, rbox: np.ndarray, err: float) -> None:
    """minAreaRect of a written quadrilateral (corners rounded by up to ``err`` px) gives back the le90 rbox."""
    (cx, cy), (w, h), angle = cv2.minAreaRect(quad.astype(np.float32))
    back = regularize_le90(cx, cy, w, h, math.radians(angle))
    np.testing.assert_allclose(back[:2], rbox[:2], atol=err + 1e-3)
    np.testing.assert_allclose(back[2:4], rbox[2:4], atol=3 * err + 1e-3)
    if abs(rbox[2] - rbox[3]) > 6 * err + 1e-3:  # squares (tanks) have no unique angle
        dt = (back[4] - rbox[4] + math.pi / 2) % math.pi - math.pi / 2
        assert abs(dt) < 3 * err / rbox[2] + 1e-3


def _clockwise(quad: np.ndarray) -> bool:
    x, y = quad[:, 0], quad[:, 1]
    return np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0


def test_dota(tmp_path):
    summary = write_dota(tmp_path, seed=0, n=3, size=160)
    assert _names(tmp_path) == ["images", "labelTxt"]
    assert _names(tmp_path / "images") == ["P0000.png", "P0001.png", "P0002.png"]
    assert _names(tmp_path / "labelTxt") == ["P0000.txt", "P0001.txt", "P0002.txt"]
    gen = SceneGenerator(0, 160, scene_classes=OBJECT_SCENES)
    total = 0
    for k in range(3):
        scene = gen.scene(k)
        image = np.asarray(Image.open(tmp_path / "images" / f"P{k:04d}.png"))
        np.testing.assert_array_equal(image, scene.image)
        lines = (tmp_path / "labelTxt" / f"P{k:04d}.txt").read_text().splitlines()
        assert lines[0] == "imagesource:GoogleEarth" and lines[1].startswith("gsd:")
        expected = [o for o in scene.objects if to_dota(o) is not None]
        assert len(lines) - 2 == len(expected)
        for line, obj in zip(lines[2:], expected, strict=True):
            tokens = line.split()
            assert len(tokens) == 10 and tokens[8] in DOTA_V1_CLASSES and tokens[8] == to_dota(obj)
            assert tokens[9] == str(int(obj.difficult))
            quad = np.array(tokens[:8], float).reshape(4, 2)
            np.testing.assert_allclose(quad, clockwise_from_top_left(obj.polygon), atol=0.051)
            assert _clockwise(quad)
            _assert_same_rbox(quad, obj.rbox, err=0.05 * math.sqrt(2))
        total += len(expected)
    assert total == summary.num_objects > 0
    write_dota(tmp_path / "nohdr", seed=0, n=1, size=160, header=False)
    first = (tmp_path / "nohdr" / "labelTxt" / "P0000.txt").read_text().splitlines()
    assert all(len(line.split()) == 10 for line in first)


def test_dior_and_dior_r(tmp_path):
    summary = write_dior(tmp_path, seed=0, n_train=2, n_val=1, n_test=2, size=160)
    assert _names(tmp_path) == ["Annotations", "ImageSets", "JPEGImages-test", "JPEGImages-trainval"]
    assert _names(tmp_path / "JPEGImages-trainval") == ["00001.jpg", "00002.jpg", "00003.jpg"]
    assert _names(tmp_path / "JPEGImages-test") == ["00004.jpg", "00005.jpg"]
    sets = {p.stem: p.read_text().split() for p in (tmp_path / "ImageSets" / "Main").iterdir()}
    assert sets == {
        "train": ["00001", "00002"],
        "val": ["00003"],
        "test": ["00004", "00005"],
        "trainval": ["00001", "00002", "00003"],
    }
    ann = tmp_path / "Annotations"
    assert _names(ann) == ["Horizontal Bounding Boxes", "Oriented Bounding Boxes"]
    gen = SceneGenerator(0, 160, scene_classes=OBJECT_SCENES)
    total = 0
    for k in range(5):
        image_id = f"{k + 1:05d}"
        folder = "JPEGImages-test" if k >= 3 else "JPEGImages-trainval"
        image = np.asarray(Image.open(tmp_path / folder / f"{image_id}.jpg"))
        assert image.shape == (160, 160, 3)
        expected = [o for o in gen.scene(k).objects if to_dior(o) is not None]
        hbb = ET.parse(ann / "Horizontal Bounding Boxes" / f"{image_id}.xml").getroot()
        obb = ET.parse(ann / "Oriented Bounding Boxes" / f"{image_id}.xml").getroot()
        for root in (hbb, obb):
            assert root.findtext("filename") == f"{image_id}.jpg"
            assert (int(root.findtext("size/width")), int(root.findtext("size/height"))) == (160, 160)
            assert len(root.findall("object")) == len(expected)
        for el, obj in zip(hbb.findall("object"), expected, strict=True):
            assert el.findtext("name") in DIOR_CLASSES and el.findtext("name") == to_dior(obj)
            box = [int(el.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
            np.testing.assert_allclose(box, obj.hbox, atol=0.51)
        for el, obj in zip(obb.findall("object"), expected, strict=True):
            assert el.findtext("name") == to_dior(obj)
            quad = np.array([int(el.findtext(f"robndbox/{t}")) for t in ROBNDBOX_FIELDS], float).reshape(4, 2)
            np.testing.assert_allclose(quad, clockwise_from_top_left(obj.polygon), atol=0.51)
            assert _clockwise(quad)
            (x1, y1), (x2, y2) = quad.min(0), quad.max(0)
            assert np.linalg.norm(quad[0] - [x1, y1]) <= np.linalg.norm(quad[0] - [x2, y2])  # starts top-left
            _assert_same_rbox(quad, obj.rbox, err=0.5 * math.sqrt(2))
        total += len(expected)
    assert total == summary.num_objects > 0


def test_fair1m(tmp_path):
    summary = write_fair1m(tmp_path, seed=0, n_train=2, n_val=1, size=160)
    assert _names(tmp_path) == ["train", "validation"]
    assert _names(tmp_path / "train" / "images") == ["0.tif", "1.tif"]
    assert _names(tmp_path / "train" / "labelXml") == ["0.xml", "1.xml"]
    assert _names(tmp_path / "validation" / "labelXml") == ["2.xml"]
    gen = SceneGenerator(0, 160, scene_classes=("airport", "highway", "industrial", "water"))
    total = 0
    for split, k in (("train", 0), ("train", 1), ("validation", 2)):
        image = np.asarray(Image.open(tmp_path / split / "images" / f"{k}.tif"))
        scene = gen.scene(k)
        np.testing.assert_array_equal(image, scene.image)
        root = ET.parse(tmp_path / split / "labelXml" / f"{k}.xml").getroot()
        assert root.tag == "annotation" and root.findtext("source/filename") == f"{k}.tif"
        assert root.findtext("size/width") == "160" and root.findtext("size/depth") == "3"
        objects = root.findall("objects/object")
        expected = [o for o in scene.objects if to_fair1m(o) is not None]
        assert len(objects) == len(expected)
        for el, obj in zip(objects, expected, strict=True):
            assert el.findtext("coordinate") == "pixel" and el.findtext("type") == "rectangle"
            name = el.findtext("possibleresult/name")
            assert name in FAIR1M_CLASSES and name == to_fair1m(obj) and "-" not in name
            points = [tuple(map(float, p.text.split(","))) for p in el.findall("points/point")]
            assert len(points) == 5 and points[0] == points[-1]
            quad = np.array(points[:4])
            np.testing.assert_allclose(quad, clockwise_from_top_left(obj.polygon), atol=1e-5)
            _assert_same_rbox(quad, obj.rbox, err=1e-6)
        total += len(expected)
    assert total == summary.num_objects > 0
