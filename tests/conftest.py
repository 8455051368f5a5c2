"""Shared fixtures: the official golden outputs, deterministic torch settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
GOLDEN_FILE = REPO / "tests" / "data" / "golden" / "rvsa_official_seg288.pt"

# Several pytest-xdist workers share the 2 CI cores: one torch thread each.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(torch.get_num_threads(), 1))


@pytest.fixture(scope="session")
def golden() -> dict:
    """Official RVSA outputs (tests/data/README.md): entry ``seg_288``."""
    return torch.load(GOLDEN_FILE, map_location="cpu", weights_only=True)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _isolated_mtp_home(tmp_path_factory):
    """Catalogue names (mtp.weights) resolve under an empty session folder, never the user's ~/.cache/mtp
    (tests that need files set MTP_HOME themselves)."""
    saved = os.environ.get("MTP_HOME")
    os.environ["MTP_HOME"] = str(tmp_path_factory.mktemp("mtp_home"))
    yield
    if saved is None:
        os.environ.pop("MTP_HOME", None)
    else:
        os.environ["MTP_HOME"] = saved
