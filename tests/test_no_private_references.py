"""The product cites only what a user has: no paths outside the repository, no team-internal fact sheets.

Docstrings, comments and docs point to the official repository (ViTAE-Transformer/MTP paths), the paper
or this project's ``docs/*.md``. This test scans every text file a user receives and fails, listing each
offending ``file:line``, if one mentions a folder beside the checkout or one of the internal sheets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve()

SCANNED = ("src", "docs", "configs", "benchmarks", "tests", "README.md", "Makefile")
SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}

_SHEETS = r"(?:mtp-facts|rotated-facts|official-keys|internimage-facts)"
PATTERN = re.compile(
    r"\.\./shared"  # a folder beside the checkout
    r"|MTP_SHARED_DIR"
    rf"|{_SHEETS}\.md"  # the sheets by file name ...
    rf"|{_SHEETS}\s*§"  # ... and by their short citation form ("mtp-facts §3.1")
    r"|(?<![\w.-])anchors\.md"
)


def _text_files() -> Iterator[Path]:
    for name in SCANNED:
        top = REPO / name
        if top.is_file():
            yield top
            continue
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*")):
            rel_parts = path.relative_to(REPO).parts
            if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in rel_parts):
                continue
            if path.is_file() and path.resolve() != THIS_FILE:
                yield path


def _offences(path: Path) -> list[str]:
    data = path.read_bytes()
    if b"\0" in data:  # binary (tensors, images, archives)
        return []
    text = data.decode("utf-8", errors="replace")
    rel = path.relative_to(REPO)
    return [
        f"{rel}:{lineno}: {line.strip()}"
        for lineno, line in enumerate(text.splitlines(), start=1)
        if PATTERN.search(line)
    ]


def test_pattern_catches_every_form():
    caught = [
        "See ../shared/DESIGN.md",
        "os.environ['MTP_SHARED_DIR']",
        "Official recipe (mtp-facts.md §3.1, rotated-facts.md §2.10)",
        "reference/official-keys.md §4.6",
        "(mtp-facts §4.2)",
        "rotated-facts §2.6",
        "internimage-facts.md",
        "reference/anchors.md B4",
        "anchors.md",
    ]
    allowed = [
        "docs/CONVENTIONS.md#rotated-boxes",
        "Multi-Task_Pretrain/main_pretrain.py",
        "tests/data/official_keys/vit_b_rvsa_512_keys.txt",
        "mmdet AnchorGenerator anchors",
        "the reference implementation",
    ]
    assert all(PATTERN.search(s) for s in caught), [s for s in caught if not PATTERN.search(s)]
    assert not any(PATTERN.search(s) for s in allowed), [s for s in allowed if PATTERN.search(s)]


def test_no_file_cites_private_references():
    files = list(_text_files())
    assert any(p.suffix == ".py" for p in files) and (REPO / "README.md") in files
    offences = [line for path in files for line in _offences(path)]
    assert not offences, "files cite paths users do not have:\n" + "\n".join(offences)
