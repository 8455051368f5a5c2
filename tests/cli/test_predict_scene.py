"""``mtp predict-scene`` through the command line for all five task families on synthetic GeoTIFF scenes with a
CRS (written by ``mtp tool make-synthetic --format scene``): outputs re-opened with rasterio and as GeoJSON; a
known object found at its scene coordinates. Ctrl-C / ``--resume`` and two processes: test_predict_scene_processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from mtp.cli import main
from tests.inference.scene.conftest import oracle_config, tiny_task_checkpoint
from tests.inference.scene.scenes import OBJECTS, PIXEL, write_scene


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    assert main(["tool", "make-synthetic", "--format", "scene", "--out", str(root), "--size", "320"]) == 0
    assert main(["tool", "make-synthetic", "--format", "scene", "--out", str(root / "pair"), "--size", "320",
                 "--pair"]) == 0  # fmt: skip
    return root


def _run(capsys, *args) -> dict:
    code = main(["predict-scene", *map(str, args), "--tile", "64", "--overlap", "16", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    return json.loads(out.out[out.out.index("{") :])


def _geojson(path: str) -> list[dict]:
    data = json.loads(Path(path).read_text())
    assert data["type"] == "FeatureCollection"
    assert data["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    return data["features"]


@pytest.mark.parametrize("family", ["segmentation", "change_detection", "rotated_detection", "detection",
                                    "classification"])  # fmt: skip
def test_every_family_writes_georeferenced_outputs(tmp_path, scenes, family, capsys):
    config, ckpt = tiny_task_checkpoint(tmp_path, family)
    scene = scenes / "scene_0.tif"
    inputs = ["--input", scene]
    if family == "change_detection":
        scene = scenes / "pair" / "scene_0_a.tif"
        inputs = ["--input", scene, "--input-b", scenes / "pair" / "scene_0_b.tif"]
    summary = _run(capsys, "--config", config, "--ckpt_path", ckpt, *inputs, "--out", tmp_path / "out")
    assert summary["family"] == family
    outputs = {k: Path(v) for k, v in summary["outputs"].items()}
    with rasterio.open(scene) as src:
        crs, transform, shape, valid = src.crs, src.transform, src.shape, src.dataset_mask() > 0
    assert crs == "EPSG:32633" and (~valid).any()
    if family in ("segmentation", "change_detection"):
        with rasterio.open(outputs["classes" if family == "segmentation" else "change"]) as out:
            assert (out.crs, out.transform, out.shape, out.nodata) == (crs, transform, shape, 255)
            values, tags, colours = out.read(1), out.tags(1), out.colormap(1)
        assert (values[~valid] == 255).all() and (values[valid] != 255).all()
        if family == "segmentation":
            assert json.loads(tags["class_names"]) == ["ground", "building", "road", "water"]
            assert colours[1][:3] == (255, 0, 0)  # the config's palette
        else:
            features = _geojson(outputs["change_geojson"])
            assert all(f["properties"]["area_m2"] == pytest.approx(f["properties"]["area_px"] * PIXEL**2)
                       for f in features)  # fmt: skip
    elif family == "classification":
        with rasterio.open(outputs["grid"]) as grid:
            assert grid.crs == crs and grid.transform == transform @ rasterio.Affine.scale(64)
            assert grid.shape == (5, 5)
        assert len(_geojson(outputs["grid_geojson"])) <= 25
    else:
        features = _geojson(outputs["objects"])
        assert features and all(f["properties"]["class"] in ("class_0", "class_1", "class_2") for f in features)
        for f in features:
            ring = np.array(f["geometry"]["coordinates"][0] if f["geometry"]["type"] == "Polygon"
                            else f["geometry"]["coordinates"][0][0])  # fmt: skip
            col, row = ~transform @ tuple(ring[:-1].mean(0))
            assert -20 <= col <= shape[1] + 20 and -20 <= row <= shape[0] + 20  # inside the scene, in the CRS
        if family == "rotated_detection":
            assert sorted(p.name for p in outputs["task1"].iterdir()) == [f"Task1_class_{i}.txt" for i in range(3)]
        else:
            coco = json.loads(outputs["coco"].read_text())
            assert len(coco["annotations"]) == len(features) and coco["images"][0]["width"] == shape[1]
            assert all(a["segmentation"] for a in coco["annotations"])  # Mask R-CNN: outlines of the masks
            assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in features)


def test_known_object_coordinates_through_the_command_line(tmp_path, capsys):
    scene = write_scene(tmp_path / "scene.tif")
    config = oracle_config(tmp_path / "oracle.yaml", "OracleRotatedDetection", class_names=["background", "plane"])
    summary = _run(capsys, "--config", config, "--input", scene, "--out", tmp_path / "out")
    features = _geojson(summary["outputs"]["objects"])
    assert len(features) == 3 and {f["properties"]["class"] for f in features} == {"plane"}
    centres = sorted(tuple(np.array(f["geometry"]["coordinates"][0][:-1]).mean(0)) for f in features)
    for (x, y), obj in zip(centres, sorted(OBJECTS, key=lambda o: o.cx), strict=True):
        ex, ey = obj.crs_centre()
        assert abs(x - ex) < PIXEL and abs(y - ey) < PIXEL
    lines = (Path(summary["outputs"]["task1"]) / "Task1_plane.txt").read_text().splitlines()
    assert len(lines) == 3 and all(line.startswith("scene 0.9000 ") for line in lines)


def test_official_style_load_from_equals_the_checkpoint(tmp_path, capsys):
    """``--model.load_from FILE`` (how official fine-tuned files are given) builds the same model as --ckpt_path."""
    scene = write_scene(tmp_path / "scene.tif")
    config, ckpt = tiny_task_checkpoint(tmp_path, "segmentation")
    a = _run(capsys, "--config", config, "--ckpt_path", ckpt, "--input", scene, "--out", tmp_path / "a")
    b = _run(capsys, "--config", config, "--model.load_from", ckpt, "--input", scene, "--out", tmp_path / "b")
    with rasterio.open(a["outputs"]["classes"]) as x, rasterio.open(b["outputs"]["classes"]) as y:
        assert np.array_equal(x.read(1), y.read(1))


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict-scene", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(flag in out for flag in ("--input-b", "--tile", "--overlap", "--bands", "--scale", "--resume",
                                        "--devices", "--precision", "_classes.tif", "_objects.geojson"))  # fmt: skip
