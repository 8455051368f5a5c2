"""Draw rotated boxes on an image (visual checks, ``--show-dir`` style outputs).

Colours are deterministic per class: ``palette[label]`` when a palette is given, otherwise a fixed
golden-ratio hue sequence (class k gets hue frac(k * 0.618...), saturation 0.85, value 0.95), so the same class
has the same colour in every image and run. Colours are in the image's channel order (RGB images -> RGB
colours); the input image is never modified.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

from mtp.ops.rotated.boxes import rbox2poly

__all__ = ["class_color", "draw_rboxes"]

_GOLDEN = 0.6180339887498949


def class_color(label: int, palette: Sequence[Sequence[int]] | None = None) -> tuple[int, int, int]:
    """Colour (3 ints in 0..255) of class ``label``: ``palette[label]`` or the golden-ratio hue sequence."""
    if palette is not None:
        r, g, b = palette[label % len(palette)]
        return int(r), int(g), int(b)
    r, g, b = colorsys.hsv_to_rgb((label * _GOLDEN) % 1.0, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def draw_rboxes(
    image: np.ndarray,
    rboxes: Any,
    labels: Any = None,
    scores: Any = None,
    class_names: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    thickness: int = 2,
    font_scale: float = 0.4,
) -> np.ndarray:
    """Draw (N, 5) rboxes (cx, cy, w, h, theta radians) as closed polygons with "name score" captions.

    Args:
        image: uint8 (H, W, 3) image (not modified).
        rboxes: (N, 5) array or tensor; labels: (N,) class indices (None: all class 0, no caption unless
            scores are given); scores: (N,) optional, printed with 2 decimals.
        class_names: caption names per class index (default: the index).
        palette: per-class colours (default: :func:`class_color`).
        thickness: line thickness in pixels.

    Returns:
        A new uint8 (H, W, 3) image.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
    out = np.ascontiguousarray(img).copy()
    boxes = torch.as_tensor(_np(rboxes), dtype=torch.float64).reshape(-1, 5)
    n = len(boxes)
    labs = np.zeros(n, np.int64) if labels is None else _np(labels).reshape(-1).astype(np.int64)
    scs = None if scores is None else _np(scores).reshape(-1).astype(np.float64)
    if len(labs) != n or (scs is not None and len(scs) != n):
        raise ValueError("rboxes, labels and scores must have the same length")
    polys = np.round(rbox2poly(boxes).numpy().reshape(-1, 4, 2)).astype(np.int32)
    for k in range(n):
        color = class_color(int(labs[k]), palette)
        cv2.polylines(out, [polys[k]], isClosed=True, color=color, thickness=thickness, lineType=cv2.LINE_AA)
        parts = []
        if labels is not None:
            parts.append(class_names[labs[k]] if class_names is not None else str(labs[k]))
        if scs is not None:
            parts.append(f"{scs[k]:.2f}")
        if not parts:
            continue
        text = " ".join(parts)
        top = polys[k][np.argmin(polys[k][:, 1])]  # caption at the top-most corner
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        x, y = int(top[0]), max(int(top[1]), th + base)
        cv2.rectangle(out, (x, y - th - base), (x + tw, y), color, thickness=-1)
        cv2.putText(out, text, (x, y - base), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
