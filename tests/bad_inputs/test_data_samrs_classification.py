"""Bad SAMRS pretraining data and bad scene-classification folders (EuroSAT, RESISC-45) (docs/RELIABILITY.md,
"Data")."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtp.data.datasets.classification import EuroSAT
from mtp.data.datasets.samrs import SAMRSDataset
from mtp.data.synthetic import write_eurosat, write_samrs
from tests.bad_inputs.conftest import assert_clear_error
from tests.bad_inputs.data_files import check_data, not_an_image, spec, truncate, write_config, zero_bytes


def test_check_data_lists_bad_samrs_images_and_gray_values(tmp_path):
    write_samrs(tmp_path / "samrs", variant="sota", n_train=3, n_val=1, size=96)
    base = tmp_path / "samrs" / "dotav2_1024_rbb" / "trainval"
    broken = truncate(base / "images" / "P0001.png")
    gray = base / "rhbox_segs_init" / "gray" / "P0002.png"
    values = np.array(Image.open(gray))
    values[0, 0] = 40  # SOTA has 18 classes: 0..17 and 255
    Image.fromarray(values).save(gray)
    data = spec("mtp.data.datamodules.PretrainingDataModule", root=tmp_path / "samrs", datasets=["sota"],
                image_size=64, batch_size=1, batch_size_val=1)  # fmt: skip
    out = assert_clear_error(check_data(write_config(tmp_path / "c.yaml", data), "--level", "full"))
    assert "2 problem(s)" in out
    assert f"[sota train] {broken}: truncated PNG" in out
    assert f"[sota train] {gray}: gray values [40] outside 0..17 and 255" in out


def test_samrs_rotated_boxes_outside_the_image_are_dropped_and_counted(tmp_path, caplog):
    write_samrs(tmp_path, variant="sota", n_train=2, n_val=1, size=96)
    box_file = tmp_path / "dotav2_1024_rbb" / "trainval" / "rbbtxts" / "P0000.txt"
    box_file.write_text("10 10 40 10 40 30 10 30 plane 0\n9000 9000 9040 9000 9040 9030 9000 9030 ship 0\n")
    with caplog.at_level(logging.WARNING, logger="mtp.data.datasets.samrs_formats"):
        ds = SAMRSDataset(tmp_path, "sota", "train")
    assert ds.num_rotated_outside == 1 and len(ds.load_sample(0)["rboxes"]) == 1
    assert "P0000.txt (1)" in caplog.text


@pytest.fixture
def eurosat(tmp_path) -> Path:
    root = tmp_path / "eurosat"
    write_eurosat(root, n_per_class=2, size=32)
    return root


def test_eurosat_stray_files_and_broken_images(tmp_path, eurosat, caplog):
    (eurosat / "Forest" / "notes.txt").write_text("not part of the dataset")  # ignored: not an image suffix
    (eurosat / "README.md").write_text("top-level files are not classes")  # ignored: not a folder
    html = not_an_image(sorted((eurosat / "Forest").glob("*.jpg"))[0])
    empty = zero_bytes(sorted((eurosat / "Water").glob("*.jpg"))[1])
    data = spec("mtp.data.datamodules.ClassificationDataModule",
                train=spec("mtp.data.datasets.classification.EuroSAT", root=eurosat, split="all", layout="release"),
                img_size=32)  # fmt: skip
    out = assert_clear_error(check_data(write_config(tmp_path / "c.yaml", data)))
    assert "2 problem(s):" in out and "14 item(s)" in out
    assert f"[train] {html}: cannot read image (not an image file" in out
    assert f"[train] {empty}: empty file (0 bytes)" in out
    (eurosat / "__MACOSX").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(eurosat / "__MACOSX" / "._x.jpg")
    with caplog.at_level(logging.WARNING, logger="mtp.data.datasets.classification"):
        ds = EuroSAT(eurosat, "all", layout="release")
    assert len(ds.classes) == 8 and "__MACOSX" in caplog.text and "the class folders differ" in caplog.text


def test_eurosat_wrong_layout_and_resisc_broken_image(tmp_path, eurosat):
    with pytest.raises(FileNotFoundError, match=r"holds class folders .* layout='mtp' reads .*: set layout: release"):
        EuroSAT(eurosat, "train", layout="mtp")
    mtp_layout = tmp_path / "mtp_layout"
    write_eurosat(mtp_layout, n_per_class=2, size=32, layout="mtp")
    with pytest.raises(ValueError, match=r"holds train/ and val/ folders .* set layout: mtp"):
        EuroSAT(mtp_layout, "all", layout="release")
    from mtp.data.datasets.classification import RESISC45

    for name in ("airplane", "beach"):
        for i in range(2):
            (tmp_path / "resisc" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((16, 16, 3), 50 * i, np.uint8)).save(tmp_path / "resisc" / name / f"{name}_{i}.jpg")
    broken = truncate(tmp_path / "resisc" / "beach" / "beach_1.jpg", keep=0.6)
    ds = RESISC45(tmp_path / "resisc", split="all")
    index = [p for p, _ in ds.samples].index(broken)
    with pytest.raises(ValueError, match=rf"{broken}: truncated JPEG"):
        ds.check_item(index, "quick")
