"""LoveDA, SpaceNet v1, EuroSAT and LEVIR-CD writers, read back with plain tools (PIL, rasterio, json)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.features import rasterize

from mtp.data.synthetic import (
    EUROSAT_CLASSES,
    SCENE_CLASSES,
    SceneGenerator,
    write_eurosat,
    write_levir_cd,
    write_loveda,
    write_spacenet,
)
from mtp.data.synthetic.writers_segmentation import URBAN_SCENES


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_loveda_mtp_layout(tmp_path):
    summary = write_loveda(tmp_path, seed=1, n_train=3, n_val=2, n_test=2, size=96)
    assert summary.num_images == 7
    assert _names(tmp_path) == ["test", "trainval"]
    for split, n in (("trainval", 5), ("test", 2)):
        images, labels = _names(tmp_path / split / "images"), _names(tmp_path / split / "labels")
        assert images == labels and len(images) == n
    nodata = 0
    for path in sorted((tmp_path / "trainval" / "labels").iterdir()):
        mask = _png(path)
        image = _png(tmp_path / "trainval" / "images" / path.name)
        assert mask.dtype == np.uint8 and mask.shape == (96, 96) and image.shape == (96, 96, 3)
        assert mask.max() <= 7 and mask.min() >= 0
        zero = mask == 0
        nodata += int(zero.any())
        assert not image[zero].any()  # no-data pixels are black
        assert (mask[~zero] >= 1).all()
    assert nodata >= 1
    # image 0 (Urban, no no-data strip) is the generator scene, mask = semantic + 1
    choice = int(np.random.default_rng([1, 0, 2]).integers(len(URBAN_SCENES)))
    scene = SceneGenerator(1, 96).scene(0, scene_class=URBAN_SCENES[choice])
    np.testing.assert_array_equal(_png(tmp_path / "trainval" / "labels" / "0.png"), scene.semantic + 1)
    np.testing.assert_array_equal(_png(tmp_path / "trainval" / "images" / "0.png"), scene.image)


def test_loveda_release_layout_and_reader_compatibility(tmp_path):
    write_loveda(tmp_path, seed=0, n_train=4, n_val=2, n_test=2, size=64, layout="release")
    for split in ("Train", "Val"):
        for domain in ("Urban", "Rural"):
            d = tmp_path / split / domain
            assert _names(d / "images_png") == _names(d / "masks_png") and _names(d / "images_png")
    for domain in ("Urban", "Rural"):
        assert _names(tmp_path / "Test" / domain) == ["images_png"]
    same = write_loveda(tmp_path / "mtp", seed=0, n_train=4, n_val=2, n_test=2, size=64)
    assert same.num_images == 8
    a = _png(tmp_path / "Train" / "Urban" / "masks_png" / "0.png")
    b = _png(tmp_path / "mtp" / "trainval" / "labels" / "0.png")
    np.testing.assert_array_equal(a, b)  # content does not depend on the layout
    segmentation = pytest.importorskip("mtp.data.datasets.segmentation")
    data = segmentation.LoveDA(tmp_path, split="trainval", layout="release")
    assert len(data) == 6


def test_spacenet_geotiff_geojson_round_trip(tmp_path):
    summary = write_spacenet(tmp_path, seed=2, n=4, size=(80, 112))
    assert _names(tmp_path) == ["3band", "geojson"]
    assert _names(tmp_path / "3band") == [f"3band_AOI_1_RIO_img{i}.tif" for i in range(1, 5)]
    assert _names(tmp_path / "geojson") == [f"Geo_AOI_1_RIO_img{i}.geojson" for i in range(1, 5)]
    gen = SceneGenerator(2, (80, 112), scene_classes=("residential", "industrial"))
    n_buildings = 0
    for i in range(1, 5):
        scene = gen.scene(i, exclude=("building",) if i % 4 == 0 else ())
        with rasterio.open(tmp_path / "3band" / f"3band_AOI_1_RIO_img{i}.tif") as src:
            assert src.count == 3 and src.dtypes == ("uint8",) * 3 and src.crs.to_epsg() == 4326
            assert (src.height, src.width) == (80, 112)
            np.testing.assert_array_equal(src.read().transpose(1, 2, 0), scene.image)
            transform = src.transform
            assert -44 < transform.c < -43 and -23 < transform.f < -22.9 and transform.e < 0
        data = json.loads((tmp_path / "geojson" / f"Geo_AOI_1_RIO_img{i}.geojson").read_text())
        assert data["type"] == "FeatureCollection"
        features = data["features"]
        if i % 4 == 0:
            assert features == []
            continue
        assert len(features) == sum(o.category == "building" for o in scene.objects)
        n_buildings += len(features)
        if not features:
            continue
        building = scene.semantic == 1
        for f in features:
            ring = np.array(f["geometry"]["coordinates"][0])
            assert f["geometry"]["type"] == "Polygon" and np.array_equal(ring[0], ring[-1]) and len(ring) == 5
            inv = ~transform
            lon, lat = ring[:-1, 0], ring[:-1, 1]
            cols, rows = inv.a * lon + inv.b * lat + inv.c, inv.d * lon + inv.e * lat + inv.f  # pixel corners
            cx, cy = np.mean(cols) - 0.5, np.mean(rows) - 0.5  # -> pixel-centre coordinates
            assert building[round(float(cy)), round(float(cx))]
        burnt = rasterize([f["geometry"] for f in features], out_shape=(80, 112), transform=transform) > 0
        iou = (burnt & building).sum() / (burnt | building).sum()
        assert iou > 0.9
    assert summary.num_objects == n_buildings > 0


def test_spacenet_output_feeds_the_mask_converter(tmp_path):
    tools = pytest.importorskip("mtp.data.tools.spacenet")
    write_spacenet(tmp_path / "raw", seed=0, n=4, size=64)
    tools.convert_spacenet_v1(tmp_path / "raw", tmp_path / "out", val_fraction=0.25, seed=0)
    gen = SceneGenerator(0, 64, scene_classes=("residential", "industrial"))
    labels = sorted((tmp_path / "out").glob("*/labels/*.png"))
    assert len(labels) == 4
    for path in labels:
        i = int(path.stem.rsplit("img", 1)[1])
        building = gen.scene(i, exclude=("building",) if i % 4 == 0 else ()).semantic == 1
        mask = _png(path) == 1
        assert (mask ^ building).sum() <= max(8, 0.1 * building.sum())


@pytest.mark.parametrize("layout", ["release", "mtp"])
def test_eurosat(tmp_path, layout):
    summary = write_eurosat(tmp_path, seed=0, n_per_class=3, size=32, source_size=96, layout=layout)
    assert summary.num_images == 3 * len(SCENE_CLASSES)
    base = [tmp_path] if layout == "release" else [tmp_path / "train", tmp_path / "val"]
    if layout == "mtp":
        assert _names(tmp_path) == ["train", "val"]
    for b in base:
        assert _names(b) == sorted(EUROSAT_CLASSES) == list(EUROSAT_CLASSES)
    gen = SceneGenerator(0, 96)
    for c, folder in enumerate(EUROSAT_CLASSES):
        files = sorted(p for b in base for p in (b / folder).iterdir())
        assert sorted(p.name for p in files) == [f"{folder}_{n}.jpg" for n in (1, 2, 3)]
        if layout == "mtp":
            assert [p.parent.parent.name for p in sorted(files, key=lambda p: p.name)] == ["train", "train", "val"]
        first = next(p for p in files if p.name.endswith("_1.jpg"))
        image = _png(first)
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        scene = gen.scene(c * 3, scene_class=SCENE_CLASSES[c])
        expected = cv2.resize(scene.image, (32, 32), interpolation=cv2.INTER_AREA)
        assert np.abs(image.astype(int) - expected).mean() < 8  # JPEG


def test_levir_cd(tmp_path):
    summary = write_levir_cd(tmp_path, seed=0, n_train=3, n_val=1, n_test=1, size=96)
    assert summary.num_images == 5
    assert _names(tmp_path) == ["test", "train", "val"]
    gen = SceneGenerator(0, 96)
    running = 0
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        names = [f"{split}_{k}.png" for k in range(1, n + 1)]
        for sub in ("A", "B", "label"):
            assert _names(tmp_path / split / sub) == sorted(names)
        for name in names:
            a, b, label = (_png(tmp_path / split / sub / name) for sub in ("A", "B", "label"))
            assert a.shape == b.shape == (96, 96, 3) and label.shape == (96, 96) and label.dtype == np.uint8
            assert set(np.unique(label).tolist()) <= {0, 255}
            image_a, image_b, change = gen.change_pair(running)
            np.testing.assert_array_equal(a, image_a)
            np.testing.assert_array_equal(b, image_b)
            np.testing.assert_array_equal(label // 255, change)
            running += 1
