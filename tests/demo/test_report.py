"""The demo report: the terminal table (exact numbers for a known case), the self-contained HTML file and the SVG
line chart (valid XML, one polyline per series, round ticks that enclose the data)."""

from __future__ import annotations

import math
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtp.demo.report import _nice_ticks, format_table, svg_line_chart, write_report

ARMS = [("scratch", "from scratch", "#888888"), ("mtp", "MTP encoder", "#1f77b4")]


def _png(path: Path, value: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))
    return path.as_posix()


def _arm(name: str, label: str, color: str, values: list[float], *, with_curves: bool = True) -> dict:
    curves = [{"seed": s, "step": [100, 200, 300], "value": [0.3, 0.4, v]} for s, v in enumerate(values)]
    loss = [{"seed": s, "step": [10, 20, 30, 40], "value": [1.9, 1.5, 1.2, 1.0 + s / 10]} for s in range(len(values))]
    return {
        "name": name,
        "label": label,
        "color": color,
        "values": values,
        "curves": curves if with_curves else [],
        "loss": loss if with_curves else [],
    }


def _results(tmp_path: Path, *, title: str = "Semantic segmentation", with_curves: bool = True) -> dict:
    columns = ["image", "truth", "from scratch", "MTP encoder"]
    rows = []
    for i in range(2):
        rows.append(
            [
                Path(_png(tmp_path / "tiles" / f"{i}_{c}.png", 40 * j)).relative_to(tmp_path).as_posix()
                for j, c in enumerate(("image", "truth", "scratch", "mtp"))
            ]
        )
    arms = [
        _arm(*ARMS[0], [0.51, 0.50, 0.52], with_curves=with_curves),
        _arm(*ARMS[1], [0.537, 0.506, 0.537], with_curves=with_curves),
    ]
    gain = {
        "arm": "mtp",
        "per_seed": [0.027, 0.006, 0.017],
        "mean": 0.0167,
        "sd": 0.0105,
        "se": 0.0061,
        "sigmas": 2.74,
        "gated": True,
        "passed": True,
    }
    task = {
        "name": "segmentation",
        "title": title,
        "metric": "mIoU",
        "arms": arms,
        "gains": [gain],
        "grid": {"columns": columns, "rows": rows},
        "notes": ["First note.", "Second <note>."],
    }
    change = {
        "name": "change_detection",
        "title": "Change detection",
        "metric": "changed F1",
        "arms": [_arm(*ARMS[0], [0.4], with_curves=with_curves), _arm(*ARMS[1], [0.45], with_curves=with_curves)],
        "gains": [
            {
                "arm": "mtp",
                "per_seed": [0.05],
                "mean": 0.05,
                "sd": 0.0,
                "se": 0.0,
                "sigmas": math.inf,
                "gated": False,
                "passed": False,
            }
        ],
        "grid": {"columns": ["image A"], "rows": [[rows[0][0]]]},
        "notes": [],
    }
    return {
        "settings": {"summary": "Fine-tune <tiny> models & compare.", "seeds": [0, 1, 2], "other": 1},
        "pretraining": {"seconds": 161.25, "cached": True, "encoder": "pretrain/official/last_encoder.pth"},
        "tasks": [task, change],
        "verdict": {"passed": True, "reason": "segmentation: MTP encoder +0.017 mIoU = 2.7σ ≥ 2σ"},
    }


def test_table_has_mean_std_gain_and_verdict(tmp_path):
    table = format_table(_results(tmp_path))
    lines = table.splitlines()
    scratch = next(line for line in lines if line.startswith("segmentation") and "from scratch" in line)
    mtp = next(line for line in lines if line.startswith("segmentation") and "MTP encoder" in line)
    assert "mIoU" in scratch and "0.510 ± 0.010" in scratch  # stdev([.51, .50, .52]) = 0.01
    assert "0.527 ± 0.018" in mtp  # mean 0.52667, stdev 0.0179
    assert "+0.017 ± 0.006 (2.7σ)" in mtp and mtp.rstrip().endswith("PASS")
    assert "σ" not in scratch and "PASS" not in scratch
    change = next(line for line in lines if line.startswith("change_detection") and "MTP" in line)
    assert "0.450 ± 0.000" in change and "+0.050 ± 0.000 (+∞σ)" in change and change.endswith("info")
    assert lines[-1] == "verdict: PASS — segmentation: MTP encoder +0.017 mIoU = 2.7σ ≥ 2σ"
    # columns line up: every row places the metric at the same offset
    assert len({line.index("mIoU") for line in lines if line.startswith("segmentation")}) == 1


def test_failed_gate_and_failed_verdict(tmp_path):
    results = _results(tmp_path)
    results["tasks"][0]["gains"][0]["passed"] = False
    results["verdict"] = {"passed": False, "reason": "too small"}
    table = format_table(results)
    assert re.search(r"segmentation +MTP encoder .* FAIL$", table, re.MULTILINE)
    assert table.splitlines()[-1] == "verdict: FAIL — too small"
    page = write_report(results, tmp_path).read_text()
    assert 'class="banner fail"' in page and "verdict: FAIL — too small" in page


