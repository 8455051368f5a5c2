"""Shared fixtures: the official golden outputs, deterministic torch settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MTP_SHARED_DIR", REPO.parent / "shared"))
GOLDEN_FILE = SHARED / "reference" / "golden" / "rvsa_official_small.pt"
REFERENCE_DIR = SHARED / "reference"

# Several pytest-xdist workers share the 2 CI cores: one torch thread each.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(torch.get_num_threads(), 1))


@pytest.fixture(scope="session")
def golden() -> dict:
    """Official RVSA outputs (../shared/reference/golden): entries seg_224, seg_288, det_branches_*."""
    if not GOLDEN_FILE.is_file():
        pytest.fail(f"golden file missing: {GOLDEN_FILE} (set MTP_SHARED_DIR to the shared/ folder)")
    return torch.load(GOLDEN_FILE, map_location="cpu", weights_only=True)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
