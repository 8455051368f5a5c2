"""Helpers for the bad-input corpus: run the ``mtp`` command as a user does and judge what they see.

Every case asserts the user-visible outcome (docs/RELIABILITY.md lists them): a clear error that names the file /
line / key and the problem, a non-zero exit code and no Python traceback for an expected fault — or a documented
skip that is counted in the log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_mtp(*args: str | os.PathLike, cwd: str | os.PathLike | None = None, timeout: float = 240,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """Run ``python -m mtp.cli ARGS`` in a fresh process (the console script's code path); text output."""
    environment = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", **(env or {})}
    environment.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        [sys.executable, "-m", "mtp.cli", *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_clear_error(result: subprocess.CompletedProcess, *fragments: str, max_lines: int = 40) -> str:
    """The command failed (exit code != 0) with a message containing every fragment, without a Python traceback
    and without burying it (at most ``max_lines`` lines of stderr). Returns the combined output."""
    out = result.stdout + result.stderr
    assert result.returncode != 0, f"exit code 0; output:\n{out[-3000:]}"
    assert "Traceback (most recent call last)" not in out, f"traceback shown to the user:\n{out[-3000:]}"
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in the output:\n{out[-3000:]}"
    assert len(result.stderr.splitlines()) <= max_lines, f"error buried in {len(result.stderr.splitlines())} lines"
    return out


@pytest.fixture
def mtp_cli():
    """The :func:`run_mtp` runner as a fixture."""
    return run_mtp
