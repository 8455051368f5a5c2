"""The demo's orchestration (data, pretraining cache, arms, verdict, exit code) with the heavy stages replaced by
fakes; the real protocol runs in test_protocol_slow.py."""

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

import mtp.demo.study as study
from mtp.cli import main as mtp_main
from mtp.demo.data import prepare_data
from mtp.demo.pretrain import PretrainingResult, pretrain, pretraining_config
from mtp.demo.settings import DemoSettings, small_settings


def _tiny(settings: DemoSettings) -> DemoSettings:
    seg, cd = settings.segmentation, settings.change_detection
    return replace(settings, pretrain_images=2, pretrain_size=64, jobs=1, grid_tiles=2,
                   segmentation=replace(seg, labelled=2, held_out=2, tile=64),
                   change_detection=replace(cd, labelled=2, held_out=2, tile=64))  # fmt: skip


def test_data_is_written_once_per_parameter_set_from_disjoint_seeds(tmp_path):
    settings = _tiny(small_settings())
    data = prepare_data(tmp_path, settings)
    assert len(list((data.loveda_train / "Train").rglob("images_png/*.png"))) == 2
    assert len(list((data.loveda_held_out / "Val").rglob("images_png/*.png"))) == 2
    assert len(list((data.levir_held_out / "test" / "A").glob("*.png"))) == 2
    assert {p.name for p in data.samrs.iterdir()} >= {"dior", "dotav2_1024_rbb", "fair1m_1024"}
    seeds = [json.loads((root / "params.json").read_text())["seed"] for root in
             (data.samrs, data.loveda_train, data.loveda_held_out, data.levir_train, data.levir_held_out)]  # fmt: skip
    assert len(set(seeds)) == len(seeds), "pretraining, labelled and held-out sets must come from different seeds"
    stamp = (data.loveda_train / "params.json").stat().st_mtime_ns
    prepare_data(tmp_path, settings)
    assert (data.loveda_train / "params.json").stat().st_mtime_ns == stamp  # re-used
    changed = replace(settings, segmentation=replace(settings.segmentation, labelled=4))
    prepare_data(tmp_path, changed)
    assert len(list((data.loveda_train / "Train").rglob("images_png/*.png"))) == 4  # rewritten


def _fake_fit(calls):
    def run(cmd, stdout, stderr, check):
        calls.append(cmd)
        config = Path(cmd[cmd.index("--config") + 1])
        official = config.parent / "official"
        official.mkdir(parents=True, exist_ok=True)
        for name in ("last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth", "last_vit_b_rvsa_ss_is_rd_pretrn_model.pth"):
            (official / name).write_bytes(b"weights")

        class Done:
            returncode = 0

        return Done()

    return run


def test_pretraining_runs_mtp_fit_once_and_is_reused_until_its_inputs_change(tmp_path, monkeypatch):
    settings = _tiny(small_settings())
    data = prepare_data(tmp_path, settings)
    calls = []
    monkeypatch.setattr("mtp.demo.pretrain.subprocess.run", _fake_fit(calls))
    first = pretrain(tmp_path, data.samrs, settings)
    assert not first.cached and calls[0][1:4] == ["-m", "mtp.cli", "fit"]
    assert (tmp_path / "pretrain" / "config.yaml").is_file()
    assert pretrain(tmp_path, data.samrs, settings).cached and len(calls) == 1
    assert not pretrain(tmp_path, data.samrs, replace(settings, pretrain_steps=7)).cached and len(calls) == 2
    assert not pretrain(tmp_path, data.samrs, replace(settings, pretrain_steps=7), fresh=True).cached
    assert len(calls) == 3


def test_a_failed_pretraining_names_its_log(tmp_path, monkeypatch):
    settings = _tiny(small_settings())
    data = prepare_data(tmp_path, settings)

    class Failed:
        returncode = 2

    monkeypatch.setattr("mtp.demo.pretrain.subprocess.run", lambda *a, **k: Failed())
    with pytest.raises(RuntimeError, match=r"fit\.log"):
        pretrain(tmp_path, data.samrs, settings)


