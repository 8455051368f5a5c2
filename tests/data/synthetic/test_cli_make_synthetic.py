"""``mtp tool make-synthetic`` and the ``write_dataset`` registry."""

from __future__ import annotations

import pytest

from mtp.cli import main
from mtp.data.synthetic import FORMATS, write_dataset


def test_make_synthetic_tool(tmp_path, capsys):
    args = ["tool", "make-synthetic", "--format", "dota", "--out", str(tmp_path), "--n", "2", "--size", "96"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "dota: 2 images" in out and "labelTxt/: 2 files" in out
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["P0000.png", "P0001.png"]


def test_make_synthetic_tool_options(tmp_path, capsys):
    args = ["tool", "make-synthetic", "--format", "samrs", "--variant", "sior", "--out", str(tmp_path)]
    assert main([*args, "--n", "1", "--size", "64", "--seed", "3"]) == 0
    assert "samrs-sior" in capsys.readouterr().out
    assert (tmp_path / "dior" / "sior_train_ins_segmentation.json").is_file()


def test_write_dataset_every_format(tmp_path):
    for fmt in sorted(FORMATS):
        summary = write_dataset(fmt, tmp_path / fmt, n=1, size=48 if fmt == "eurosat" else 64)
        assert summary.num_images >= 1 and summary.files
        assert all((tmp_path / fmt / folder / name).is_file() for folder, ns in summary.files.items() for name in ns)
    with pytest.raises(ValueError):
        write_dataset("voc", tmp_path / "x")
