"""Segmentation readers: sample dicts, reduce_zero_label, LoveDA / SpaceNet layouts, errors naming files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from mtp.data.datasets.segmentation import (
    ImageMaskFolder,
    LoveDA,
    SpaceNetV1,
    loveda_submission_array,
    reduce_zero_label,
)
from mtp.data.transforms.segmentation import build_test_transform

CLASSES = ("a", "b", "c")


def write_rgb(path: Path, h: int, w: int, seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8)).save(path)


def _as_palette(mask: np.ndarray) -> Image.Image:
    img = Image.new("P", (mask.shape[1], mask.shape[0]))
    img.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    img.putdata(mask.flatten().tolist())
    return img


def make_folder(root: Path, n: int = 3, h: int = 12, w: int = 16, values=(0, 1, 2, 255)) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    for i in range(n):
        write_rgb(root / "img" / f"t{i}.png", h, w, seed=i)
        write_mask(root / "ann" / f"t{i}.png", rng.choice(values, size=(h, w)))
    return root / "img", root / "ann"


def test_image_mask_folder_sample(tmp_path):
    images, masks = make_folder(tmp_path)
    ds = ImageMaskFolder(images, masks, classes=CLASSES)
    assert len(ds) == 3 and ds.num_classes == 3 and ds.ignore_index == 255 and len(ds.palette) == 3
    s = ds[1]
    assert set(s) == {"image", "mask", "image_path", "mask_path", "ori_size"}
    assert isinstance(s["image"], tv_tensors.Image) and s["image"].dtype == torch.uint8
    assert tuple(s["image"].shape) == (3, 12, 16)
    assert isinstance(s["mask"], tv_tensors.Mask) and s["mask"].dtype == torch.int64
    assert tuple(s["mask"].shape) == (12, 16) and s["ori_size"] == (12, 16)
    assert s["image_path"] == str(images / "t1.png") and s["mask_path"] == str(masks / "t1.png")
    expected = np.asarray(Image.open(images / "t1.png"))
    assert np.array_equal(s["image"].permute(1, 2, 0).numpy(), expected)
    assert ds.validate()["num_samples"] == 3


def test_palette_mask_gives_indices_and_grey_image_becomes_rgb(tmp_path):
    mask = np.array([[0, 1], [2, 255]])
    (tmp_path / "m").mkdir()
    (tmp_path / "i").mkdir()
    _as_palette(mask).save(tmp_path / "m" / "x.png")
    Image.fromarray(np.full((2, 2), 77, dtype=np.uint8)).save(tmp_path / "i" / "x.png")
    s = ImageMaskFolder(tmp_path / "i", tmp_path / "m", classes=CLASSES)[0]
    assert s["mask"].tolist() == [[0, 1], [2, 255]]
    assert s["image"].shape == (3, 2, 2) and (s["image"] == 77).all()


def test_unlabelled_folder_and_transform(tmp_path):
    images, _ = make_folder(tmp_path)
    ds = ImageMaskFolder(images, classes=CLASSES, transform=build_test_transform())
    s = ds[0]
    assert "mask" not in s and s["mask_path"] is None and s["image"].dtype == torch.float32
    ds.transform = None
    assert ds[0]["image"].dtype == torch.uint8


def test_reduce_zero_label_mapping():
    raw = torch.arange(256)
    out = reduce_zero_label(raw)
    assert out[0] == 255 and out[1] == 0 and out[7] == 6 and out[254] == 253 and out[255] == 255
    assert torch.equal(out[1:255], raw[1:255] - 1)


def test_reduce_zero_label_in_dataset(tmp_path):
    write_rgb(tmp_path / "i" / "x.png", 2, 2)
    write_mask(tmp_path / "m" / "x.png", np.array([[0, 1], [3, 255]]))
    s = ImageMaskFolder(tmp_path / "i", tmp_path / "m", classes=CLASSES, reduce_zero_label=True)[0]
    assert s["mask"].tolist() == [[255, 0], [2, 255]]


def test_missing_and_empty_folders_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        ImageMaskFolder(tmp_path / "nope", classes=CLASSES)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        ImageMaskFolder(tmp_path / "empty", classes=CLASSES)
    images, _ = make_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="nomasks"):
        ImageMaskFolder(images, tmp_path / "nomasks", classes=CLASSES)


def test_image_without_mask_listed(tmp_path):
    images, masks = make_folder(tmp_path, n=4)
    (masks / "t2.png").unlink()
    (masks / "t3.png").unlink()
    with pytest.raises(ValueError, match=r"2 image\(s\).*t2.png, t3.png"):
        ImageMaskFolder(images, masks, classes=CLASSES)


def test_truncated_image_named(tmp_path):
    images, masks = make_folder(tmp_path, h=64, w=64)
    data = (images / "t1.png").read_bytes()
    (images / "t1.png").write_bytes(data[: len(data) // 2])
    ds = ImageMaskFolder(images, masks, classes=CLASSES)
    ds[0]
    with pytest.raises(ValueError, match=r"t1\.png"):
        ds[1]


def test_size_mismatch_names_both_files(tmp_path):
    images, masks = make_folder(tmp_path)
    write_mask(masks / "t0.png", np.zeros((5, 5)))
    ds = ImageMaskFolder(images, masks, classes=CLASSES)
    with pytest.raises(ValueError, match=r"ann/t0\.png: mask is 5x5 \(HxW\) but its image .*img/t0\.png is 12x16"):
        ds[0]
    with pytest.raises(ValueError, match=r"(?s)ann/t0\.png"):
        ds.validate()


def test_bad_mask_values_named(tmp_path):
    images, masks = make_folder(tmp_path)
    write_mask(masks / "t2.png", np.array([[0, 5], [9, 255]]).repeat(6, 0).repeat(8, 1))
    ds = ImageMaskFolder(images, masks, classes=CLASSES)
    ds[0]
    with pytest.raises(ValueError, match=r"t2\.png: mask has values \[5, 9\]"):
        ds[2]
    with pytest.raises(ValueError, match=r"(?s)1 problem.*t2\.png"):
        ds.validate()


def test_rgb_mask_rejected_with_name(tmp_path):
    images, masks = make_folder(tmp_path)
    write_rgb(masks / "t0.png", 12, 16)
    with pytest.raises(ValueError, match=r"t0\.png.*single-channel"):
        ImageMaskFolder(images, masks, classes=CLASSES)[0]


def make_loveda_release(root: Path) -> None:
    for part, n in (("Train", 2), ("Val", 1), ("Test", 1)):
        for scene in ("Urban", "Rural"):
            for i in range(n):
                name = f"{part}{scene}{i}.png"
                write_rgb(root / part / scene / "images_png" / name, 8, 8)
                if part != "Test":
                    write_mask(root / part / scene / "masks_png" / name, np.arange(64).reshape(8, 8) % 8)


def test_loveda_release_layout(tmp_path):
    make_loveda_release(tmp_path)
    sizes = {s: len(LoveDA(tmp_path, s, layout="release")) for s in ("train", "val", "trainval", "test")}
    assert sizes == {"train": 4, "val": 2, "trainval": 6, "test": 2}
    ds = LoveDA(tmp_path, "val", layout="release")
    assert ds.classes[0] == "background" and ds.classes[-1] == "agricultural" and ds.num_classes == 7
    m = ds[0]["mask"]
    assert m[0, 0] == 255 and m[0, 1] == 0 and m[0, 7] == 6
    test = LoveDA(tmp_path, "test", layout="release")[0]
    assert "mask" not in test and test["mask_path"] is None
    with pytest.raises(ValueError, match="split"):
        LoveDA(tmp_path, "bogus", layout="release")


def test_loveda_mtp_layout(tmp_path):
    for i in range(2):
        write_rgb(tmp_path / "trainval" / "images" / f"{i}.png", 8, 8)
        write_mask(tmp_path / "trainval" / "labels" / f"{i}.png", np.full((8, 8), 3))
        write_rgb(tmp_path / "test" / "images" / f"{i}.png", 8, 8)
    ds = LoveDA(tmp_path)
    assert len(ds) == 2 and (ds[0]["mask"] == 2).all()
    assert "mask" not in LoveDA(tmp_path, "test")[1]
    with pytest.raises(FileNotFoundError, match="val"):
        LoveDA(tmp_path, "val")
    with pytest.raises(ValueError, match="layout"):
        LoveDA(tmp_path, layout="zip")


def test_loveda_submission_array():
    pred = torch.tensor([[0, 6], [3, 1]])
    out = loveda_submission_array(pred)
    assert out.dtype == np.uint8 and out.tolist() == [[0, 6], [3, 1]]
    with pytest.raises(ValueError, match=r"0\.\.6"):
        loveda_submission_array(np.array([[0, 7]]))


def make_spacenet(root: Path, values=(0, 1)) -> None:
    for split in ("train", "val"):
        for i in range(2):
            write_rgb(root / split / "images" / f"{split}{i}.png", 6, 6)
            write_mask(root / split / "labels" / f"{split}{i}.png", np.array(values)[np.arange(36).reshape(6, 6) % 2])


def test_spacenet_layout_and_test_is_val(tmp_path):
    make_spacenet(tmp_path)
    ds = SpaceNetV1(tmp_path, "train")
    assert ds.classes == ("background", "building") and ds.num_classes == 2
    assert set(ds[0]["mask"].unique().tolist()) == {0, 1}
    test = SpaceNetV1(tmp_path, "test")
    assert [f[0].name for f in test.files] == ["val0.png", "val1.png"]
    assert test.validate()["class_pixels"] == [36, 36]


def test_spacenet_0_255_export_detected(tmp_path):
    make_spacenet(tmp_path, values=(0, 255))
    ds = SpaceNetV1(tmp_path, "val")
    with pytest.raises(ValueError, match=r"val0\.png.*0/255.*spacenet-to-masks"):
        ds[0]
    assert SpaceNetV1(tmp_path, "val", check_255_export=False)[0]["mask"].max() == 255
