"""Every official twin config states its precision: fp32 (32-true) as the official runs, bf16-mixed documented as an
option in its header (docs/PERFORMANCE.md, "Precision", has the measurement)."""

from __future__ import annotations

import yaml

from tests.conftest import REPO

TWINS = sorted(p for p in (REPO / "configs").glob("*/*.yaml") if not p.name.startswith("tiny-"))


def test_every_twin_trains_in_fp32_and_says_why_in_its_header():
    assert len(TWINS) == 87  # 58 ViT+RVSA twins and 29 InternImage-XL twins
    for path in TWINS:
        text = path.read_text()
        assert yaml.safe_load(text)["trainer"]["precision"] == "32-true", path
        header = text.split("\nseed_everything")[0]
        assert "# Precision: 32-true (fp32), as the official run" in header and "bf16-mixed" in header, path
