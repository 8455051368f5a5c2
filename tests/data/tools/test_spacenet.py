"""SpaceNet v1 converter: GeoTIFF + lon/lat GeoJSON footprints → 0/1 PNG masks with a seeded split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine
from rasterio.warp import transform as warp_points

from mtp.cli import main
from mtp.data.datasets.segmentation import SpaceNetV1
from mtp.data.tools.spacenet import convert_spacenet_v1, find_pairs

WEST, NORTH, RES = -43.5, -22.9, 1e-4  # Rio de Janeiro, ~11 m pixels
H, W = 16, 20


def lonlat(col: float, row: float) -> list[float]:
    """Pixel-grid corner (col, row) → [lon, lat] on the test images' transform."""
    return [WEST + col * RES, NORTH - row * RES]


def square(c0: int, r0: int, c1: int, r1: int) -> dict:
    ring = [lonlat(c0, r0), lonlat(c1, r0), lonlat(c1, r1), lonlat(c0, r1), lonlat(c0, r0)]
    return {"type": "Polygon", "coordinates": [ring]}


def write_tif(path: Path, seed: int = 0, dtype: str = "uint8") -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).integers(0, 256, (3, H, W)).astype(dtype)
    profile = dict(driver="GTiff", height=H, width=W, count=3, dtype=dtype, crs="EPSG:4326")
    with rasterio.open(path, "w", transform=Affine(RES, 0.0, WEST, 0.0, -RES, NORTH), **profile) as dst:
        dst.write(data)
    return data


def write_geojson(path: Path, geoms: list[dict], crs: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fc: dict = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": g} for g in geoms],
    }
    if crs:
        fc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(fc))


def make_release(root: Path, n_extra: int = 0) -> dict[str, np.ndarray]:
    """img1: one square building (rows 2..5, cols 3..7); img2: empty collection; img3: no GeoJSON."""
    images = {}
    images["img1"] = write_tif(root / "3band" / "3band_AOI_1_RIO_img1.tif", seed=1)
    write_geojson(root / "vectordata" / "geojson" / "Geo_AOI_1_RIO_img1.geojson", [square(3, 2, 8, 6)])
    write_tif(root / "3band" / "3band_AOI_1_RIO_img2.tif", seed=2)
    write_geojson(root / "vectordata" / "geojson" / "Geo_AOI_1_RIO_img2.geojson", [])
    write_tif(root / "3band" / "3band_AOI_1_RIO_img3.tif", seed=3)
    for i in range(n_extra):
        write_tif(root / "3band" / f"3band_AOI_1_RIO_img{10 + i}.tif", seed=10 + i)
        write_geojson(root / "vectordata" / "geojson" / f"Geo_AOI_1_RIO_img{10 + i}.geojson", [square(0, 0, 2, 2)])
    return images


def load_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _find(out: Path, stem: str, kind: str) -> Path:
    (hit,) = list(out.glob(f"*/{kind}/{stem}.png"))
    return hit


def test_rasterised_square_and_empty_mask(tmp_path):
    images = make_release(tmp_path / "src")
    summary = convert_spacenet_v1(tmp_path / "src", tmp_path / "out", val_fraction=0.5, seed=0)
    assert summary["train"] + summary["val"] == 2 and summary["val"] == 1
    assert summary["skipped_no_geojson"] == 1 and summary["skipped_files"][0].endswith("3band_AOI_1_RIO_img3.tif")
    assert summary["empty_masks"] == 1
    mask = load_png(_find(tmp_path / "out", "3band_AOI_1_RIO_img1", "labels"))
    expected = np.zeros((H, W), np.uint8)
    expected[2:6, 3:8] = 1
    assert mask.dtype == np.uint8 and np.array_equal(mask, expected)
    rgb = load_png(_find(tmp_path / "out", "3band_AOI_1_RIO_img1", "images"))
    assert np.array_equal(rgb, images["img1"].transpose(1, 2, 0))
    empty = load_png(_find(tmp_path / "out", "3band_AOI_1_RIO_img2", "labels"))
    assert empty.shape == (H, W) and not empty.any()
    # the output is what the dataset class reads
    ds = SpaceNetV1(tmp_path / "out", "train")
    assert len(ds) == 1 and set(ds[0]["mask"].unique().tolist()) <= {0, 1}


