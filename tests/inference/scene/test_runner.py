"""predict_scene end to end through the Python API, with oracle models on scenes whose objects are known: outputs
re-opened with rasterio / json, CRS, transform, object coordinates, no duplicates across tile borders, no-data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from mtp.inference.scene import SceneInputError, SceneInterrupted, SceneOptions, load_task, predict_scene
from mtp.metrics.dota.submission import read_dota_task1
from tests.inference.scene.conftest import oracle_config
from tests.inference.scene.scenes import OBJECTS, PIXEL, TRANSFORM, KnownObject, write_scene

OPTIONS = {"tile": 64, "overlap": 16, "batch_size": 4, "progress": False, "workers": 2}


def oracle(tmp_path, name, **kw):
    return load_task(oracle_config(tmp_path / f"{name}.yaml", name, **kw))


def _features(path) -> list[dict]:
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection"
    assert data["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    return data["features"]


def _centre(feature) -> tuple[float, float]:
    ring = np.array(feature["geometry"]["coordinates"][0] if feature["geometry"]["type"] == "Polygon"
                    else feature["geometry"]["coordinates"][0][0])  # fmt: skip
    return tuple(ring[:-1].mean(axis=0))


def task_palette(ds) -> list:
    from mtp.inference.outputs import default_palette

    return default_palette(2)


def test_segmentation_classes_raster_is_georeferenced_and_marks_objects(tmp_path, scene):
    result = predict_scene(oracle(tmp_path, "OracleSegmentation"), scene, tmp_path / "out",
                           options=SceneOptions(**OPTIONS, probs=True))  # fmt: skip
    with rasterio.open(scene) as src, rasterio.open(result.paths["classes"]) as out:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        assert out.dtypes == ("uint8",) and out.nodata == 255 and out.block_shapes == [(256, 256)]  # internal tiles
        assert out.profile["compress"] == "deflate"
        assert out.colormap(1)[0][:3] == tuple(task_palette(out)[0])
        assert json.loads(out.tags(1)["class_names"]) == ["background", "object"]
        classes = out.read(1)
    for obj in OBJECTS:  # the object's centre pixel, found through the CRS
        col, row = ~out.transform @ obj.crs_centre()
        assert classes[int(row), int(col)] == 1
    assert classes[0, 0] == 255 and classes[5, 5] == 255  # the no-data corner
    assert classes[200, 20] == 0
    assert (result.tiles, result.tiles_run) == (25, 24)  # the tile at the no-data corner is skipped
    with rasterio.open(result.paths["probs"]) as probs:
        assert probs.count == 2 and probs.scales == (1 / 254, 1 / 254)
        p = probs.read()
    assert p[1, int(row), int(col)] > 250 and p[0, 0, 0] == 255
    aux = (tmp_path / "out" / "scene_classes.tif.aux.xml").read_text()
    assert "<Category>background</Category>" in aux and "<Category>object</Category>" in aux


def test_rotated_objects_are_merged_across_tile_borders_with_known_coordinates(tmp_path, scene):
    result = predict_scene(oracle(tmp_path, "OracleRotatedDetection"), scene, tmp_path / "out",
                           options=SceneOptions(**OPTIONS))  # fmt: skip
    features = _features(result.paths["objects"])
    assert len(features) == len(OBJECTS)  # object 0 lies across a tile border: found once
    for feature, obj in zip(sorted(features, key=lambda f: f["properties"]["pixel_rbox"][0]),
                            sorted(OBJECTS, key=lambda o: o.cx), strict=True):  # fmt: skip
        x, y = _centre(feature)
        ex, ey = obj.crs_centre()
        assert abs(x - ex) < 1.0 * PIXEL and abs(y - ey) < 1.0 * PIXEL
        assert feature["properties"]["score"] == 0.9  # the whole object, not a cut piece
        w, h = feature["properties"]["pixel_rbox"][2:4]
        assert abs(max(w, h) - max(obj.w, obj.h)) <= 3.0  # pixel squares of a rotated rectangle
    task1 = read_dota_task1(result.paths["task1"])
    rows = task1["object"]
    assert len(rows) == 3 and all(image == "scene" for image, _, _ in rows)
    poly = sorted(rows, key=lambda r: r[2][0])[0][2].reshape(4, 2)
    assert np.allclose(poly.mean(0), (OBJECTS[0].cx, OBJECTS[0].cy), atol=1.0)


def test_horizontal_masks_and_coco_file(tmp_path, scene):
    task = oracle(tmp_path, "OracleDetection")
    result = predict_scene(task, scene, tmp_path / "out", options=SceneOptions(**OPTIONS))
    features = _features(result.paths["objects"])
    assert len(features) == 3
    coco = json.loads(result.paths["coco"].read_text())
    assert coco["images"] == [{"id": 1, "file_name": "scene", "width": 256, "height": 224}]
    assert [c["name"] for c in coco["categories"]] == ["background", "object"]
    assert len(coco["annotations"]) == 3 and all(a["category_id"] == 1 and a["segmentation"]
                                                 for a in coco["annotations"])  # fmt: skip
    from shapely.geometry import shape

    for feature in features:  # the mask outline: area ~ the rectangle's, in m²
        obj = min(OBJECTS, key=lambda o: np.hypot(*np.subtract(o.crs_centre(), _centre(feature))))
        assert feature["geometry"]["type"] == "Polygon"
        assert shape(feature["geometry"]).area == pytest.approx(obj.w * obj.h * PIXEL**2, rel=0.35)
        x, y = _centre(feature)
        assert np.hypot(x - obj.crs_centre()[0], y - obj.crs_centre()[1]) < 2 * PIXEL


def test_classification_grid(tmp_path, scene):
    result = predict_scene(oracle(tmp_path, "OracleClassification"), scene, tmp_path / "out",
                           options=SceneOptions(**OPTIONS))  # fmt: skip
    with rasterio.open(result.paths["grid"]) as grid:
        assert grid.shape == (4, 4) and grid.count == 2 and grid.crs == "EPSG:32633"
        assert grid.transform == TRANSFORM @ rasterio.Affine.scale(64)
        classes, scores = grid.read()
    for obj in OBJECTS:
        col, row = ~grid.transform @ obj.crs_centre()
        assert classes[int(row), int(col)] == 1
    assert classes[0, 0] == 255 and scores[0, 0] == 255  # the no-data tile was skipped
    assert classes[3, 0] == 0 and scores[3, 0] >= 250
    features = _features(result.paths["grid_geojson"])
    assert len(features) == 15 and {f["properties"]["class"] for f in features} == {"background", "object"}


def test_change_pair_raster_and_polygons_with_area(tmp_path):
    a = write_scene(tmp_path / "a.tif", objects=())
    b = write_scene(tmp_path / "b.tif")
    result = predict_scene(oracle(tmp_path, "OracleChange"), a, tmp_path / "out", input_b=b,
                           options=SceneOptions(**OPTIONS))  # fmt: skip
    with rasterio.open(result.paths["change"]) as out:
        assert out.crs == "EPSG:32633" and out.transform == TRANSFORM and out.nodata == 255
        change = out.read(1)
    assert set(np.unique(change)) == {0, 1, 255}
    features = _features(result.paths["change_geojson"])
    assert len(features) == 3
    for feature in features:
        obj = min(OBJECTS, key=lambda o: np.hypot(*np.subtract(o.crs_centre(), _centre(feature))))
        assert feature["properties"]["area_m2"] == pytest.approx(obj.w * obj.h * PIXEL**2, rel=0.35)


def test_change_pair_on_shifted_grids_uses_the_overlap(tmp_path):
    a = write_scene(tmp_path / "a.tif", objects=())
    b = write_scene(tmp_path / "b.tif", shift=(32, 16), width=256, height=224)
    result = predict_scene(oracle(tmp_path, "OracleChange"), a, tmp_path / "out", input_b=b,
                           options=SceneOptions(**OPTIONS))  # fmt: skip
    with rasterio.open(result.paths["change"]) as out:
        assert out.shape == (224 - 16, 256 - 32)
        assert out.transform == TRANSFORM @ rasterio.Affine.translation(32, 16)


def test_refusals_name_the_file(tmp_path, scene):
    seg = oracle(tmp_path, "OracleSegmentation")
    with pytest.raises(SceneInputError, match="smaller than one tile"):
        predict_scene(seg, scene, tmp_path / "o", options=SceneOptions(tile=512, progress=False))
    with pytest.raises(SceneInputError, match=r"band\(s\) \[5\] out of range"):
        predict_scene(seg, scene, tmp_path / "o", options=SceneOptions(**OPTIONS, bands="1,2,5"))
    other = write_scene(tmp_path / "wgs.tif", crs="EPSG:4326")
    with pytest.raises(SceneInputError, match="not in the same CRS"):
        predict_scene(oracle(tmp_path, "OracleChange"), scene, tmp_path / "o", input_b=other,
                      options=SceneOptions(**OPTIONS))  # fmt: skip
    far = write_scene(tmp_path / "far.tif", transform=TRANSFORM @ rasterio.Affine.translation(5000, 0))
    with pytest.raises(SceneInputError, match="do not overlap"):
        predict_scene(oracle(tmp_path, "OracleChange"), scene, tmp_path / "o", input_b=far,
                      options=SceneOptions(**OPTIONS))  # fmt: skip


def _interrupt_after(monkeypatch, task, n_calls: int) -> None:
    calls = {"n": 0}
    inner = task.model.forward

    def forward(*args):
        calls["n"] += 1
        if calls["n"] > n_calls:
            raise KeyboardInterrupt
        return inner(*args)

    monkeypatch.setattr(task.model, "forward", forward)


@pytest.mark.parametrize("name", ["OracleRotatedDetection", "OracleSegmentation"])
def test_interrupt_leaves_valid_outputs_and_resume_finishes_identically(tmp_path, name, monkeypatch):
    # 640 rows: the class raster is written in blocks of 256 rows, so an interrupted run has some on disk
    lower = tuple(KnownObject(o.cx, o.cy + 400, o.w, o.h, o.angle) for o in OBJECTS)
    scene = write_scene(tmp_path / "scene.tif", height=640, objects=OBJECTS + lower)
    opts = dict(OPTIONS, batch_size=2)
    ref = predict_scene(oracle(tmp_path, name), scene, tmp_path / "ref", options=SceneOptions(**opts))
    kind = "objects" if "Detection" in name else "classes"
    task = oracle(tmp_path, name)
    _interrupt_after(monkeypatch, task, 24)  # 48 of 13 x 5 tiles
    with pytest.raises(SceneInterrupted, match="--resume"):
        predict_scene(task, scene, tmp_path / "out", options=SceneOptions(**opts))
    state = tmp_path / "out" / "scene.state.json"
    assert state.is_file()
    partial = tmp_path / "out" / ref.paths[kind].name
    if kind == "objects":
        assert len(_features(partial)) < len(_features(ref.paths[kind]))  # valid JSON, partial
    else:
        with rasterio.open(partial) as ds:
            part = ds.read(1)
        assert (part[:256] != 255).any() and (part[-64:] == 255).all()  # rows done so far, no-data below
    monkeypatch.undo()
    resumed = predict_scene(oracle(tmp_path, name), scene, tmp_path / "out", options=SceneOptions(**opts, resume=True))
    assert 0 < resumed.tiles < ref.tiles and not state.exists()
    if kind == "objects":
        got = sorted(f["properties"]["pixel_rbox"] for f in _features(partial))
        assert got == sorted(f["properties"]["pixel_rbox"] for f in _features(ref.paths[kind]))
    else:
        with rasterio.open(partial) as a, rasterio.open(ref.paths[kind]) as b:
            assert np.array_equal(a.read(1), b.read(1))


def test_resume_refuses_other_settings(tmp_path, scene, monkeypatch):
    task = oracle(tmp_path, "OracleRotatedDetection")
    _interrupt_after(monkeypatch, task, 3)
    with pytest.raises(SceneInterrupted):
        predict_scene(task, scene, tmp_path / "out", options=SceneOptions(**OPTIONS))
    monkeypatch.undo()
    with pytest.raises(SceneInputError, match=r"settings.overlap differ"):
        predict_scene(oracle(tmp_path, "OracleRotatedDetection"), scene, tmp_path / "out",
                      options=SceneOptions(**dict(OPTIONS, overlap=8), resume=True))  # fmt: skip


def test_uint16_bands_and_scaling(tmp_path):
    scene = write_scene(tmp_path / "s2.tif", dtype="uint16", count=4)  # values x10: range:0,2550 gives them back
    task = oracle(tmp_path, "OracleSegmentation")
    result = predict_scene(task, scene, tmp_path / "out", options=SceneOptions(**OPTIONS, bands="3,2,1",
                                                                               scale="range:0,2550"))  # fmt: skip
    with rasterio.open(result.paths["classes"]) as out:
        classes = out.read(1)
        col, row = ~out.transform @ OBJECTS[1].crs_centre()
    assert classes[int(row), int(col)] == 1
    torch.manual_seed(0)


def test_uint16_auto_scaling_uses_scene_percentiles_without_nodata(tmp_path):
    scene = write_scene(tmp_path / "s2.tif", dtype="uint16", count=4)  # ground 600, objects 2500, no-data 0
    result = predict_scene(oracle(tmp_path, "OracleSegmentation"), scene, tmp_path / "out",
                           options=SceneOptions(**OPTIONS, bands="3,2,1"))  # fmt: skip
    with rasterio.open(result.paths["classes"]) as out:
        classes = out.read(1)
    for obj in OBJECTS:
        col, row = ~out.transform @ obj.crs_centre()
        assert classes[int(row), int(col)] == 1
    assert classes[200, 20] == 0 and classes[0, 0] == 255
