"""Writing segmentation outputs: colour maps, overlays, label PNGs, metrics tables and JSON.

Images are written atomically (temporary file + rename), so an interrupted run never leaves a
truncated PNG behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def default_palette(num_classes: int, seed: int = 3) -> list[tuple[int, int, int]]:
    """A fixed, distinguishable colour per class (used when a dataset defines none)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(num_classes, 3))
    return [tuple(int(v) for v in c) for c in colours]


def colorize(labels: np.ndarray | Tensor, palette: Sequence[Sequence[int]], ignore_index: int = 255) -> np.ndarray:
    """(H, W) integer labels -> (H, W, 3) uint8 RGB; ignored / unknown labels are black."""
    labels = labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    table[ignore_index] = 0
    return table[np.clip(labels, 0, 255).astype(np.uint8)]


def denormalize(image: Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """(3, H, W) normalised float image -> (H, W, 3) uint8 RGB."""
    m = torch.tensor(mean, device=image.device).view(3, 1, 1)
    s = torch.tensor(std, device=image.device).view(3, 1, 1)
    return (image.float() * s + m).clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend an (H, W, 3) uint8 image with a colour map of the same size."""
    return (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).round().astype(np.uint8)


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Write a uint8 (H, W) or (H, W, 3) array as PNG, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
    os.close(fd)
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(data: dict, path: str | Path) -> None:
    """Write JSON atomically (NaN is not valid JSON: callers pass None instead)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False))
    os.replace(tmp, path)
