"""Bad oriented-detection data (DOTA txt, DIOR-R xml, FAIR1M xml): broken images, malformed lines and objects,
polygons that are not boxes or lie outside their image, release layouts (docs/RELIABILITY.md, "Data")."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from mtp.data.datasets.rotated import DOTA, FAIR1M
from mtp.data.synthetic import write_dior, write_dota, write_fair1m
from mtp.data.synthetic.writers_common import save_image
from tests.bad_inputs.conftest import assert_clear_error
from tests.bad_inputs.data_files import check_data, not_an_image, spec, truncate, write_config, zero_bytes

BOX = "1 1 20 1 20 10 1 10"


def dota_files(root: Path, texts: dict[str, str], size: int = 64) -> Path:
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    for stem, text in texts.items():
        save_image(root / "images" / f"{stem}.png", np.zeros((size, size, 3), np.uint8))
        (root / "labelTxt" / f"{stem}.txt").write_text("imagesource:GoogleEarth\ngsd:0.5\n" + text)
    return root


def test_check_data_lists_broken_images_of_dota_dior_r_and_fair1m(tmp_path):
    write_dota(tmp_path / "dota", n=3, size=128)
    write_dior(tmp_path / "dior", n_train=2, n_val=1, n_test=1, size=128)
    write_fair1m(tmp_path / "fair1m", n_train=2, n_val=1, size=128)
    bad = [truncate(tmp_path / "dota" / "images" / "P0000.png"),
           zero_bytes(tmp_path / "dior" / "JPEGImages-trainval" / "00002.jpg"),
           not_an_image(tmp_path / "fair1m" / "train" / "images" / "1.tif")]  # fmt: skip
    rotated, module = "mtp.data.datasets.rotated", "mtp.data.datamodules.RotatedDetectionDataModule"
    data = spec(module, train=spec(f"{rotated}.DOTA", root=tmp_path / "dota"),
                val=spec(f"{rotated}.DIORR", root=tmp_path / "dior", split="trainval"),
                test=spec(f"{rotated}.FAIR1M", root=tmp_path / "fair1m", split="train"), size=64)  # fmt: skip
    out = assert_clear_error(check_data(write_config(tmp_path / "c.yaml", data)))
    assert "3 problem(s)" in out
    assert f"[train] {bad[0]}: truncated PNG" in out
    assert f"[val] {bad[1]}: empty file (0 bytes)" in out
    assert f"[test] {bad[2]}: cannot read image (not an image file" in out


def test_malformed_dota_lines_in_several_files_are_listed_together(tmp_path):
    dota_files(tmp_path, {"a": f"{BOX} plane 0\n1 2 3 4 5 6 7 plane 0\n", "b": "1 2 x 4 5 6 7 8 ship 0\n",
                          "c": f"{BOX} spaceship 0\n", "d": f"{BOX} plane 0\n"})  # fmt: skip
    with pytest.raises(ValueError) as info:
        DOTA(tmp_path)
    message = str(info.value)
    labels = tmp_path / "labelTxt"
    assert message.startswith("3 bad annotation files: 3 problem(s):")
    assert f"{labels / 'a.txt'}:4: expected 8 coordinates before the class name, found 7" in message
    assert f"{labels / 'b.txt'}:3: non-numeric or non-finite coordinate(s) ['x']" in message
    assert f"{labels / 'c.txt'}:3: unknown class name 'spaceship'; known: " in message


def test_zero_area_self_crossing_and_outside_polygons(tmp_path, caplog):
    text = (f"{BOX} plane 0\n"
            "0 0 10 10 20 20 5 5 ship 0\n"  # line 4: collinear, zero area -> skipped
            "10 10 30 30 30 10 10 30 ship 0\n"  # line 5: a bow tie (corners in the wrong order) -> reordered
            "5000 5000 5020 5000 5020 5010 5000 5010 plane 0\n"  # line 6: far outside the 64 x 64 image -> dropped
            "-10 -10 10 -10 10 10 -10 10 plane 0\n")  # line 7: reaches past the border -> kept as written  # fmt: skip
    dota_files(tmp_path, {"a": text})
    with caplog.at_level(logging.WARNING, logger="mtp.data.datasets.rotated"):
        ds = DOTA(tmp_path)
    assert ds.num_skipped == {"degenerate": 1, "outside": 1} and ds.num_reordered == 1
    sample = ds[0]
    assert sample["labels"].tolist() == [0, 6, 0]  # before: the far-away plane was a training target
    np.testing.assert_array_equal(sample["boxes"][1].numpy(), [10, 10, 30, 10, 30, 30, 10, 30])
    ann = tmp_path / "labelTxt" / "a.txt"
    assert f"skipped 1 degenerate polygon(s) in {ann} (lines [4])" in caplog.text
    assert f"reordered 1 self-crossing polygon(s) in {ann} (lines [5])" in caplog.text
    assert f"dropped 1 object(s) lying outside their image in {ann}" in caplog.text


def fair1m_xml(path: Path, objects: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><objects>{objects}</objects></annotation>")


def test_fair1m_missing_points_and_the_release_part_folders(tmp_path):
    pts = "".join(f"<point>{p}</point>" for p in ("1,1", "20,1", "20,10", "1,10", "1,1"))
    good = f"<object><possibleresult><name>Small Car</name></possibleresult><points>{pts}</points></object>"
    for part, stem in (("part1", "0"), ("part2", "1")):
        save_image(tmp_path / "fair1m" / "train" / part / "images" / f"{stem}.tif", np.zeros((32, 32, 3), np.uint8))
        fair1m_xml(tmp_path / "fair1m" / "train" / part / "labelXml" / f"{stem}.xml", good)
    ds = FAIR1M(tmp_path / "fair1m", "train", format="xml")  # before: 'images' folder not found
    assert [p.name for p in ds.image_paths] == ["0.tif", "1.tif"]
    assert len(FAIR1M(tmp_path / "fair1m" / "train", "part2")) == 1  # the older form still works
    with pytest.raises(FileNotFoundError, match=r"holds labelXml/ .* but format='dota' reads .*: set format: xml"):
        FAIR1M(tmp_path / "fair1m" / "train", "part1", format="dota")
    xml = tmp_path / "fair1m" / "train" / "part2" / "labelXml" / "1.xml"
    fair1m_xml(xml, good + "<object><possibleresult><name>Bus</name></possibleresult></object>")
    with pytest.raises(ValueError, match=rf"{xml}: object 1: missing <points> \(expected <points><point>x,y"):
        FAIR1M(tmp_path / "fair1m", "train")
    with pytest.raises(FileNotFoundError, match=r"image folder not found: .*validation/images \(nor .*part\*/images"):
        (tmp_path / "fair1m" / "validation").mkdir()
        FAIR1M(tmp_path / "fair1m", "validation")
