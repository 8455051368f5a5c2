"""The raster rule (mtp.data.datasets.rasters / raster_rule): option checks, fixed and percentile scaling, shared
ranges for windows, header-only truncation tests, palette and OpenCV paths."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from mtp.data.datasets.raster_rule import RasterRule, band_ranges, scale_bands, valid_pixels
from mtp.data.datasets.rasters import check_raster, raster_info, read_rgb_array


def _tif(path, bands, **kw):
    c, h, w = bands.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=c, dtype=bands.dtype.name, **kw) as d:
            d.write(bands)
    return path


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scaling": "auto"}, "scaling must be"),
        ({"percentiles": (50, 10)}, "percentiles must satisfy"),
        ({"max_value": 0}, "max_value must be a positive number"),
        ({"rgb_bands": (1, 2)}, "rgb_bands must be three 1-based"),
        ({"rgb_bands": (0, 1, 2)}, "rgb_bands must be three 1-based"),
        ({"decoder": "gdal"}, "decoder must be"),
    ],
)
def test_rule_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RasterRule(**kwargs)


def test_fixed_ranges_follow_the_dtype_and_percentiles_the_data():
    fixed = RasterRule(scaling="fixed")
    for dtype, top in ((np.uint16, 65535), (np.int16, 32767), (np.float32, 1.0)):
        assert band_ranges(np.zeros((1, 2, 2), dtype), fixed)[0].tolist() == [0.0, top]
    bands = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    lo, hi = band_ranges(bands, RasterRule(percentiles=(0, 100)))[0]
    assert (lo, hi) == (0.0, 99.0)
    assert scale_bands(np.full((1, 2, 2), 7, np.uint16)).max() == 0  # a constant band -> 0
    negative = scale_bands(np.array([[[-5, 16383]]], np.int16), RasterRule(scaling="fixed"))
    assert negative.tolist() == [[[0, 127]]]
    assert scale_bands(np.ones((1, 1, 1), np.uint8)).dtype == np.uint8  # uint8 as stored


def test_windows_scaled_with_shared_ranges_match_the_whole_image():
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 5000, (3, 64, 64)).astype(np.uint16)
    rule = RasterRule()
    ranges = band_ranges(scene, rule)
    whole = scale_bands(scene, rule)
    left = scale_bands(scene[:, :, :32], rule, ranges=ranges)
    np.testing.assert_array_equal(left, whole[:, :, :32])


def test_valid_pixels_nodata_and_non_finite():
    bands = np.array([[[1.0, 0.0], [np.nan, 2.0]]], np.float32)
    with pytest.raises(ValueError, match=r"x\.tif: 1 NaN and 0 infinite"):
        valid_pixels(bands, None, "x.tif")
    assert valid_pixels(bands, float("nan"), "x.tif").tolist() == [[[True, True], [False, True]]]
    with pytest.raises(ValueError, match="1 NaN"):  # a numeric nodata does not cover NaN
        valid_pixels(bands, 0.0, "x.tif")


def test_header_checks_find_truncated_tiffs_and_jpegs(tmp_path):
    path = _tif(tmp_path / "t.tif", np.ones((3, 300, 300), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert raster_info(path).hw == (300, 300)  # the header is intact
    with pytest.raises(ValueError, match=r"t\.tif: truncated TIFF \(its last block ends at byte"):
        check_raster(path)
    with pytest.raises(ValueError, match=r"t\.tif: cannot read image \(corrupt or truncated pixel data\)"):
        read_rgb_array(path)
    jpg = tmp_path / "j.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(jpg)
    jpg.write_bytes(jpg.read_bytes()[:100])  # the header itself is cut
    with pytest.raises(ValueError, match=r"j\.jpg: truncated JPEG \(no end-of-image marker\)"):
        raster_info(jpg)


def test_palette_tiff_and_the_opencv_decoder(tmp_path):
    path = tmp_path / "p.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", height=2, width=2, count=1, dtype="uint8") as dst:
            dst.write(np.array([[[0, 1], [1, 0]]], np.uint8))
            dst.write_colormap(1, {0: (10, 20, 30, 255), 1: (200, 100, 50, 255)})
    assert read_rgb_array(path)[0, 1].tolist() == [200, 100, 50]
    png = tmp_path / "c.png"
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    cv2.imwrite(str(png), rgb[..., ::-1])
    np.testing.assert_array_equal(read_rgb_array(png, RasterRule(decoder="cv2")), rgb)
    np.testing.assert_array_equal(read_rgb_array(png), rgb)
