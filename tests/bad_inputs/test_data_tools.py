"""`mtp tool ...` data tools on bad command lines and bad inputs: numbers are checked when parsed, expected faults
end with one clear line, and `mtp tool check-data` refuses what it cannot read (docs/RELIABILITY.md, "Data")."""

from __future__ import annotations

import pytest

from mtp.cli import main
from tests.bad_inputs.conftest import assert_clear_error, run_mtp

SYNTH = ["make-synthetic", "--format", "dota", "--out", "{tmp}"]
BAD_NUMBERS = [
    ([*SYNTH, "--n", "-3"], "argument --n: must be an integer >= 1, got '-3'"),
    ([*SYNTH, "--size", "0"], "argument --size: must be an integer >= 16"),
    ([*SYNTH, "--seed", "-1"], "argument --seed: must be an integer >= 0"),
    ([*SYNTH, "--object-scale", "nan"], "argument --object-scale: must be a number > 0, got 'nan'"),
    (["spacenet-to-masks", "--src", "{tmp}", "--out", "{tmp}", "--val-fraction", "2"],
     "argument --val-fraction: must be a number in [0, 1], got '2'"),
    (["dota-split", "--images", "{tmp}", "--out", "{tmp}", "--workers", "-2"],
     "argument --workers: must be an integer >= 0"),
    (["dior-to-coco", "--root", "{tmp}", "--out", "{tmp}", "--first-category-id", "-1"],
     "argument --first-category-id: must be an integer >= 0"),
    (["xview-to-coco", "--geojson", "g", "--images", "{tmp}", "--out", "{tmp}", "--tile", "8"],
     "argument --tile: must be an integer >= 32, got '8'"),
    (["dota-eval", "--det", "{tmp}", "--ann", "{tmp}", "--iou", "0"],
     "argument --iou: must be a number in (0, 1], got '0'"),
    (["backbone-shapes", "--img-size", "0"], "argument --img-size: must be an integer >= 1, got '0'"),
    (["check-data", "--config", "{tmp}/c.yaml", "--workers", "x"],
     "argument --workers: must be an integer >= 0, got 'x'"),
]  # fmt: skip


def test_make_synthetic_negative_count_is_refused(tmp_path):
    result = run_mtp("tool", "make-synthetic", "--format", "dota", "--out", tmp_path, "--n", "-3")
    assert result.returncode == 2  # before: it wrote an empty dataset and exited 0
    assert_clear_error(result, "mtp tool make-synthetic: error: argument --n: must be an integer >= 1, got '-3'")
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize(("args", "message"), BAD_NUMBERS, ids=[f"{a[0]}{a[-2]}" for a, _ in BAD_NUMBERS])
def test_tool_numbers_are_checked_when_parsed(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["tool", *[a.format(tmp=tmp_path) for a in args]])  # the `mtp` entry point, in this process
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in ("images", "labelTxt"))


def test_tool_faults_end_with_one_clear_line(tmp_path):
    result = run_mtp("tool", "dota-split", "--images", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert result.returncode == 1
    assert_clear_error(result, f"mtp tool dota-split: error: image folder not found: {tmp_path / 'nowhere'}",
                       max_lines=1)  # fmt: skip


def test_check_data_refuses_configs_it_cannot_read(tmp_path, capsys):
    def check(name: str) -> str:
        assert main(["tool", "check-data", "--config", str(tmp_path / name)]) != 0
        return capsys.readouterr().err

    assert f"mtp tool check-data: error: {tmp_path / 'missing.yaml'}: config file not found" in check("missing.yaml")
    (tmp_path / "model_only.yaml").write_text("model:\n  class_path: x.Y\n")
    assert "model_only.yaml: no `data:` section with a class_path" in check("model_only.yaml")
    (tmp_path / "broken.yaml").write_text("data: [unclosed\n")
    assert "broken.yaml: cannot read the YAML config" in check("broken.yaml")
    (tmp_path / "typo.yaml").write_text("data:\n  class_path: mtp.data.datamodules.SegmentationDataModule\n"
                                        "  init_args: {check: quik}\n")  # fmt: skip
    assert main(["tool", "check-data", "--config", str(tmp_path / "typo.yaml")]) == 1
    out = capsys.readouterr().out
    assert "[data] cannot build mtp.data.datamodules.SegmentationDataModule" in out and "quik" in out