def test_the_pretraining_config_is_the_three_task_recipe(tmp_path):
    config = pretraining_config(tmp_path, tmp_path / "samrs", small_settings())
    init = config["model"]["init_args"]
    assert init["tasks"] == ["ss", "is", "rd"] and init["datasets"] == ["sota", "sior", "fast"]
    assert config["trainer"]["max_steps"] == small_settings().pretrain_steps


def _fake_run_arm(gain):
    def run(job):
        base = {"scratch": 0.5, "mtp": 0.5 + gain, "mtp_decoder": 0.5}[job.arm] + 0.01 * job.seed
        if job.tiles is not None:
            for row in range(job.grid_tiles):
                names = [job.arm] + (["image", "image_a", "image_b", "truth"] if job.arm == "scratch" else [])
                for name in names:
                    job.tiles.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(job.tiles / f"{row}_{name}.png"), np.zeros((4, 4, 3), np.uint8))
        return {"task": job.task.name, "arm": job.arm, "seed": job.seed, "value": base + 0.001 * (job.seed % 2),
                "curve": {"step": [1, 2], "value": [0.1, base]}, "loss": {"step": [1, 2], "value": [1.0, 0.5]},
                "steps": 2, "seconds": 0.1}  # fmt: skip

    return run


def _not_strict_json(constant):
    raise AssertionError(f"results.json holds {constant}, which strict JSON readers reject")


@pytest.mark.parametrize(("gain", "code"), [(0.05, 0), (0.0, 1)])
def test_mtp_demo_exits_by_the_verdict_and_writes_the_report(tmp_path, monkeypatch, capsys, gain, code):
    monkeypatch.setattr("mtp.demo.settings.small_settings", lambda: _tiny(small_settings()))
    monkeypatch.setattr(study, "pretrain", lambda out, samrs, settings, fresh: PretrainingResult(
        out / "enc.pth", out / "whole.pth", 1.0, cached=False))  # fmt: skip
    monkeypatch.setattr("mtp.models.pretraining.reuse.reuse_decoder", lambda path, task: {})
    monkeypatch.setattr(study, "run_arm", _fake_run_arm(gain))
    out = tmp_path / "demo"
    assert mtp_main(["demo", "--size", "small", "--out", str(out), "--jobs", "1"]) == code
    printed = capsys.readouterr()
    results = json.loads((out / "results.json").read_text(), parse_constant=_not_strict_json)
    assert (out / "report.html").is_file() and str(out / "report.html") in printed.out
    segmentation = next(t for t in results["tasks"] if t["name"] == "segmentation")
    assert [a["name"] for a in segmentation["arms"]] == ["scratch", "mtp", "mtp_decoder"]
    mtp_gain = next(g for g in segmentation["gains"] if g["arm"] == "mtp")
    assert mtp_gain["mean"] == pytest.approx(gain) and mtp_gain["gated"]
    assert results["verdict"]["passed"] is (code == 0)
    assert "from scratch" in printed.out and "MTP encoder" in printed.out
    if code:
        assert "not 2σ above zero" in printed.err


def test_mtp_demo_rejects_a_single_seed(capsys):
    with pytest.raises(SystemExit) as stop:
        mtp_main(["demo", "--seeds", "3"])
    assert stop.value.code == 2 and "at least two different seeds" in capsys.readouterr().err


def test_results_json_replaces_non_finite_numbers_with_null():
    gains = {"sigmas": float("inf"), "se": float("nan"), "per_seed": [0.1, float("-inf")], "ok": (1.5, "x")}
    assert study.strict_json(gains) == {"sigmas": None, "se": None, "per_seed": [0.1, None], "ok": [1.5, "x"]}
    assert json.loads(json.dumps(study.strict_json(gains)), parse_constant=_not_strict_json)
