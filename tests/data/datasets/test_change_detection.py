"""Change-detection readers: the A/B/label layouts (LEVIR, WHU, CDD, OSCD patches), explicit label mapping,
bad inputs with errors naming the file, and the OSCD Sentinel-2 release -> RGB patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mtp.data.datasets.change_detection import CDD, LEVIRCD, OSCD, WHUCD, ChangeDetectionFolder
from mtp.data.datasets.oscd import OSCDSentinel2, write_oscd_patches
from mtp.data.synthetic import write_levir_cd


def _pair(root, name, a, b, label=None, split="train"):
    for folder, arr in (("A", a), ("B", b), ("label", label)):
        if arr is not None:
            (root / split / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / split / folder / name)


def _rgb(h=8, w=8, value=0):
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_levir_layout_gives_aligned_pairs_and_0_1_labels(tmp_path):
    write_levir_cd(tmp_path, n_train=2, n_val=1, n_test=1, size=64, seed=0)
    ds = LEVIRCD(tmp_path, "train")
    assert len(ds) == 2 and ds.num_classes == 2 and ds.classes == ("unchanged", "changed")
    sample = ds[0]
    assert sample["image_a"].shape == sample["image_b"].shape == (3, 64, 64)
    assert sample["image_a"].dtype == torch.uint8 and sample["mask"].dtype == torch.int64
    raw = np.asarray(Image.open(tmp_path / "train" / "label" / "train_1.png"))
    assert torch.equal(sample["mask"], torch.from_numpy((raw == 255).astype(np.int64)))
    assert sample["image_path"].endswith("A/train_1.png") and sample["image_b_path"].endswith("B/train_1.png")


def test_label_values_are_mapped_explicitly(tmp_path):
    label = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    _pair(tmp_path, "x.png", _rgb(2, 2), _rgb(2, 2, 9), label)
    assert LEVIRCD(tmp_path)[0]["mask"].tolist() == [[0, 1], [1, 0]]
    # 0/1 labels with 255 = ignore
    _pair(tmp_path, "x.png", _rgb(2, 2), _rgb(2, 2), np.array([[0, 1], [255, 1]], dtype=np.uint8))
    assert ChangeDetectionFolder(tmp_path, label_values="0_1")[0]["mask"].tolist() == [[0, 1], [255, 1]]


def test_unexpected_label_values_name_the_file(tmp_path):
    _pair(tmp_path, "bad.png", _rgb(2, 2), _rgb(2, 2), np.array([[0, 128], [255, 3]], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"bad\.png.*\[3, 128\]"):
        LEVIRCD(tmp_path)[0]
    with pytest.raises(ValueError, match=r"bad\.png.*\[3, 128\].*allowed \[0, 1, 255\]"):
        ChangeDetectionFolder(tmp_path, label_values="0_1")[0]
    with pytest.raises(ValueError, match="label_values"):
        ChangeDetectionFolder(tmp_path, label_values="auto")


def test_cdd_jpeg_labels_use_the_official_threshold(tmp_path):
    label = np.zeros((16, 16, 3), dtype=np.uint8)
    label[:, 8:] = 250
    _pair(tmp_path, "p.jpg", _rgb(16, 16, 40), _rgb(16, 16, 90), label)  # RGB JPEG: compression noise
    mask = CDD(tmp_path)[0]["mask"]
    assert mask[:, :6].sum() == 0 and mask[:, 10:].min() == 1
    assert set(mask.unique().tolist()) <= {0, 1}


def test_whu_reads_every_file_and_oscd_patches_read_png(tmp_path):
    _pair(tmp_path / "whu", "1.tif", _rgb(), _rgb(), np.zeros((8, 8), np.uint8))
    _pair(tmp_path / "whu", "2.png", _rgb(), _rgb(), np.zeros((8, 8), np.uint8))
    assert [p[0].name for p in WHUCD(tmp_path / "whu").files] == ["1.tif", "2.png"]
    _pair(tmp_path / "oscd", "c_0_0.png", _rgb(), _rgb(), np.zeros((8, 8), np.uint8), split="test")
    assert len(OSCD(tmp_path / "oscd", "test")) == 1


def test_missing_partner_files_and_folders_are_named(tmp_path):
    _pair(tmp_path, "a.png", _rgb(), _rgb(), np.zeros((8, 8), np.uint8))
    _pair(tmp_path, "b.png", _rgb(), None, None)
    with pytest.raises(FileNotFoundError, match=r"B/b\.png"):
        LEVIRCD(tmp_path)
    (tmp_path / "train" / "A" / "b.png").unlink()
    _pair(tmp_path, "c.png", _rgb(), _rgb(), None)
    with pytest.raises(FileNotFoundError, match=r"label/c\.png"):
        LEVIRCD(tmp_path)
    with pytest.raises(FileNotFoundError, match="image folder A not found"):
        LEVIRCD(tmp_path, "val")


def test_unlabelled_split_has_no_mask(tmp_path):
    _pair(tmp_path, "a.png", _rgb(), _rgb(), None, split="test")
    sample = LEVIRCD(tmp_path, "test")[0]
    assert "mask" not in sample and sample["mask_path"] is None


def test_size_mismatches_and_unreadable_files_are_named(tmp_path):
    _pair(tmp_path, "a.png", _rgb(8, 8), _rgb(8, 6), np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"B/a\.png: image B is 8x6 \(HxW\) but image A .*A/a\.png is 8x8"):
        LEVIRCD(tmp_path)[0]
    _pair(tmp_path, "a.png", _rgb(8, 8), _rgb(8, 8), np.zeros((4, 8), np.uint8))
    with pytest.raises(ValueError, match=r"label/a\.png: label is 4x8"):
        LEVIRCD(tmp_path)[0]
    (tmp_path / "train" / "B" / "a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"B/a\.png: cannot read image"):
        LEVIRCD(tmp_path)[0]


def _write_band(path, arr):
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1, dtype=arr.dtype
    ) as dst:
        dst.write(arr, 1)


def test_oscd_sentinel2_release_to_rgb_patches(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    (images).mkdir()
    (images / "train.txt").write_text("paris,lasvegas\n")
    rng = np.random.default_rng(0)
    for city in ("paris", "lasvegas"):
        for date in (1, 2):
            for band in ("B02", "B03", "B04"):
                _write_band(
                    images / city / f"imgs_{date}_rect" / f"{band}.tif",
                    rng.integers(0, 4000, (10, 13)).astype(np.uint16),
                )
        cm = np.ones((10, 13), np.uint8)
        cm[2:5, 3:9] = 2
        _write_band(labels / city / "cm" / f"{city}-cm.tif", cm)
    ds = OSCDSentinel2(images, labels, "train")
    sample = ds[0]
    import rasterio

    with rasterio.open(images / "paris" / "imgs_1_rect" / "B04.tif") as src:
        dn = src.read(1).astype(np.float32)
    assert torch.equal(
        sample["image_a"][0], torch.from_numpy(np.clip(np.rint(dn * 255 / 3000), 0, 255).astype(np.uint8))
    )
    assert sample["mask"].sum() == 18 and sample["mask"][2, 3] == 1
    assert write_oscd_patches(ds, tmp_path / "patches" / "train", patch=8) == 2 * 4  # 10x13 -> starts {0,2}x{0,5}
    patches = OSCD(tmp_path / "patches", "train")
    assert len(patches) == 8 and patches[0]["image_a"].shape == (3, 8, 8)
    cm_bad = np.full((10, 13), 3, np.uint8)
    _write_band(labels / "paris" / "cm" / "paris-cm.tif", cm_bad)
    with pytest.raises(ValueError, match=r"paris-cm\.tif.*\[3\]"):
        ds[0]
    (images / "paris" / "imgs_2_rect" / "B03.tif").unlink()
    with pytest.raises(FileNotFoundError, match=r"imgs_2_rect/B03\.tif"):
        ds[0]
