"""Rasters that are not 8-bit RGB (docs/DATASETS.md "Images: the raster rule"; docs/RELIABILITY.md "Data"): 16-bit
and float GeoTIFFs are scaled by a documented rule instead of saturating or vanishing, NaN / Inf are refused with
the file name unless declared nodata, grey / RGBA become RGB with a log line, extra bands need ``rgb_bands``."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mtp.data.datasets.change_detection import ChangeDetectionFolder
from mtp.data.datasets.segmentation import ImageMaskFolder
from tests.bad_inputs.conftest import assert_clear_error
from tests.bad_inputs.data_files import check_data, spec, write_config, write_tif

CLASSES = ("background", "building")


def folder_with(tmp_path: Path, name: str, write) -> ImageMaskFolder:
    """A one-image ImageMaskFolder whose image ``name`` is written by ``write(path)``; mask 0/1, 16 x 16."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    write(images / name)
    Image.fromarray(np.eye(16, dtype=np.uint8)).save(masks / (Path(name).stem + ".png"))
    return ImageMaskFolder(images, masks, img_suffix=Path(name).suffix, classes=CLASSES)


def ramp(dtype, scale: float) -> np.ndarray:
    """(1, 16, 16) values 0 .. 255 * scale along the rows."""
    return (np.repeat(np.arange(256, dtype=np.float64).reshape(1, 16, 16), 1, 0) * scale).astype(dtype)


def test_uint16_tiff_is_stretched_not_saturated(tmp_path):
    ds = folder_with(tmp_path, "a.tif", lambda p: write_tif(p, ramp(np.uint16, 16)))  # 0 .. 4080
    image = ds[0]["image"]
    assert image.shape == (3, 16, 16) and len(image.unique()) > 200  # before: values above 255 saturated to 255
    assert image[0, 0, 0] == 0 and image[0, -1, -1] == 255  # 2nd / 98th percentiles -> 0 / 255
    assert (image[0] == image[1]).all() and (image[1] == image[2]).all()  # grey -> 3 equal channels
    from mtp.data.datasets.rasters import RasterRule, read_rgb_array

    fixed = read_rgb_array(ds.files[0][0], RasterRule(scaling="fixed", max_value=4080.0))
    assert fixed[0, 0, 0] == 0 and fixed[-1, -1, 0] == 255 and fixed[8, 0, 0] == 128  # 2048 / 4080 * 255
    with pytest.raises(ValueError, match=r"a\.tif: uint16 pixels and scaling='refuse'"):
        read_rgb_array(ds.files[0][0], RasterRule(scaling="refuse"))


def test_float_tiff_with_nan_is_refused_with_the_file_name(tmp_path):
    bands = ramp(np.float32, 1 / 255)
    bands[0, 3, 4] = np.nan
    bands[0, 5, 5] = np.inf
    ds = folder_with(tmp_path, "nan.tif", lambda p: write_tif(p, bands))
    with pytest.raises(ValueError, match=r"nan\.tif: 1 NaN and 1 infinite pixel value\(s\) \(nodata declared: None\)"):
        ds[0]  # before: NaN silently became 0


def test_nan_declared_as_nodata_becomes_0(tmp_path):
    bands = np.repeat(ramp(np.float32, 1 / 255), 3, axis=0)
    bands[:, 0, :4] = np.nan
    image = folder_with(tmp_path, "f.tif", lambda p: write_tif(p, bands, nodata=float("nan")))[0]["image"]
    assert (image[:, 0, :4] == 0).all() and image.max() == 255  # 3-band float: before "cannot identify image file"


def test_rgba_and_grey_pngs_become_rgb_with_a_log_line(tmp_path, caplog):
    rgba = np.dstack([np.full((16, 16, 3), 70, np.uint8), np.zeros((16, 16), np.uint8)])
    with caplog.at_level(logging.INFO, logger="mtp.data.datasets.rasters"):
        image = folder_with(tmp_path / "a", "rgba.png", lambda p: Image.fromarray(rgba).save(p))[0]["image"]
        grey = folder_with(tmp_path / "g", "g.png", lambda p: Image.fromarray(rgba[..., 0]).save(p))[0]["image"]
    assert image.shape == (3, 16, 16) and (image == 70).all() and grey.shape == (3, 16, 16)
    assert "rgba.png: alpha band dropped" in caplog.text
    assert "g.png: single-band (grey) image repeated to 3 channels" in caplog.text