def test_html_is_self_contained_and_escaped(tmp_path):
    results = _results(tmp_path, title="Seg <b>& more")
    path = write_report(results, tmp_path / ".")
    assert path == tmp_path / "report.html" and path.is_file()
    page = path.read_text(encoding="utf-8")
    assert page.count("<svg") == 4  # 2 tasks × (held-out metric, training loss)
    assert page.count("data:image/png;base64,") == 2 * 4 + 1
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    assert "Seg &lt;b&gt;&amp; more" in page and "<b>&" not in page
    assert "Fine-tune &lt;tiny&gt; models &amp; compare." in page and "Second &lt;note&gt;." in page
    assert 'class="banner pass"' in page and "0.510 ± 0.010" in page and "+0.017 ± 0.006 (2.7σ)" in page
    assert "161.2 s" in page and "cached" in page and "pretrain/official/last_encoder.pth" in page
    assert page.index("banner pass") < page.index("<table") < page.index("<svg") < page.index("<footer")
    for svg in re.findall(r"<svg.*?</svg>", page, re.DOTALL):
        ET.fromstring(svg)


def test_missing_png_raises_naming_it(tmp_path):
    results = _results(tmp_path)
    results["tasks"][0]["grid"]["rows"][1][2] = "tiles/nope.png"
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "tiles" / "nope.png"))):
        write_report(results, tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_empty_curves_do_not_crash(tmp_path):
    results = _results(tmp_path, with_curves=False)
    del results["tasks"][1]["arms"][0]["loss"]
    page = write_report(results, tmp_path).read_text()
    assert "<svg" not in page and page.count("no curve was recorded") == 4


def test_svg_line_chart_is_xml_with_one_polyline_per_series():
    series = [
        {"label": "a & <b>", "color": "#1f77b4", "x": [0, 50, 100], "y": [0.1, 0.5, 0.62], "width": 1, "opacity": 0.3},
        {"label": "a & <b>", "color": "#1f77b4", "x": [0, 50, 100], "y": [0.2, 0.4, 0.6], "width": 2.5, "opacity": 1},
        {"label": "c", "color": "#888888", "x": [10, 90], "y": [0.3, float("nan")], "width": 2, "opacity": 1},
    ]
    root = ET.fromstring(svg_line_chart(series, title="t <x>", x_label="step", y_label="mIoU"))
    assert root.tag == "svg" and root.get("width") == "480" and root.get("height") == "300"
    polylines = root.findall("polyline")
    assert len(polylines) == len(series)
    assert [p.get("stroke-width") for p in polylines] == ["1", "2.5", "2"]
    assert len(polylines[2].get("points").split()) == 1  # the NaN point is dropped
    texts = [t.text for t in root.iter("text")]
    assert "t <x>" in texts and "step" in texts and "mIoU" in texts
    assert texts.count("a & <b>") == 1 and texts.count("c") == 1  # the legend lists each label once
    # every point lies inside the plot frame
    frame = next(r for r in root.findall("rect") if r.get("fill") == "none")
    x0, y0 = float(frame.get("x")), float(frame.get("y"))
    x1, y1 = x0 + float(frame.get("width")), y0 + float(frame.get("height"))
    for p in polylines:
        for pair in p.get("points").split():
            x, y = map(float, pair.split(","))
            assert x0 - 0.1 <= x <= x1 + 0.1 and y0 - 0.1 <= y <= y1 + 0.1


def test_svg_line_chart_without_points_raises():
    with pytest.raises(ValueError, match="no finite point"):
        svg_line_chart(
            [{"label": "a", "color": "#000", "x": [], "y": [], "width": 1, "opacity": 1}],
            title="t",
            x_label="x",
            y_label="y",
        )


@pytest.mark.parametrize("lo, hi", [(0.3, 0.55), (100, 300), (10, 3000), (0.0, 1.0), (-2.5, 7.1), (0.5, 0.5), (0, 0)])
def test_nice_ticks_known_ranges(lo, hi):
    ticks = _nice_ticks(lo, hi)
    assert 4 <= len(ticks) <= 6 and ticks[0] <= lo and ticks[-1] >= hi


def test_nice_ticks_random_ranges():
    rng = random.Random(0)
    for _ in range(2000):
        lo = rng.uniform(-1, 1) * 10 ** rng.uniform(-4, 5)
        hi = lo + 10 ** rng.uniform(-5, 5)
        ticks = _nice_ticks(lo, hi)
        steps = np.diff(ticks)
        assert 4 <= len(ticks) <= 6, (lo, hi, ticks)
        assert ticks[0] <= lo + 1e-9 * abs(lo) and ticks[-1] >= hi - 1e-9 * abs(hi), (lo, hi, ticks)
        assert np.allclose(steps, steps[0]), (lo, hi, ticks)
