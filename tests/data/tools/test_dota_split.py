"""DOTA splitter (mmrotate rules, docs/EVALUATION.md#dota-splitting): window starts, kept windows, iof rule,
difficult 2, translated polygons, patch names and padding, presets, CLI, and reading the output back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mtp.cli import main
from mtp.data.datasets.rotated import DOTA
from mtp.data.synthetic import write_dota
from mtp.data.tools.dota_split import (
    PRESETS,
    make_windows,
    parse_patch_id,
    patch_id,
    scales,
    split_dota,
    window_iof,
    window_starts,
)


@pytest.mark.parametrize(
    ("length", "size", "gap", "starts"),
    [
        (2000, 1024, 200, [0, 824, 976]),  # 3rd start 1648 overruns -> 2000 - 1024
        (4000, 1024, 200, [0, 824, 1648, 2472, 2976]),
        (1848, 1024, 200, [0, 824]),  # fits exactly, no shift
        (1024, 1024, 200, [0]),
        (500, 1024, 200, [0]),
        (1100, 1024, 200, [0, 76]),
        (700, 682, 333, [0, 18]),
        (300, 128, 28, [0, 100, 172]),
    ],
)
def test_window_starts(length, size, gap, starts):
    assert window_starts(length, size, gap) == starts


def test_presets_and_scales():
    assert PRESETS["ss"] == {"sizes": (1024,), "gaps": (200,), "rates": (1.0,)}
    assert scales(**PRESETS["ss"]) == [(1024, 200)]
    assert scales(**PRESETS["ms"]) == [(2048, 1000), (1024, 500), (682, 333)]
    with pytest.raises(ValueError, match="gap"):
        window_starts(100, 50, 50)


def test_kept_window_rule():
    # all windows inside the image
    win = make_windows(1100, 1100)
    assert sorted(map(tuple, win[:, :2].tolist())) == [(0, 0), (0, 76), (76, 0), (76, 76)]
    # 1024 x 700 inside: 0.68 > 0.6, kept
    assert len(make_windows(700, 2000)) == 3
    # 500 rows: every ratio is 0.49 -> none passes, all within 0.01 of the best are kept
    assert len(make_windows(500, 2000)) == 3
    # multi-scale 700 x 700: only the 682 windows are fully inside (ratios 0.12 / 0.47 / 1.0)
    win = make_windows(700, 700, **PRESETS["ms"])
    assert (win[:, 2] - win[:, 0] == 682).all() and len(win) == 4
    # multi-scale 300 x 300: nothing passes; the best ratio (the 682 window, 0.19) wins over 0.09 / 0.02
    win = make_windows(300, 300, **PRESETS["ms"])
    assert win.tolist() == [[0, 0, 682, 682]]


def test_iof():
    window = np.array([0, 0, 128, 128])
    polys = np.array(
        [
            [10, 10, 30, 10, 30, 30, 10, 30],  # inside
            [110, 10, 140, 10, 140, 30, 110, 30],  # 18 / 30 inside
            [200, 200, 210, 200, 210, 210, 200, 210],  # outside
            [118, 40, 138, 40, 138, 50, 118, 50],  # half inside
        ],
        float,
    )
    np.testing.assert_allclose(window_iof(polys, window), [1.0, 0.6, 0.0, 0.5])


def test_patch_names():
    assert patch_id("P0000", (824, 0, 1848, 1024)) == "P0000__1024__824___0"
    assert parse_patch_id("P0000__1024__824___0") == ("P0000", 824, 0)
    assert parse_patch_id("dir/P0003__682__18___349.png") == ("P0003", 18, 349)
    assert parse_patch_id("P0003__0.5__100___200.txt") == ("P0003", 100, 200)  # devkit names (rate)
    with pytest.raises(ValueError, match="not a split patch name"):
        parse_patch_id("P0000")


def _write_image(path, h, w, seed=0) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def _read_ann(path) -> list[str]:
    return [" ".join(line.split()) for line in path.read_text().splitlines()]


def test_split_objects_difficult_and_translation(tmp_path):
    image = _write_image(tmp_path / "src" / "images" / "img.png", 260, 300)
    (tmp_path / "src" / "labels").mkdir()
    (tmp_path / "src" / "labels" / "img.txt").write_text(
        "imagesource:GoogleEarth\ngsd:0.5\n"
        "10 10 30 10 30 30 10 30 plane 0\n"  # A: inside window (0, 0) only
        "110 10 140 10 140 30 110 30 ship 1\n"  # B: iof 0.6 in (0, 0), inside (100, 0)
        "120 40 130 40 130 50 120 50 small-vehicle\n"  # C: iof 0.8 in (0, 0) -> difficult 2, unclipped
    )
    out = tmp_path / "out"
    summary = split_dota(tmp_path / "src" / "images", tmp_path / "src" / "labels", out, sizes=(128,), gaps=(28,))
    names = sorted(p.stem for p in (out / "images").iterdir())
    want = sorted(f"img__128__{x}___{y}" for x in (0, 100, 172) for y in (0, 100, 132))
    assert names == want and sorted(p.stem for p in (out / "annfiles").iterdir()) == want
    assert summary["num_patches"] == 9 and summary["num_images"] == 1 and summary["num_objects"] == 3
    for name in want:
        _, x, y = parse_patch_id(name)
        patch = np.asarray(Image.open(out / "images" / f"{name}.png"))
        np.testing.assert_array_equal(patch, image[y : y + 128, x : x + 128])
    assert _read_ann(out / "annfiles" / "img__128__0___0.txt") == [
        "10 10 30 10 30 30 10 30 plane 0",
        "120 40 130 40 130 50 120 50 small-vehicle 2",
    ]
    assert _read_ann(out / "annfiles" / "img__128__100___0.txt") == [
        "10 10 40 10 40 30 10 30 ship 1",
        "20 40 30 40 30 50 20 50 small-vehicle 0",
    ]
    assert _read_ann(out / "annfiles" / "img__128__172___132.txt") == []
    assert summary["num_truncated"] == 1 and summary["num_patch_objects"] == 4
    # the reader takes the split layout back, patch ids parse back to the window
    ds = DOTA(out)
    assert len(ds) == 9 and ds.label_counts().sum() == 4
    assert {parse_patch_id(ds[i]["image_id"])[0] for i in range(len(ds))} == {"img"}


def test_small_images_are_padded_and_test_sets_have_no_annfiles(tmp_path):
    image = _write_image(tmp_path / "src" / "tiny.png", 90, 100)
    out = tmp_path / "out"
    summary = split_dota(tmp_path / "src", None, out, sizes=(128,), gaps=(28,))
    assert summary["num_patches"] == 1 and not (out / "annfiles").exists()
    patch = np.asarray(Image.open(out / "images" / "tiny__128__0___0.png"))
    assert patch.shape == (128, 128, 3)
    np.testing.assert_array_equal(patch[:90, :100], image)
    assert (patch[90:] == (124, 116, 104)).all() and (patch[:, 100:] == (124, 116, 104)).all()
    ds = DOTA(out, annotations=False)
    assert len(ds) == 1 and ds[0]["boxes"].shape == (0, 8)


def test_split_synthetic_dota_workers_and_cli(tmp_path, capsys):
    write_dota(tmp_path / "dota", seed=0, n=2, size=160)
    kwargs = {"sizes": (96,), "gaps": (32,), "rates": (1.0, 1.5)}
    a = split_dota(tmp_path / "dota" / "images", tmp_path / "dota" / "labelTxt", tmp_path / "a", **kwargs)
    b = split_dota(tmp_path / "dota" / "images", tmp_path / "dota" / "labelTxt", tmp_path / "b", workers=2, **kwargs)
    assert a["windows_and_gaps"] == [(96, 32), (64, 21)]
    assert {k: v for k, v in a.items() if k != "out_root"} == {k: v for k, v in b.items() if k != "out_root"}
    for p in (tmp_path / "a" / "annfiles").iterdir():
        assert p.read_text() == (tmp_path / "b" / "annfiles" / p.name).read_text()
    assert any("__64__" in p.name for p in (tmp_path / "a" / "images").iterdir())
    src = tmp_path / "dota"
    argv = ["--images", str(src / "images"), "--ann", str(src / "labelTxt"), "--out", str(tmp_path / "cli")]
    assert main(["tool", "dota-split", *argv, "--preset", "ss"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["num_patches"] == 2 and printed["windows_and_gaps"] == [[1024, 200]]
    assert sorted(p.name for p in (tmp_path / "cli" / "images").iterdir()) == [
        "P0000__1024__0___0.png",
        "P0001__1024__0___0.png",
    ]


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        split_dota(tmp_path / "none", None, tmp_path / "out")
    _write_image(tmp_path / "src" / "a.png", 20, 20)
    with pytest.raises(FileNotFoundError, match="annotation folder not found"):
        split_dota(tmp_path / "src", tmp_path / "labels", tmp_path / "out")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 2 3 4 5 6 7 plane 0\n")
    with pytest.raises(ValueError, match=r"a\.txt:1: expected 8 coordinates"):
        split_dota(tmp_path / "src", tmp_path / "labels", tmp_path / "out", sizes=(16,), gaps=(4,))
