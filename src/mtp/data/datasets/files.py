"""File helpers shared by the dataset readers: pairing images with label maps by stem, image reading (the raster
rule of :mod:`mtp.data.datasets.rasters`) and label-map reading (Pillow, values as stored).

Every error names the file or folder it is about.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from mtp.data.datasets.rasters import DEFAULT_RULE, RasterRule, raster_info, read_rgb_tensor

__all__ = [
    "DatasetProblemsError",
    "content_hint",
    "folder_hint",
    "image_size",
    "mask_header",
    "mask_values",
    "pair_files",
    "read_mask",
    "read_rgb",
]

log = logging.getLogger(__name__)


def read_rgb(path: Path, rule: RasterRule | None = None) -> torch.Tensor:
    """uint8 (3, H, W) RGB under the raster rule (:mod:`mtp.data.datasets.rasters`); ``ValueError`` naming the file
    for unreadable, truncated or refused images."""
    return read_rgb_tensor(path, rule or DEFAULT_RULE)


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the header only (any format of :mod:`mtp.data.datasets.rasters`)."""
    return raster_info(path).hw


MASK_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")


def mask_header(path: Path) -> tuple[int, int]:
    """(H, W) of a label map from its header; ``ValueError`` naming the file for an unreadable or multi-channel
    map (what :func:`read_mask` refuses, without decoding the pixels)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: mask file not found")
    try:
        with PILImage.open(path) as img:
            mode, (w, h) = img.mode, img.size
    except Exception as e:  # Pillow raises many types for broken files
        raise ValueError(f"{path}: cannot read mask: {str(e).strip() or type(e).__name__}") from e
    _check_mask_mode(mode, path)
    return h, w


def _check_mask_mode(mode: str, path: Path) -> None:
    if mode == "F":
        raise ValueError(f"{path}: a label map must hold integer class indices, got float pixels (PIL mode F)")
    if mode not in MASK_MODES:
        raise ValueError(f"{path}: a label map must be single-channel (L, P or I), got PIL mode {mode}; "
                         "colour-coded masks must be converted to class indices first")  # fmt: skip


def read_mask(path: Path) -> torch.Tensor:
    """int64 (H, W) label map as stored; ``ValueError`` naming the file for unreadable / multi-channel masks."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: mask file not found")
    if Path(path).stat().st_size == 0:
        raise ValueError(f"{path}: empty mask file (0 bytes)")
    try:
        with PILImage.open(path) as img:
            _check_mask_mode(img.mode, path)
            img.load()
            arr = np.asarray(img)
    except ValueError:
        raise
    except Exception as e:  # Pillow raises many types for broken files
        raise ValueError(f"{path}: cannot read mask: {str(e).strip() or type(e).__name__}") from e
    return torch.from_numpy(arr.astype(np.int64))


def folder_hint(missing: Path, shown: int = 8) -> str:
    """`` (<closest existing parent> has: a/, b/, ...)`` for a missing folder: what the user has instead."""
    parent = Path(missing).parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return ""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in parent.iterdir() if not p.name.startswith("."))
    listing = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "") if names else "nothing"
    return f" ({parent} has: {listing})"


def content_hint(folder: Path, shown: int = 5) -> str:
    """`` (it holds: a.jpg, b.jpg, ...)`` or `` (the folder is empty)`` for an image folder without matches."""
    names = sorted(p.name for p in Path(folder).iterdir() if not p.name.startswith("."))
    if not names:
        return " (the folder is empty)"
    return f" (it holds {len(names)} other entr{'y' if len(names) == 1 else 'ies'}: {', '.join(names[:shown])}" + (
        ", ...)" if len(names) > shown else ")"
    )


def pair_files(
    images_dir: Path, masks_dir: Path | None, img_suffix: str, mask_suffix: str
) -> list[tuple[Path, Path | None]]:
    """Sorted (image, mask) pairs matched by file stem; errors name the folder / the unmatched images."""
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {images_dir}{folder_hint(images_dir)}")
    images = sorted(p for p in images_dir.iterdir() if p.name.endswith(img_suffix) and p.is_file())
    if not images:
        raise ValueError(f"no '*{img_suffix}' images in {images_dir}{content_hint(images_dir)}")
    if masks_dir is None:
        return [(p, None) for p in images]
    if not masks_dir.is_dir():
        raise FileNotFoundError(f"mask folder not found: {masks_dir}{folder_hint(masks_dir)}")
    masks = {p.name[: -len(mask_suffix)]: p for p in masks_dir.iterdir() if p.name.endswith(mask_suffix)}
    if not masks:
        raise ValueError(f"no '*{mask_suffix}' masks in {masks_dir}{content_hint(masks_dir)}")
    stems = [p.name[: -len(img_suffix)] for p in images]
    missing = [p.name for p, s in zip(images, stems, strict=True) if s not in masks]
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) in {images_dir} have no '*{mask_suffix}' mask in {masks_dir}, "
            f"e.g. {', '.join(missing[:5])}"
        )
    if len(masks) > len(images):
        log.warning("%d mask(s) in %s have no image in %s", len(masks) - len(images), masks_dir, images_dir)
    return [(p, masks[s]) for p, s in zip(images, stems, strict=True)]


def mask_values(mask: torch.Tensor) -> torch.Tensor:
    """Sorted distinct values of an integer label map: a histogram (linear time) for values in 0..65535 — what
    masks hold — and ``torch.unique`` (a sort, ~20x slower on a 512² map) otherwise."""
    flat = mask.reshape(-1)
    if flat.numel() and int(flat.min()) >= 0 and int(flat.max()) < 65536:
        return torch.bincount(flat).nonzero().reshape(-1).to(mask.dtype)
    return torch.unique(flat)


class DatasetProblemsError(ValueError):
    """Several bad files found while building or scanning a dataset: ``problems`` lists one message per file
    (each names the file); the message shows the first ``shown`` of them and the total."""

    def __init__(self, what: str, problems: list[str], shown: int = 20) -> None:
        self.what, self.problems = what, list(problems)
        more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
        super().__init__(f"{what}: {len(problems)} problem(s):\n  " + "\n  ".join(problems[:shown]) + more)
