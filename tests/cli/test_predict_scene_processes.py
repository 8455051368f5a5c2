"""``mtp predict-scene`` as separate processes: Ctrl-C leaves valid partial outputs and ``--resume`` finishes them
identically; two processes (Lightning DDP on CPU, gloo) give the same outputs as one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio
import torch

from tests.bad_inputs.conftest import REPO, run_mtp
from tests.inference.scene.conftest import TINY_MODELS, oracle_config, write_config
from tests.inference.scene.scenes import OBJECTS, KnownObject, write_scene

ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _spawn(*args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", **ENV}
    return subprocess.Popen([sys.executable, "-m", "mtp.cli", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.mark.timeout(240)
def test_ctrl_c_leaves_valid_outputs_and_resume_completes(tmp_path):
    from mtp.inference.scene import SceneOptions, load_task, predict_scene

    scene = write_scene(tmp_path / "scene.tif", height=640)
    config = oracle_config(tmp_path / "slow.yaml", "OracleSegmentation", delay=0.1)
    args = ["predict-scene", "--config", config, "--input", scene, "--out", tmp_path / "out", "--tile", "64",
            "--overlap", "16", "--batch-size", "2", "--no-progress"]  # fmt: skip
    proc = _spawn(*args)
    state = tmp_path / "out" / "scene.state.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["handler"]["durable_rows"] >= 256:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and "Traceback" not in err
    with rasterio.open(tmp_path / "out" / "scene_classes.tif") as ds:
        partial = ds.read(1)
    assert (partial[:256] != 255).any() and (partial[-64:] == 255).all()
    result = run_mtp(*args[:-1], "--resume", env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["tiles"] < 13 * 5
    reference = predict_scene(load_task(config), scene, tmp_path / "ref", options=SceneOptions(tile=64, overlap=16,
                              progress=False))  # fmt: skip
    with rasterio.open(tmp_path / "out" / "scene_classes.tif") as a, rasterio.open(reference.paths["classes"]) as b:
        assert np.array_equal(a.read(1), b.read(1))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("family", ["segmentation", pytest.param("rotated_detection", marks=pytest.mark.slow)])
def test_two_processes_gloo_equal_one(tmp_path, family):
    # 8 tile rows: process 0 takes rows 0-3 (scene rows 0..208), process 1 rows 4-7 (from 192); the 4th object
    # lies across that border
    extra = (KnownObject(100.0, 200.0, 12.0, 8.0, 30.0), KnownObject(180.0, 300.0, 10.0, 6.0, 0.0))
    scene = write_scene(tmp_path / "scene.tif", height=400, objects=OBJECTS + extra)
    if family == "segmentation":
        config = write_config(tmp_path / "seg.yaml", TINY_MODELS["segmentation"])
        torch.manual_seed(0)
        from mtp.inference.scene import load_task

        ckpt = tmp_path / "seg.ckpt"
        torch.save({"state_dict": load_task(config).state_dict()}, ckpt)
        model = ["--config", config, "--ckpt_path", ckpt]
    else:
        model = ["--config", oracle_config(tmp_path / "oracle.yaml", "OracleRotatedDetection")]
    common = [*model, "--input", scene, "--tile", "64", "--overlap", "16", "--no-progress", "--device", "cpu"]
    one = run_mtp("predict-scene", *common, "--out", tmp_path / "one", env=ENV)
    two = run_mtp("predict-scene", *common, "--out", tmp_path / "two", "--devices", "2", "--accelerator", "cpu",
                  env=ENV)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads(two.stdout[two.stdout.index("{") :])["processes"] == 2
    assert not (tmp_path / "two" / ".parts").exists()
    if family == "segmentation":
        with rasterio.open(tmp_path / "one" / "scene_classes.tif") as a, rasterio.open(
                tmp_path / "two" / "scene_classes.tif") as b:  # fmt: skip
            assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
            assert np.array_equal(a.read(1), b.read(1))
            assert a.colormap(1) == b.colormap(1) and a.tags(1) == b.tags(1)
    else:
        def boxes(folder):
            features = json.loads((folder / "scene_objects.geojson").read_text())["features"]
            return sorted(f["properties"]["pixel_rbox"] for f in features)

        assert boxes(tmp_path / "one") == boxes(tmp_path / "two") and len(boxes(tmp_path / "one")) == 5
