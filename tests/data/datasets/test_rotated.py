"""Rotated-detection readers: DOTA / DIOR-R / FAIR1M round trips of synthetic scenes, layouts, errors naming
file and line (txt) or object (xml), skipped degenerate polygons, filter_empty."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from mtp.data.datasets.rotated import (
    DIOR_R_CLASSES,
    DIORR,
    DOTA,
    DOTA_V10_CLASSES,
    DOTA_V15_CLASSES,
    DOTA_V20_CLASSES,
    FAIR1M,
    FAIR1M_CLASSES,
    fair1m_release_name,
)
from mtp.data.datasets.rotated_formats import AnnotationError
from mtp.data.synthetic import (
    DIOR_CLASSES,
    DOTA_V1_CLASSES,
    DOTA_V2_CLASSES,
    FAST_CLASSES,
    SceneGenerator,
    clockwise_from_top_left,
    write_dior,
    write_dota,
    write_fair1m,
)
from mtp.data.synthetic import FAIR1M_CLASSES as RELEASE_NAMES
from mtp.data.synthetic.class_maps import to_dior, to_dota, to_fast
from mtp.data.synthetic.writers_common import OBJECT_SCENES, save_image
from mtp.data.synthetic.writers_detection import dota_lines

SIZE = 128


def expected(scene, mapping, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    polys, labels, difficult = [], [], []
    for obj in scene.objects:
        name = mapping(obj)
        if name is not None:
            polys.append(clockwise_from_top_left(obj.polygon).reshape(-1))
            labels.append(classes.index(name))
            difficult.append(bool(obj.difficult))
    return np.asarray(polys).reshape(-1, 8), np.asarray(labels, np.int64), np.asarray(difficult, bool)


def check_sample(sample, polys, labels, difficult, atol, image_hw=(SIZE, SIZE)) -> None:
    assert isinstance(sample["image"], tv_tensors.Image)
    assert sample["image"].dtype == torch.uint8 and tuple(sample["image"].shape) == (3, *image_hw)
    boxes = sample["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format.name == "XYXYXYXY"
    assert tuple(boxes.canvas_size) == image_hw and boxes.dtype == torch.float32
    assert sample["labels"].dtype == torch.int64 and sample["difficult"].dtype == torch.bool
    np.testing.assert_allclose(boxes.numpy(), polys, atol=atol)
    np.testing.assert_array_equal(sample["labels"].numpy(), labels)
    np.testing.assert_array_equal(sample["difficult"].numpy(), difficult)
    assert sample["image_id"] == Path(sample["image_path"]).stem
    assert sample["ori_hw"] == image_hw


@pytest.fixture(scope="module")
def dota_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dota")
    write_dota(root, seed=0, n=3, size=SIZE)
    return root


def test_class_lists_match_the_official_order():
    assert DOTA_V10_CLASSES == DOTA_V1_CLASSES and len(DOTA_V10_CLASSES) == 15
    assert DOTA_V15_CLASSES[:15] == DOTA_V1_CLASSES and DOTA_V15_CLASSES[15] == "container-crane"
    assert DOTA_V20_CLASSES == DOTA_V2_CLASSES and len(DOTA_V20_CLASSES) == 18
    assert DIOR_R_CLASSES == DIOR_CLASSES and len(DIOR_R_CLASSES) == 20
    assert FAIR1M_CLASSES == FAST_CLASSES and len(FAIR1M_CLASSES) == 37
    assert tuple(fair1m_release_name(n) for n in FAIR1M_CLASSES) == RELEASE_NAMES
    assert DOTA_V10_CLASSES.index("storage-tank") == 9 and DOTA_V10_CLASSES.index("roundabout") == 11


def test_dota_release_round_trip(dota_root):
    ds = DOTA(dota_root)
    assert len(ds) == 3 and ds.num_classes == 15 and len(ds.palette) == 15
    gen = SceneGenerator(0, SIZE, scene_classes=OBJECT_SCENES)
    for k in range(3):
        scene = gen.scene(k)
        sample = ds[k]
        check_sample(sample, *expected(scene, to_dota, DOTA_V10_CLASSES), atol=0.051)
        np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), scene.image)
        assert sample["image_id"] == f"P{k:04d}"
    for version, n in (("1.5", 16), ("2.0", 18)):
        assert DOTA(dota_root, version=version).num_classes == n
    with pytest.raises(ValueError, match="version"):
        DOTA(dota_root, version="3.0")


def test_dota_split_layout_and_unlabelled_test(tmp_path):
    gen = SceneGenerator(1, SIZE, scene_classes=OBJECT_SCENES)
    for split in ("trainval", "test"):
        for k in range(2):
            scene = gen.scene(k)
            save_image(tmp_path / split / "images" / f"P{k}__1024__0___0.png", scene.image)
            if split == "trainval":
                lines = "".join(f"{x}\n" for x in dota_lines(scene))  # no header, as the splitter writes
                (tmp_path / split / "annfiles").mkdir(exist_ok=True)
                (tmp_path / split / "annfiles" / f"P{k}__1024__0___0.txt").write_text(lines)
    ds = DOTA(tmp_path, split="trainval")
    for k in range(2):
        check_sample(ds[k], *expected(gen.scene(k), to_dota, DOTA_V10_CLASSES), atol=0.051)
    test = DOTA(tmp_path, split="test")
    assert len(test) == 2
    sample = test[0]
    assert tuple(sample["boxes"].shape) == (0, 8) and sample["labels"].shape == (0,)
    assert sample["image_id"] == "P0__1024__0___0"
    with pytest.raises(FileNotFoundError, match="annotation folder not found"):
        DOTA(tmp_path, split="trainval", ann_dir="labelTxt")


def test_dior_r_round_trip(tmp_path):
    write_dior(tmp_path, seed=0, n_train=3, n_val=2, n_test=2, size=SIZE)
    gen = SceneGenerator(0, SIZE, scene_classes=OBJECT_SCENES)
    expected_ids = {"train": ["00001", "00002", "00003"], "val": ["00004", "00005"], "test": ["00006", "00007"]}
    expected_ids["trainval"] = expected_ids["train"] + expected_ids["val"]
    for split, ids in expected_ids.items():
        ds = DIORR(tmp_path, split)
        assert ds.num_classes == 20 and [ds[i]["image_id"] for i in range(len(ds))] == ids
        for i, image_id in enumerate(ids):
            polys, labels, _ = expected(gen.scene(int(image_id) - 1), to_dior, DIOR_R_CLASSES)
            check_sample(ds[i], polys, labels, np.zeros(len(labels), bool), atol=0.51)  # integer coordinates
    assert "JPEGImages-test" in DIORR(tmp_path, "test")[0]["image_path"]
    with pytest.raises(ValueError, match="split"):
        DIORR(tmp_path, "validation")


def test_fair1m_xml_round_trip(tmp_path):
    write_fair1m(tmp_path, seed=0, n_train=3, n_val=2, size=SIZE)
    gen = SceneGenerator(0, SIZE, scene_classes=("airport", "highway", "industrial", "water"))
    for split, ks in (("train", [0, 1, 2]), ("validation", [3, 4])):
        ds = FAIR1M(tmp_path, split)
        assert ds.num_classes == 37 and len(ds) == len(ks)
        for i, k in enumerate(ks):
            polys, labels, _ = expected(gen.scene(k), to_fast, FAIR1M_CLASSES)
            check_sample(ds[i], polys, labels, np.zeros(len(labels), bool), atol=1e-4)
    assert FAIR1M(tmp_path, "train").label_counts().sum() > 0


def test_fair1m_dota_format_round_trip(tmp_path):
    gen = SceneGenerator(2, SIZE, scene_classes=("airport", "water"))
    for k in range(2):
        scene = gen.scene(k)
        save_image(tmp_path / "trainval" / "images" / f"{k}.png", scene.image)
        (tmp_path / "trainval" / "annfiles").mkdir(exist_ok=True)
        lines = dota_lines(scene, mapping=to_fast)
        (tmp_path / "trainval" / "annfiles" / f"{k}.txt").write_text("".join(f"{x}\n" for x in lines))
    ds = FAIR1M(tmp_path, "trainval", format="dota")
    for k in range(2):
        check_sample(ds[k], *expected(gen.scene(k), to_fast, FAIR1M_CLASSES), atol=0.051)
    with pytest.raises(ValueError, match="format"):
        FAIR1M(tmp_path, "trainval", format="json")


# ----------------------------------------------------------------------------------------- bad input


def write_dota_files(root: Path, texts: dict[str, str], size: int = 32) -> None:
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    for stem, text in texts.items():
        save_image(root / "images" / f"{stem}.png", np.zeros((size, size, 3), np.uint8))
        (root / "labelTxt" / f"{stem}.txt").write_text(text)


GOOD = "1 1 20 1 20 10 1 10 plane 0\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 2 3 4 5 6 7 plane 0", "expected 8 coordinates before the class name, found 7"),
        ("1 2 3 4 5 6 7 plane", "expected 8 coordinates before the class name, found 7"),
        ("1 2 3 4 5 6 7 8 9 plane 0", "expected 8 coordinates before the class name, found 9"),
        ("1 2 x 4 5 6 7 8 plane 0", r"non-numeric or non-finite coordinate\(s\) \['x'\]"),
        ("1 2 3 4 5 6 7 nan plane", r"non-numeric or non-finite coordinate\(s\) \['nan'\]"),
        ("1 2 3 4 5 6 7 8", "no class name"),
        ("1 1 20 1 20 10 1 10 tank 0", "unknown class name 'tank'"),
        ("1 1 20 1 20 10 1 10 plane hard", "difficult must be an integer, got 'hard'"),
        ("1 1 20 1 20 10 1 10 plane 0 extra", "unexpected extra fields"),
    ],
)
def test_dota_bad_lines_name_file_and_line(tmp_path, line, message):
    write_dota_files(tmp_path, {"a": "imagesource:GoogleEarth\ngsd:0.5\n" + GOOD + line + "\n"})
    with pytest.raises(AnnotationError, match=message) as info:
        DOTA(tmp_path)
    assert f"{tmp_path / 'labelTxt' / 'a.txt'}:4:" in str(info.value)


def test_dota_nine_tokens_header_and_difficult_values(tmp_path):
    write_dota_files(tmp_path, {"a": "gsd:null\n\n" + "1 1 20 1 20 10 1 10 plane\n5 5 9 5 9 9 5 9 ship 1\n"
                                "2 2 8 2 8 8 2 8 ship 2\n"})  # fmt: skip
    sample = DOTA(tmp_path)[0]
    assert sample["labels"].tolist() == [0, 6, 6]
    assert sample["difficult"].tolist() == [False, True, True]
    np.testing.assert_array_equal(sample["boxes"][0].numpy(), [1, 1, 20, 1, 20, 10, 1, 10])


def test_degenerate_polygons_are_skipped_counted_and_logged(tmp_path, caplog):
    text = GOOD + "1 1 1 1 20 10 1 10 plane 0\n" + "0 0 10 10 20 20 5 5 ship 0\n" + "3 3 9 3 9 9 3 9 ship 0\n"
    write_dota_files(tmp_path, {"a": text})
    with caplog.at_level(logging.WARNING, logger="mtp.data.datasets.rotated"):
        ds = DOTA(tmp_path)
    assert ds.num_skipped == {"degenerate": 2, "outside": 0} and ds[0]["labels"].tolist() == [0, 6]
    assert "a.txt" in caplog.text and "2 degenerate" in caplog.text and "[2, 3]" in caplog.text


def test_filter_empty(tmp_path, caplog):
    write_dota_files(tmp_path, {"a": GOOD, "b": "imagesource:x\ngsd:1\n", "c": GOOD})
    assert len(DOTA(tmp_path)) == 3
    with caplog.at_level(logging.INFO, logger="mtp.data.datasets.rotated"):
        ds = DOTA(tmp_path, filter_empty=True)
    assert len(ds) == 2 and [ds[i]["image_id"] for i in range(2)] == ["a", "c"]
    assert caplog.text.count("1 of 3 image(s) without objects") == 1
    ds.filter_empty = False
    assert len(ds) == 3 and len(ds[1]["labels"]) == 0


def test_missing_files_and_folders(tmp_path):
    write_dota_files(tmp_path, {"a": GOOD})
    (tmp_path / "images" / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "images" / "a")):
        DOTA(tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset root"):
        DOTA(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="split 'val'"):
        DOTA(tmp_path, split="val")
    empty = tmp_path / "empty"
    (empty / "labelTxt").mkdir(parents=True)
    (empty / "images").mkdir()
    with pytest.raises(ValueError, match="no annotation files"):
        DOTA(empty)
    with pytest.raises(FileNotFoundError, match="annotation folder not found"):
        DOTA(empty / "images")


def write_dior_xml(root: Path, objects: str, image_id: str = "00001") -> Path:
    for name in ("train", "val", "test"):
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text(f"{image_id}\n" if name == "train" else "")
    save_image(root / "JPEGImages-trainval" / f"{image_id}.jpg", np.zeros((32, 32, 3), np.uint8))
    path = root / "Annotations" / "Oriented Bounding Boxes" / f"{image_id}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{image_id}.jpg</filename>{objects}</annotation>")
    return path


def dior_object(name: str = "Airplane", coords=(1, 1, 20, 1, 20, 10, 1, 10), drop: str | None = None) -> str:
    from mtp.data.datasets.rotated_formats import ROBNDBOX_FIELDS

    fields = "".join(f"<{t}>{v}</{t}>" for t, v in zip(ROBNDBOX_FIELDS, coords, strict=True) if t != drop)
    return f"<object><name>{name}</name><difficult>1</difficult><robndbox>{fields}</robndbox></object>"


def test_dior_names_lower_cased_difficult_ignored(tmp_path):
    write_dior_xml(tmp_path, dior_object("Airplane") + dior_object("vehicle", (0, 0, 5, 0, 5, 5, 5, 5)))
    ds = DIORR(tmp_path, "train")
    assert ds[0]["labels"].tolist() == [0] and ds[0]["difficult"].tolist() == [False]
    assert ds.num_skipped["degenerate"] == 1


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        (dior_object() + dior_object(drop="y_left_bottom"), "object 1: <robndbox> has no <y_left_bottom>"),
        (dior_object() + dior_object(coords=(1, 1, "a", 1, 20, 10, 1, 10)), "object 1: non-numeric <x_right_top>"),
        (dior_object() + dior_object("spaceship"), "object 1: unknown class name 'spaceship'"),
        ("<object><name>ship</name><bndbox><xmin>1</xmin></bndbox></object>", "object 0: missing <robndbox>"),
        ("<object><name>ship</name>", "malformed xml"),
    ],
)
def test_dior_bad_xml_names_file_and_object(tmp_path, objects, message):
    path = write_dior_xml(tmp_path, objects)
    with pytest.raises(AnnotationError, match=message) as info:
        DIORR(tmp_path, "train")
    assert str(path) in str(info.value)


def test_dior_missing_files(tmp_path):
    write_dior_xml(tmp_path, dior_object())
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("00001\n00002\n")
    with pytest.raises(FileNotFoundError, match=r"00002\.xml"):
        DIORR(tmp_path, "train")
    write_dior_xml(tmp_path, dior_object(), image_id="00002")
    (tmp_path / "JPEGImages-trainval" / "00002.jpg").unlink()
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("00001\n00002\n")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "JPEGImages-trainval" / "00002")):
        DIORR(tmp_path, "train")
    (tmp_path / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"test\.txt"):
        DIORR(tmp_path, "test")


def write_fair1m_xml(root: Path, objects: str) -> Path:
    save_image(root / "train" / "images" / "0.tif", np.zeros((32, 32, 3), np.uint8))
    path = root / "train" / "labelXml" / "0.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><objects>{objects}</objects></annotation>")
    return path


def fair1m_object(name: str, points=("1,1", "20,1", "20,10", "1,10", "1,1")) -> str:
    pts = "".join(f"<point>{p}</point>" for p in points)
    return f"<object><possibleresult><name>{name}</name></possibleresult><points>{pts}</points></object>"


def test_fair1m_release_names_are_mapped(tmp_path):
    objs = [fair1m_object(n) for n in ("Small Car", "other-airplane", "Dry Cargo Ship", "Small-Car")]
    objs.append(fair1m_object("Bus", ("1,1", "20,1", "20,10", "1,10")))  # open ring accepted
    objs.append(fair1m_object("Bus", ("1,1", "20,1", "20,10", "1,1")))  # a closed triangle: degenerate, skipped
    write_fair1m_xml(tmp_path, "".join(objs))
    ds = FAIR1M(tmp_path, "train")
    assert ds.num_skipped == {"degenerate": 1, "outside": 0}
    labels = ds[0]["labels"].tolist()
    assert [FAIR1M_CLASSES[i] for i in labels] == ["Small-Car", "other-airplane", "Dry-Cargo-Ship", "Small-Car", "Bus"]


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        (fair1m_object("Bus") + fair1m_object("Spaceship"), "object 1: unknown class name 'Spaceship'"),
        (fair1m_object("Bus", ("1,1", "20,1", "20,10")), "object 0: expected 4 points"),
        (fair1m_object("Bus", ("1,1", "20,1", "20,10", "1,10", "2,2")), "object 0: expected 4 points"),
        (fair1m_object("Bus", ("1;1", "20,1", "20,10", "1,10")), "object 0: bad <point> '1;1'"),
        ("<object><points/></object>", "object 0: missing <possibleresult><name>"),
    ],
)
def test_fair1m_bad_xml(tmp_path, objects, message):
    path = write_fair1m_xml(tmp_path, objects)
    with pytest.raises(AnnotationError, match=message) as info:
        FAIR1M(tmp_path, "train")
    assert str(path) in str(info.value)


def test_transform_is_applied(dota_root):
    ds = DOTA(dota_root, transform=lambda s: {**s, "seen": True})
    assert ds[0]["seen"] is True
