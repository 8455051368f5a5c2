"""Official checkpoint key lists stored under tests/data/official_keys (see tests/data/README.md)."""

from __future__ import annotations

import re
from pathlib import Path

KEYS_DIR = Path(__file__).parent / "data" / "official_keys"
_ROW = re.compile(r"^(\S+)\s+[\[(]([\d, ]*)[\])]")


def official_keys(name: str) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` in file order from ``tests/data/official_keys/<name>.txt``."""
    keys = {}
    for line in (KEYS_DIR / f"{name}.txt").read_text().splitlines():
        match = _ROW.match(line.strip())
        if match is None:
            raise ValueError(f"{name}.txt: cannot parse {line!r}")
        keys[match[1]] = tuple(int(x) for x in match[2].split(",") if x.strip())
    return keys
