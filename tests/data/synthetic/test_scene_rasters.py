"""Large synthetic GeoTIFF scenes (mtp.data.synthetic.scene_rasters): georeferencing, tiling, no-data, the known
objects' coordinates, band orders and data types, change pairs, and the make-synthetic --format scene tool."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from mtp.cli import main
from mtp.data.synthetic import OBJECT_CLASSES, write_scene_geotiff


def test_scene_is_tiled_georeferenced_with_nodata_and_known_objects(tmp_path):
    files = write_scene_geotiff(tmp_path / "s.tif", height=600, width=700, block=256, seed=3, nodata_fraction=0.1)
    with rasterio.open(files.images[0]) as ds:
        assert ds.crs == "EPSG:32633" and ds.res == (0.5, 0.5) and ds.block_shapes == [(256, 256)] * 3
        assert ds.profile["compress"] == "deflate" and ds.nodata == 0
        image, valid = ds.read(), ds.dataset_mask() > 0
        transform = ds.transform
    assert (image[:, valid] > 0).all() and (image[:, ~valid] == 0).all()
    assert 0.08 < (~valid).mean() < 0.12 and not valid[0, 0] and valid[-1, -1]
    with rasterio.open(files.labels) as ds:
        labels = ds.read(1)
    assert (labels[~valid] == 255).all() and labels[valid].max() <= 6
    features = json.loads(files.objects.read_text())["features"]
    assert len(features) == files.num_objects > 10
    for f in features[:20]:  # geometry = the pixel rbox through the transform (pixel centres at integers)
        cx, cy = f["properties"]["pixel_rbox"][:2]
        ring = np.array(f["geometry"]["coordinates"][0][:-1])
        assert np.allclose(ring.mean(0), transform @ (cx + 0.5, cy + 0.5), atol=1e-6)
        assert f["properties"]["class"] in OBJECT_CLASSES
        x1, y1, x2, y2 = f["properties"]["pixel_bbox"]
        assert valid[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1].all()  # never in no-data


def test_bands_dtypes_and_pairs(tmp_path):
    rgb = write_scene_geotiff(tmp_path / "rgb.tif", height=256, width=256, block=256, nodata_fraction=0)
    s2 = write_scene_geotiff(tmp_path / "s2.tif", height=256, width=256, block=256, nodata_fraction=0, bands=4,
                             dtype="uint16")  # fmt: skip
    with rasterio.open(rgb.images[0]) as a, rasterio.open(s2.images[0]) as b:
        r, _, bl = a.read()
        data = b.read()
    assert data.dtype == np.uint16 and data.shape[0] == 4
    dn = data.astype(np.float64) * 255 / 3000  # `--scale s2` gives the 8-bit values back
    assert np.allclose(dn[2], r, atol=0.5) and np.allclose(dn[0], bl, atol=0.5)
    pair = write_scene_geotiff(tmp_path / "p.tif", height=256, width=256, block=256, pair=True, seed=1)
    assert [p.name for p in pair.images] == ["p_a.tif", "p_b.tif"] and pair.change.name == "p_change_truth.tif"
    with rasterio.open(pair.change) as ds:
        assert set(np.unique(ds.read(1))) <= {0, 1, 255}
    with pytest.raises(ValueError, match="multiple of 16"):
        write_scene_geotiff(tmp_path / "x.tif", height=64, width=64, block=100)


def test_make_synthetic_scene_tool(tmp_path, capsys):
    assert main(["tool", "make-synthetic", "--format", "scene", "--out", str(tmp_path), "--size", "300", "--bands",
                 "4", "--dtype", "uint16", "--crs", "EPSG:32610", "--pixel-size", "10"]) == 0  # fmt: skip
    assert "scene: 1 images" in capsys.readouterr().out
    with rasterio.open(tmp_path / "scene_0.tif") as ds:
        assert ds.crs == "EPSG:32610" and ds.res == (10.0, 10.0) and ds.count == 4 and ds.dtypes[0] == "uint16"
    assert main(["tool", "make-synthetic", "--format", "scene", "--out", str(tmp_path / "nocrs"), "--size", "200",
                 "--crs", "none"]) == 0  # fmt: skip
    with rasterio.open(tmp_path / "nocrs" / "scene_0.tif") as ds:
        assert ds.crs is None
