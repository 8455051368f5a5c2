"""Errors raised while a dataset or a model is built are reported plainly and last: ``mtp fit: error: <config key>
(<class>): <message>``, exit code 2, no traceback, a few lines — not ~110 lines of jsonargparse Union errors ending
in ``Given value: Namespace(...)``. ``MTP_DEBUG=1`` brings the full traceback back.

Each case writes a valid dataset with the synthetic writers, breaks one file, and runs ``mtp fit`` in a fresh
process on the task family's tiny config. (Truncated / foreign checkpoints: test_checkpoints_loading.py.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mtp.data.synthetic import write_dior, write_dota, write_levir_cd, write_loveda
from tests.bad_inputs.conftest import assert_clear_error, run_mtp
from tests.bad_inputs.training_helpers import run_in_process, tiny_config

LOVEDA = "segmentation/tiny-loveda-cpu.yaml"


def _fit(tmp_path: Path, config: str, root: Path, *extra: str, env: dict | None = None):
    path = tiny_config(config, tmp_path / "config.yaml", root, tmp_path / "work")
    return run_mtp("fit", "--config", path, *extra, timeout=180, env=env)


def _loveda(tmp_path: Path) -> Path:
    root = tmp_path / "loveda"
    write_loveda(root, layout="release", n_train=4, n_val=2, n_test=1, size=64, seed=1)
    return root


def _fit_in_process(capsys, tmp_path: Path, config: str, root: Path, *extra: str) -> str:
    """The same CLI code in this process (no fresh interpreter): exit code 2, clear message, no traceback."""
    path = tiny_config(config, tmp_path / "config.yaml", root, tmp_path / "work")
    code, out = run_in_process(capsys, "fit", "--config", path, *extra)
    assert code == 2 and "Traceback" not in out and "Given value" not in out, out[-3000:]
    assert len(out.strip().splitlines()) <= 8, out
    return out


def test_missing_mask(tmp_path):
    root = _loveda(tmp_path)
    (root / "Train" / "Urban" / "masks_png" / "0.png").unlink()
    result = _fit(tmp_path, LOVEDA, root)
    out = assert_clear_error(result, "mtp fit: error: data.train (mtp.data.datasets.segmentation.LoveDA):", "0.png",
                             max_lines=8)  # fmt: skip
    assert result.returncode == 2 and "Given value" not in out
    assert out.rstrip().splitlines()[-1].startswith("(config: "), "the error must come last"


def test_empty_dataset_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = _fit_in_process(capsys, tmp_path, LOVEDA, tmp_path / "empty")
    assert "mtp fit: error: data.train (mtp.data.datasets.segmentation.LoveDA):" in out and "empty" in out


def test_wrong_layout(tmp_path, capsys):
    root = tmp_path / "loveda-mtp-layout"
    write_loveda(root, layout="mtp", n_train=2, n_val=1, n_test=1, size=64)
    out = _fit_in_process(capsys, tmp_path, LOVEDA, root)  # the config says layout: release
    assert "data.train (mtp.data.datasets.segmentation.LoveDA):" in out and str(root) in out


def test_dota_label_line_names_file_and_line(tmp_path):
    root = tmp_path / "dota"
    write_dota(root, n=2, size=128)
    label = sorted((root / "labelTxt").glob("*.txt"))[0]
    lines = label.read_text().splitlines()
    lines[-1] = "10 10 20 10 20 oops 10 20 plane 0"
    label.write_text("\n".join(lines) + "\n")
    result = _fit(tmp_path, "rotated_detection/tiny-dota-cpu.yaml", root)
    assert_clear_error(result, "data.train (mtp.data.datasets.rotated.DOTA):", f"{label.name}:{len(lines)}",
                       max_lines=8)  # fmt: skip


def test_dior_broken_xml(tmp_path):
    root = tmp_path / "dior"
    write_dior(root, n_train=2, n_val=1, n_test=1, size=128)
    xml = sorted(root.rglob("Horizontal Bounding Boxes/*.xml"))[0]
    xml.write_text(xml.read_text()[:40])
    result = _fit(tmp_path, "detection/tiny-dior-faster-rcnn-cpu.yaml", root)
    assert_clear_error(result, "(mtp.data.datasets.horizontal.DIOR):", xml.name, max_lines=8)


def test_levir_missing_b_folder(tmp_path):
    root = tmp_path / "levir"
    write_levir_cd(root, n_train=2, n_val=1, n_test=1, size=64)
    shutil.rmtree(root / "train" / "B")
    result = _fit(tmp_path, "change_detection/tiny-levir-cpu.yaml", root)
    assert_clear_error(result, "data.train (mtp.data.datasets.change_detection.LEVIRCD):", "B", max_lines=8)


def test_wrong_class_count_is_found_before_training(tmp_path, capsys):
    out = _fit_in_process(capsys, tmp_path, LOVEDA, _loveda(tmp_path), "--model.num_classes", "5")
    assert "mtp fit: error: the train dataset (LoveDA) has 7 classes, the model 5" in out


@pytest.mark.parametrize("switch", ["env", "flag"])
def test_debug_raises_the_original_exception(tmp_path, monkeypatch, switch):
    from mtp.cli import main

    root = _loveda(tmp_path)
    (root / "Train" / "Urban" / "masks_png" / "0.png").unlink()
    path = tiny_config(LOVEDA, tmp_path / "config.yaml", root, tmp_path / "work")
    monkeypatch.setenv("MTP_DEBUG", "1" if switch == "env" else "")
    with pytest.raises(ValueError, match="Does not validate against any of the Union subtypes"):  # jsonargparse's
        main(["fit", "--config", str(path), *(["--debug"] if switch == "flag" else [])])