def test_projected_geojson_is_reprojected(tmp_path):
    write_tif(tmp_path / "src" / "3band_AOI_1_RIO_img7.tif")
    ring = [lonlat(3, 2), lonlat(8, 2), lonlat(8, 6), lonlat(3, 6), lonlat(3, 2)]
    xs, ys = warp_points("EPSG:4326", "EPSG:3857", [p[0] for p in ring], [p[1] for p in ring])
    poly = {"type": "Polygon", "coordinates": [[[x, y] for x, y in zip(xs, ys, strict=True)]]}
    write_geojson(tmp_path / "src" / "Geo_AOI_1_RIO_img7.geojson", [poly], crs="EPSG:3857")
    convert_spacenet_v1(tmp_path / "src", tmp_path / "out", val_fraction=0.0)
    mask = load_png(tmp_path / "out" / "train" / "labels" / "3band_AOI_1_RIO_img7.png")
    assert mask[2:6, 3:8].all() and mask.sum() == 20


def test_split_is_seeded(tmp_path):
    make_release(tmp_path / "src", n_extra=8)
    a = convert_spacenet_v1(tmp_path / "src", tmp_path / "a", val_fraction=0.3, seed=7)
    convert_spacenet_v1(tmp_path / "src", tmp_path / "b", val_fraction=0.3, seed=7)
    assert a["val"] == 3 and a["train"] == 7
    split_a = json.loads((tmp_path / "a" / "split.json").read_text())
    split_b = json.loads((tmp_path / "b" / "split.json").read_text())
    assert split_a == split_b and split_a["seed"] == 7
    assert sorted(p.stem for p in (tmp_path / "a" / "val" / "images").iterdir()) == sorted(split_a["val"])
    splits = set()
    for seed in range(4):
        convert_spacenet_v1(tmp_path / "src", tmp_path / f"s{seed}", val_fraction=0.3, seed=seed)
        splits.add(tuple(json.loads((tmp_path / f"s{seed}" / "split.json").read_text())["val"]))
    assert len(splits) > 1


def test_errors_name_the_file(tmp_path):
    src = tmp_path / "src"
    make_release(src)
    (src / "3band" / "3band_AOI_1_RIO_img1.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match=r"3band_AOI_1_RIO_img1\.tif"):
        convert_spacenet_v1(src, tmp_path / "out")
    write_tif(src / "3band" / "3band_AOI_1_RIO_img1.tif")
    (src / "vectordata" / "geojson" / "Geo_AOI_1_RIO_img2.geojson").write_text("{broken")
    with pytest.raises(ValueError, match=r"Geo_AOI_1_RIO_img2\.geojson"):
        convert_spacenet_v1(src, tmp_path / "out")
    write_geojson(src / "vectordata" / "geojson" / "Geo_AOI_1_RIO_img2.geojson", [square(0, 0, 1, 1)], crs="EPSG:bogus")
    with pytest.raises(ValueError, match=r"CRS of GeoJSON .*Geo_AOI_1_RIO_img2\.geojson"):
        convert_spacenet_v1(src, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing"):
        find_pairs(tmp_path / "missing")
    with pytest.raises(ValueError, match="val_fraction"):
        convert_spacenet_v1(src, tmp_path / "out", val_fraction=1.5)


def test_cli_tool(tmp_path, capsys):
    make_release(tmp_path / "src")
    rc = main(
        [
            "tool",
            "spacenet-to-masks",
            "--src",
            str(tmp_path / "src"),
            "--out",
            str(tmp_path / "out"),
            "--val-fraction",
            "0",
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["train"] == 2 and printed["val"] == 0 and printed["skipped_no_geojson"] == 1
