"""Helpers of the data corpus (tests/bad_inputs/test_data_*.py): break files the way disks and people do, write
the `data:` section of a config, and run ``mtp tool check-data`` on it as a user does."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.bad_inputs.conftest import run_mtp


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to ``keep`` of its bytes (an interrupted copy)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def zero_bytes(path: Path) -> Path:
    """Empty a file (a full disk, a failed download)."""
    path.write_bytes(b"")
    return path


def not_an_image(path: Path) -> Path:
    """Replace a file with text (an HTML error page saved under the image's name)."""
    path.write_text("<html><body>404 Not Found</body></html>\n")
    return path


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """A config with only the `data:` section (all check-data reads) plus a model line, like a real one."""
    config = {"seed_everything": 0, "trainer": {"max_steps": 1}, "data": data}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def spec(class_path: str, **init_args: Any) -> dict[str, Any]:
    """A ``class_path`` / ``init_args`` entry with paths turned into strings."""
    args = {k: str(v) if isinstance(v, Path) else v for k, v in init_args.items()}
    return {"class_path": class_path, "init_args": args}


def check_data(config: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``mtp tool check-data --config CONFIG ARGS`` in a fresh process."""
    return run_mtp("tool", "check-data", "--config", config, *args, cwd=cwd)


def write_tif(path: Path, bands: np.ndarray, nodata: float | None = None) -> Path:
    """A (C, H, W) array as a plain GeoTIFF of its dtype (rasterio)."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path.parent.mkdir(parents=True, exist_ok=True)
    c, h, w = bands.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=c, dtype=bands.dtype.name,
                           nodata=nodata) as dst:  # fmt: skip
            dst.write(bands)
    return path
