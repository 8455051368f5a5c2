"""Patch merging, Task1 / FAIR1M xml writers, labelTxt reader and ``mtp tool dota-eval`` (docs/EVALUATION.md)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
import torch

from mtp.cli import main
from mtp.data.synthetic import write_dota
from mtp.data.tools.dota_split import parse_patch_id
from mtp.metrics.dota.submission import (
    fair1m_official_name,
    merge_patch_detections,
    read_dota_annotations,
    read_dota_labeltxt,
    read_dota_task1,
    write_dota_task1,
    write_fair1m_xml,
    zip_submission,
)
from mtp.ops.rotated.boxes import rbox2poly


def det(boxes, scores, labels):
    return {
        "rboxes": torch.tensor(boxes, dtype=torch.float64),
        "scores": torch.tensor(scores),
        "labels": torch.tensor(labels),
    }


# ----------------------------------------------------------------------------- merge
@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("P0000__1024__824___0", ("P0000", 824, 0)),
        ("P0000__2048__0___0", ("P0000", 0, 0)),
        ("P0003__1024__1648___2976.png", ("P0003", 1648, 2976)),
        ("P0000__0.5__824___412", ("P0000", 824, 412)),  # devkit-style rate: first __<d>___<d> match
        ("a_b__682__333___0", ("a_b", 333, 0)),
    ],
)
def test_parse_patch_id(name, want):
    assert parse_patch_id(name) == want


def test_parse_patch_id_rejects_plain_names():
    with pytest.raises(ValueError, match="patch"):
        parse_patch_id("P0000")


def test_merge_translates_and_suppresses_duplicates_across_patches():
    obj = [900.0, 100.0, 80.0, 30.0, 0.3]  # in original pixels; seen by two overlapping windows
    results = {
        "P0000__1024__0___0": det([obj, [10, 10, 8, 4, 0.0]], [0.9, 0.5], [1, 3]),
        "P0000__1024__824___0": det(
            [[obj[0] - 824 + 0.5, obj[1], *obj[2:]], [obj[0] - 824, obj[1], *obj[2:]]], [0.8, 0.7], [1, 2]
        ),
        "P0000__2048__0___0": det([[900.2, 100.0, 80.0, 30.0, 0.31]], [0.6], [1]),  # another scale, same object
        "P0001__1024__0___200": det([[5, 5, 4, 4, 0.0]], [0.4], [0]),
    }
    merged = merge_patch_detections(results)
    assert list(merged) == ["P0000", "P0001"]
    m = merged["P0000"]
    assert m["labels"].tolist() == [1, 2, 3]  # the class-2 copy does not suppress / get suppressed by class 1
    assert m["scores"].tolist() == pytest.approx([0.9, 0.7, 0.5])
    torch.testing.assert_close(m["rboxes"][0], torch.tensor(obj, dtype=torch.float64))
    torch.testing.assert_close(m["rboxes"][1, :2], torch.tensor(obj[:2], dtype=torch.float64))
    torch.testing.assert_close(
        merged["P0001"]["rboxes"], torch.tensor([[5.0, 205.0, 4.0, 4.0, 0.0]], dtype=torch.float64)
    )


def test_merge_keeps_low_overlap_neighbours_and_empty_patches():
    results = {
        "P0002__1024__0___0": det([[100, 100, 40, 10, 0.0], [100, 112, 40, 10, 0.0]], [0.9, 0.8], [0, 0]),
        "P0002__1024__824___0": det(np.zeros((0, 5)), [], []),
        "P0009__1024__0___0": det(np.zeros((0, 5)), [], []),
    }
    merged = merge_patch_detections(results)
    assert len(merged["P0002"]["scores"]) == 2
    assert len(merged["P0009"]["scores"]) == 0


# ----------------------------------------------------------------------------- Task1
def test_task1_round_trip(tmp_path):
    classes = ["plane", "ship", "harbor"]
    merged = {
        "P0001": det([[50.0, 60.0, 30.0, 10.0, 0.4], [10, 10, 5, 5, 0.0]], [0.123456, 0.98765], [0, 1]),
        "P0000": det([[500.0, 600.0, 300.0, 100.0, -1.2]], [0.5], [0]),
    }
    paths = write_dota_task1(tmp_path, merged, classes)
    assert [p.name for p in paths] == ["Task1_plane.txt", "Task1_ship.txt", "Task1_harbor.txt"]
    assert (tmp_path / "Task1_harbor.txt").read_text() == ""
    first = (tmp_path / "Task1_plane.txt").read_text().splitlines()[0].split()
    assert first[0] == "P0000" and first[1] == "0.5000" and len(first) == 10
    rows = read_dota_task1(tmp_path)
    assert set(rows) == set(classes)
    assert [(r[0], r[1]) for r in rows["plane"]] == [("P0000", 0.5), ("P0001", 0.1235)]
    want = rbox2poly(merged["P0001"]["rboxes"][0]).numpy()
    np.testing.assert_allclose(rows["plane"][1][2], want, atol=0.005 + 1e-9)


def test_task1_reader_reports_file_and_line(tmp_path):
    (tmp_path / "Task1_ship.txt").write_text("P0000 0.9 1 2 3 4 5 6 7 8\nP0001 0.8 1 2 3\n")
    with pytest.raises(ValueError, match=r"Task1_ship.txt:2"):
        read_dota_task1(tmp_path)


# ----------------------------------------------------------------------------- FAIR1M xml
def test_fair1m_names():
    assert fair1m_official_name("Small-Car") == "Small Car"
    assert fair1m_official_name("Dry-Cargo-Ship") == "Dry Cargo Ship"
    for name in ("other-airplane", "other-ship", "other-vehicle"):
        assert fair1m_official_name(name) == name
    assert fair1m_official_name("A220") == "A220"


def test_fair1m_xml_layout(tmp_path):
    classes = ["A220", "Small-Car", "other-airplane"]
    merged = {"7": det([[50.0, 60.0, 30.0, 10.0, 0.4], [20, 20, 6, 3, 0.0]], [0.9, 0.25], [1, 2])}
    paths = write_fair1m_xml(
        tmp_path / "test", merged, classes, {"7": (600, 800), "8": (1000, 1000)}, time="2024-01-01"
    )
    assert [p.name for p in paths] == ["7.xml", "8.xml"]
    root = ET.parse(paths[0]).getroot()
    assert root.tag == "annotation"
    assert root.findtext("source/filename") == "7.tif" and root.findtext("source/origin") == "GF2/GF3"
    assert root.findtext("research/version") == "2.0" and root.findtext("research/pluginname") == "FAIR1M"
    assert root.findtext("research/pluginclass") == "object detection"
    assert (root.findtext("size/width"), root.findtext("size/height")) == ("800", "600")
    objs = root.findall("objects/object")
    assert [o.findtext("possibleresult/name") for o in objs] == ["Small Car", "other-airplane"]
    assert float(objs[1].findtext("possibleresult/probability")) == 0.25
    for o in objs:
        assert (o.findtext("coordinate"), o.findtext("type"), o.findtext("description")) == (
            "pixel",
            "rectangle",
            "None",
        )
        pts = [p.text for p in o.findall("points/point")]
        assert len(pts) == 5 and pts[0] == pts[-1] and len(set(pts)) == 4
        assert all(len(v.split(".")[1]) == 6 for p in pts for v in p.split(","))
    corners = np.array(
        [[float(v) for v in p.split(",")] for p in [q.text for q in objs[0].findall("points/point")][:4]]
    )
    np.testing.assert_allclose(corners.reshape(8), rbox2poly(merged["7"]["rboxes"][0]).numpy(), atol=1e-6)
    assert ET.parse(paths[1]).getroot().findall("objects/object") == []
    with pytest.raises(ValueError, match="image size"):
        write_fair1m_xml(tmp_path / "x", merged, classes, {})


def test_zip_submission(tmp_path):
    write_dota_task1(tmp_path / "res", {}, ["plane", "ship"])
    z = zip_submission(tmp_path / "res", tmp_path / "sub.zip")
    assert sorted(zipfile.ZipFile(z).namelist()) == ["Task1_plane.txt", "Task1_ship.txt"]
    z = zip_submission(tmp_path / "res", tmp_path / "fair.zip", arc_root="test")
    assert sorted(zipfile.ZipFile(z).namelist()) == ["test/Task1_plane.txt", "test/Task1_ship.txt"]


# ----------------------------------------------------------------------------- labelTxt + CLI
def test_labeltxt_reader(tmp_path):
    path = tmp_path / "P0001.txt"
    path.write_text("imagesource:GoogleEarth\ngsd:0.5\n\n1 2 3 4 5 6 7 8 plane\n1 2 3 4 5 6 7 8 ship 1\n")
    ann = read_dota_labeltxt(path)
    assert ann["labels"] == ["plane", "ship"] and ann["difficult"].tolist() == [0, 1]
    assert ann["polygons"].shape == (2, 8)
    path.write_text("gsd:0.5\n1 2 3 4 5 6 7 8 plane 0\n1 2 3 x 5 6 7 8 ship 0\n")
    with pytest.raises(ValueError, match=r"P0001.txt:3"):
        read_dota_labeltxt(path)
    path.write_text("1 2 3 4 5 6 7 8 plane 2\n")
    (tmp_path / "P0000.txt").write_text("")
    anns = read_dota_annotations(tmp_path)
    assert list(anns) == ["P0000", "P0001"] and anns["P0000"]["polygons"].shape == (0, 8)
    assert anns["P0001"]["difficult"].tolist() == [2]


def _detections_from_labels(ann_dir, out_dir, shift=0.0, seed=0):
    """Task1 files whose polygons are the GT polygons (optionally shifted), distinct scores."""
    rng = np.random.default_rng(seed)
    rows = {}
    for img, ann in read_dota_annotations(ann_dir).items():
        for poly, name in zip(ann["polygons"], ann["labels"], strict=True):
            rows.setdefault(name, []).append(
                f"{img} {rng.uniform(0.1, 1):.6f} " + " ".join(f"{v + shift:.2f}" for v in poly)
            )
    out_dir.mkdir()
    for name, lines in rows.items():
        (out_dir / f"Task1_{name}.txt").write_text("\n".join(lines) + "\n")
    return sorted(rows)


@pytest.fixture(scope="module")
def dota_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dota")
    write_dota(root, n=6, size=128, seed=0)
    return root


def test_dota_eval_tool_perfect_and_perturbed(dota_root, tmp_path, capsys):
    ann = dota_root / "labelTxt"
    present = _detections_from_labels(ann, tmp_path / "perfect")
    _detections_from_labels(ann, tmp_path / "shifted", shift=2.5)
    difficult = sum(int(a["difficult"].sum()) for a in read_dota_annotations(ann).values())
    assert len(present) >= 2 and difficult >= 1  # the synthetic data has several classes and difficult objects
    runs = {}
    for mode in ("devkit", "mmrotate"):
        for kind in ("perfect", "shifted"):
            out = tmp_path / f"{mode}_{kind}.json"
            argv = [
                "tool",
                "dota-eval",
                "--det",
                str(tmp_path / kind),
                "--ann",
                str(ann),
                "--mode",
                mode,
                "--classes",
                ",".join(present),
                "--json",
                str(out),
            ]
            assert main(argv) == 0
            runs[mode, kind] = json.loads(out.read_text())
    text = capsys.readouterr().out
    assert "mAP" in text and present[0] in text
    for mode in ("devkit", "mmrotate"):
        assert runs[mode, "perfect"]["mAP"] == pytest.approx(1.0)
        assert runs[mode, "shifted"]["mAP"] < 0.99
        assert set(runs[mode, "perfect"]["AP"]) == set(present)
    assert (
        sum(runs["mmrotate", "perfect"]["npos"].values()) - sum(runs["devkit", "perfect"]["npos"].values()) == difficult
    )
    # the default v1.0 class list: the devkit divides by all 15 classes
    out = tmp_path / "v10.json"
    assert main(["tool", "dota-eval", "--det", str(tmp_path / "perfect"), "--ann", str(ann), "--json", str(out)]) == 0
    v10 = json.loads(out.read_text())
    assert len(v10["AP"]) == 15 and v10["mAP"] == pytest.approx(len(present) / 15)
    out = tmp_path / "v10mm.json"
    argv = [
        "tool",
        "dota-eval",
        "--det",
        str(tmp_path / "perfect"),
        "--ann",
        str(ann),
        "--mode",
        "mmrotate",
        "--json",
        str(out),
    ]
    assert main(argv) == 0 and json.loads(out.read_text())["mAP"] == pytest.approx(1.0)
