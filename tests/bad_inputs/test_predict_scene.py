"""Bad inputs to ``mtp predict-scene`` (docs/RELIABILITY.md, "Scene mapping"): each gives a clear error naming the
file and the problem, exit code 2 and no traceback; a scene without a CRS is mapped in pixel coordinates with a
warning. Two cases run as real processes; the others call the same entry point in-process (faster, same output)."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
import rasterio
import torch
from affine import Affine

from mtp.cli import main
from tests.bad_inputs.conftest import assert_clear_error, run_mtp
from tests.inference.scene.conftest import oracle_config
from tests.inference.scene.scenes import TRANSFORM, write_scene


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_in_process(capsys, *args) -> subprocess.CompletedProcess:
    for handler in list(logging.getLogger("mtp").handlers):  # main() adds one on the stderr of this test
        logging.getLogger("mtp").removeHandler(handler)
    code = main(["predict-scene", *map(str, args)])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


@pytest.fixture
def seg_config(tmp_path: Path) -> Path:
    return oracle_config(tmp_path / "seg.yaml", "OracleSegmentation")


def test_unreadable_raster_as_a_user_runs_it(tmp_path, seg_config):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00 this is not a tiff")
    result = run_mtp("predict-scene", "--config", seg_config, "--input", bad, "--out", tmp_path / "o",
                     env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    assert_clear_error(result, str(bad), "cannot read the raster")
    assert result.returncode == 2


def test_mismatched_change_pair_as_a_user_runs_it(tmp_path):
    a = write_scene(tmp_path / "a.tif")
    b = write_scene(tmp_path / "b.tif", crs="EPSG:32632")
    config = oracle_config(tmp_path / "cd.yaml", "OracleChange")
    result = run_mtp("predict-scene", "--config", config, "--input", a, "--input-b", b, "--out", tmp_path / "o",
                     "--tile", "64", env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    assert_clear_error(result, str(a), str(b), "not in the same CRS", "gdalwarp")


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("missing_input", ["missing.tif", "file not found"]),
        ("bands_out_of_range", ["scene.tif", "band(s) [4] out of range", "3 band(s)"]),
        ("smaller_than_tile", ["scene.tif", "smaller than one tile", "--tile"]),
        ("no_overlap", ["scene.tif", "far.tif", "do not overlap"]),
        ("change_without_second_date", ["scene.tif", "--input-b"]),
        ("second_date_for_segmentation", ["scene.tif", "only for change detection"]),
        ("bad_scale", ["--scale", "gamma"]),
        ("config_not_found", ["nope.yaml", "config file not found"]),
        ("bad_model_option", ["seg.yaml", "cannot build the model", "Option 'no_such_option' is not accepted"]),
        ("checkpoint_of_another_model", ["other.ckpt", "does not fit the model"]),
    ],
)
def test_clear_errors(tmp_path, capsys, seg_config, case, fragments):
    scene = write_scene(tmp_path / "scene.tif")
    args = ["--config", seg_config, "--input", scene, "--out", tmp_path / "o", "--tile", "64"]
    if case == "missing_input":
        args[3] = tmp_path / "missing.tif"
    elif case == "bands_out_of_range":
        args += ["--bands", "1,2,4"]
    elif case == "smaller_than_tile":
        args[-1] = "512"
    elif case == "no_overlap":
        far = write_scene(tmp_path / "far.tif", transform=TRANSFORM @ Affine.translation(10000, 0))
        args = ["--config", oracle_config(tmp_path / "cd.yaml", "OracleChange"), "--input", scene, "--input-b", far,
                "--out", tmp_path / "o", "--tile", "64"]  # fmt: skip
    elif case == "change_without_second_date":
        args[1] = oracle_config(tmp_path / "cd.yaml", "OracleChange")
    elif case == "second_date_for_segmentation":
        args += ["--input-b", scene]
    elif case == "bad_scale":
        args += ["--scale", "gamma"]
    elif case == "config_not_found":
        args[1] = tmp_path / "nope.yaml"
    elif case == "bad_model_option":
        args += ["--model.no_such_option", "3"]
    elif case == "checkpoint_of_another_model":
        torch.save({"state_dict": {"anchor": torch.zeros(3)}}, tmp_path / "other.ckpt")
        args += ["--ckpt_path", tmp_path / "other.ckpt"]
    result = run_in_process(capsys, *args)
    assert_clear_error(result, *fragments)
    assert result.returncode == 2


def test_scene_without_crs_is_mapped_in_pixel_coordinates(tmp_path, capsys):
    scene = tmp_path / "plain.tif"
    write_scene(scene, crs=None, transform=Affine.identity())
    config = oracle_config(tmp_path / "rot.yaml", "OracleRotatedDetection")
    result = run_in_process(capsys, "--config", config, "--input", scene, "--out", tmp_path / "o", "--tile", "64",
                            "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "has no CRS" in result.stderr and "pixel coordinates" in result.stderr
    data = json.loads((tmp_path / "o" / "plain_objects.geojson").read_text())
    assert data["crs"] is None and len(data["features"]) == 3
    x, y = data["features"][0]["geometry"]["coordinates"][0][0]
    assert 0 <= x <= 256 and 0 <= y <= 224  # pixel corners, y down
    with rasterio.open(scene) as ds:
        assert ds.crs is None