def test_multispectral_needs_rgb_bands_and_16_bit_png_keeps_its_bits(tmp_path):
    from mtp.data.datasets.rasters import RasterRule, read_rgb_array

    path = write_tif(tmp_path / "ms.tif", np.stack([ramp(np.uint16, 10)[0] * (b + 1) for b in range(4)]))
    with pytest.raises(ValueError, match=r"ms\.tif: 4 colour bands \(uint16\); choose the three shown as R, G, B "
                                         r"with rgb_bands=\[r, g, b\]"):  # fmt: skip
        read_rgb_array(path)
    assert read_rgb_array(path, RasterRule(rgb_bands=(3, 2, 1))).shape == (16, 16, 3)
    with pytest.raises(ValueError, match=r"has 4 band\(s\), rgb_bands=\[5, 4, 3\] asks for more"):
        read_rgb_array(path, RasterRule(rgb_bands=(5, 4, 3)))
    png16 = tmp_path / "deep.png"
    cv2.imwrite(str(png16), np.dstack([ramp(np.uint16, 4)[0]] * 3))  # 0 .. 1020 in a 48-bit PNG
    image = read_rgb_array(png16)
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255  # stretched, not cut to the high byte (all ~0)


def test_change_pairs_read_16_bit_images_alike_with_fixed_scaling(tmp_path):
    from mtp.data.datasets.rasters import RasterRule

    for folder, scale in (("A", 8), ("B", 16)):
        write_tif(tmp_path / folder / "x.tif", np.repeat(ramp(np.uint16, scale), 3, axis=0))
    (tmp_path / "label").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "label" / "x.tif")
    ds = ChangeDetectionFolder(tmp_path, None, img_suffix=".tif", raster=RasterRule(scaling="fixed", max_value=4080))
    sample = ds[0]
    assert int(sample["image_b"][0, -1, -1]) == 255 and int(sample["image_a"][0, -1, -1]) == 128  # same scale


def test_check_data_lists_raster_problems_and_reads_the_yaml_raster_rule(tmp_path):
    bad, good = tmp_path / "bad", tmp_path / "good"
    nan = ramp(np.float32, 1 / 255)
    nan[0, 1, 1] = np.nan
    write_tif(bad / "images" / "nan.tif", nan)
    write_tif(bad / "images" / "four.tif", np.repeat(ramp(np.uint16, 1), 4, axis=0))
    write_tif(good / "images" / "deep.tif", np.repeat(ramp(np.uint16, 16), 3, axis=0))
    for folder in (bad, good):
        (folder / "masks").mkdir()
        for image in (folder / "images").iterdir():
            Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "masks" / f"{image.stem}.png")
    folder_class = "mtp.data.datasets.segmentation.ImageMaskFolder"
    data = spec("mtp.data.datamodules.SegmentationDataModule",
                train=spec(folder_class, images_dir=bad / "images", masks_dir=bad / "masks", img_suffix=".tif",
                           classes=list(CLASSES)),
                val=spec(folder_class, images_dir=good / "images", masks_dir=good / "masks", img_suffix=".tif",
                         classes=list(CLASSES), raster={"scaling": "refuse"}))  # fmt: skip
    out = assert_clear_error(check_data(write_config(tmp_path / "c.yaml", data), "--level", "full"))
    assert "3 problem(s)" in out
    assert f"[train] {bad / 'images' / 'four.tif'}: 4 colour bands (uint16); choose the three" in out
    assert f"[train] {bad / 'images' / 'nan.tif'}: 1 NaN and 0 infinite pixel value(s)" in out
    assert f"[val] {good / 'images' / 'deep.tif'}: uint16 pixels and scaling='refuse'" in out
