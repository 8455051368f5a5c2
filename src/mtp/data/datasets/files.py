"""File helpers shared by the dataset readers: pairing images with label maps by stem, and PIL readers.

Every error names the file or folder it is about.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

__all__ = ["image_size", "pair_files", "read_mask", "read_rgb"]

log = logging.getLogger(__name__)


def read_rgb(path: Path) -> torch.Tensor:
    """uint8 (3, H, W) RGB; ``ValueError`` naming the file for unreadable or truncated images."""
    try:
        with PILImage.open(path) as img:
            img.load()
            arr = np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the header only."""
    try:
        with PILImage.open(path) as img:
            return img.height, img.width
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from e


def read_mask(path: Path) -> torch.Tensor:
    """int64 (H, W) label map as stored; ``ValueError`` naming the file for unreadable / multi-channel masks."""
    try:
        with PILImage.open(path) as img:
            img.load()
            if img.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise ValueError(f"a label map must be single-channel (L, P or I), got PIL mode {img.mode}")
            arr = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read mask {path}: {e}") from e
    return torch.from_numpy(arr.astype(np.int64))


def pair_files(
    images_dir: Path, masks_dir: Path | None, img_suffix: str, mask_suffix: str
) -> list[tuple[Path, Path | None]]:
    """Sorted (image, mask) pairs matched by file stem; errors name the folder / the unmatched images."""
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {images_dir}")
    images = sorted(p for p in images_dir.iterdir() if p.name.endswith(img_suffix) and p.is_file())
    if not images:
        raise ValueError(f"no '*{img_suffix}' images in {images_dir}")
    if masks_dir is None:
        return [(p, None) for p in images]
    if not masks_dir.is_dir():
        raise FileNotFoundError(f"mask folder not found: {masks_dir}")
    masks = {p.name[: -len(mask_suffix)]: p for p in masks_dir.iterdir() if p.name.endswith(mask_suffix)}
    if not masks:
        raise ValueError(f"no '*{mask_suffix}' masks in {masks_dir}")
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
