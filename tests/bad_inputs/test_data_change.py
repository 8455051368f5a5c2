"""Bad change-detection data (LEVIR-CD, WHU-CD, CDD, OSCD): broken images in A / B / label, missing partner files,
label values that do not match ``label_values`` (docs/RELIABILITY.md, "Data")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtp.data.datasets.change_detection import CDD, LEVIRCD, WHUCD, ChangeDetectionFolder
from mtp.data.datasets.oscd import OSCDSentinel2
from mtp.data.synthetic import write_levir_cd
from tests.bad_inputs.conftest import assert_clear_error
from tests.bad_inputs.data_files import check_data, not_an_image, spec, truncate, write_config, write_tif, zero_bytes


@pytest.fixture
def levir(tmp_path) -> Path:
    """LEVIR-CD patches: train 0..2, val 3..4, test 5..6 (32 x 32, labels 0/255)."""
    root = tmp_path / "levir"
    write_levir_cd(root, n_train=3, n_val=2, n_test=2, size=32)
    return root


def _label(path: Path, values: np.ndarray) -> Path:
    Image.fromarray(values.astype(np.uint8)).save(path)
    return path


def test_check_data_lists_bad_pairs_partners_and_labels(tmp_path, levir):
    train, val, test = levir / "train", levir / "val", levir / "test"
    a, b, label = (sorted((train / d).iterdir()) for d in ("A", "B", "label"))
    truncate(a[0])
    zero_bytes(b[1])
    not_an_image(label[2])
    sorted((val / "B").iterdir())[0].unlink()  # a missing partner: the val set cannot be built
    zero_one = _label(sorted((test / "label").iterdir())[0], np.eye(32))  # 0/1 where 0/255 is expected
    levir_class = "mtp.data.datasets.change_detection.LEVIRCD"
    data = spec("mtp.data.datamodules.ChangeDetectionDataModule", train=spec(levir_class, root=levir, split="train"),
                val=spec(levir_class, root=levir, split="val"), test=spec(levir_class, root=levir, split="test"),
                crop_size=[32, 32])  # fmt: skip
    out = assert_clear_error(check_data(write_config(tmp_path / "c.yaml", data), "--level", "full"))
    assert "5 problem(s)" in out
    assert f"[train] {a[0]}: truncated PNG" in out
    assert f"[train] {b[1]}: empty file (0 bytes)" in out
    assert f"[train] {label[2]}: cannot read mask" in out
    assert f"[val] cannot build the val dataset: 1 partner file(s) missing for the images in {val / 'A'}" in out
    assert (f"[test] {zero_one}: label has value(s) [1] not allowed with label_values='0_255' (allowed [0, 255]); "
            "the label holds 0/1 values: use label_values='0_1'") in out  # fmt: skip


def test_0_1_labels_get_the_right_hint_and_threshold_refuses_them(levir):
    path = _label(sorted((levir / "train" / "label").iterdir())[0], np.eye(32))
    with pytest.raises(ValueError, match=r"label_values='0_255'.*use label_values='0_1'") as info:
        LEVIRCD(levir, "train")[0]
    assert "threshold" not in str(info.value)  # before: the hint was 'threshold', which zeroes every change
    with pytest.raises(ValueError, match=rf"{path}: label holds only 0/1 values, but label_values='threshold' .* "
                                         r"use label_values='0_1'"):  # fmt: skip
        ChangeDetectionFolder(levir, "train", label_values="threshold")[0]
    assert ChangeDetectionFolder(levir, "train", label_values="0_1")[0]["mask"].sum() == 32
    noisy = np.eye(32) * 255
    noisy[0, 1] = 3  # JPEG noise
    _label(path, noisy)
    with pytest.raises(ValueError, match=r"need label_values='threshold'"):
        LEVIRCD(levir, "train")[0]


def test_whu_and_cdd_read_every_file_and_name_the_stray_one(tmp_path):
    for folder in ("A", "B", "label"):
        (tmp_path / "train" / folder).mkdir(parents=True)
        for name in ("x.png", "y.png"):
            _label(tmp_path / "train" / folder / name, np.zeros((8, 8)))
    (tmp_path / "train" / "A" / "Thumbs.db").write_bytes(b"\x00" * 64)  # WHU reads every file of A
    missing = r"2 partner file\(s\) missing .*train/B/Thumbs\.db, .*train/label/Thumbs\.db"
    with pytest.raises(FileNotFoundError, match=missing):
        WHUCD(tmp_path, "train")
    (tmp_path / "train" / "A" / "Thumbs.db").unlink()
    (tmp_path / "train" / "label" / "y.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"train/label/y\.png"):
        WHUCD(tmp_path, "train")
    jpg = tmp_path / "cdd" / "train"
    for folder in ("A", "B", "label"):
        (jpg / folder).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), 255 if folder == "label" else 9, np.uint8)).save(jpg / folder / "z.jpg")
    zero_bytes(jpg / "B" / "z.jpg")
    with pytest.raises(ValueError, match=r"B/z\.jpg: empty file \(0 bytes\)"):
        CDD(tmp_path / "cdd", "train").check_item(0, "quick")


def test_oscd_release_band_with_nan_or_missing_is_named(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "train.txt").write_text("paris\n")
    for date in (1, 2):
        for band in ("B02", "B03", "B04"):
            write_tif(images / "paris" / f"imgs_{date}_rect" / f"{band}.tif", np.full((1, 8, 8), 900, np.float32))
    nan_band = images / "paris" / "imgs_2_rect" / "B03.tif"
    values = np.full((1, 8, 8), 900, np.float32)
    values[0, 2, 2] = np.nan
    write_tif(nan_band, values)
    ds = OSCDSentinel2(images, None, "train")
    with pytest.raises(ValueError, match=rf"{nan_band}: 1 NaN and 0 infinite pixel value\(s\)"):
        ds[0]  # before: the NaN became a black pixel
    ds.check_item(0, "quick")  # headers are fine
    write_tif(nan_band, values, nodata=float("nan"))
    assert ds[0]["image_b"][1, 2, 2] == 0  # declared nodata -> 0
    (images / "paris" / "imgs_1_rect" / "B04.tif").unlink()
    with pytest.raises(FileNotFoundError, match=r"imgs_1_rect/B04\.tif: band file not found"):
        ds.check_item(0, "quick")
    with pytest.raises(FileNotFoundError, match=r"no change map for paris"):
        OSCDSentinel2(images, tmp_path / "labels", "train").label_path("paris")
