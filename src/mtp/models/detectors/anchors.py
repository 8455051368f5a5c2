"""Anchors with mmdet ``AnchorGenerator`` semantics (docs/RECIPES.md#oriented-r-cnn-model).

Differences from torchvision's ``AnchorGenerator`` that matter for official weights: base anchors
are not rounded, the anchor centre is the top-left corner of its feature cell (``center_offset``
0, no half-stride shift), and the order is locations (row-major, x fastest) then ratios then scales.
Boxes are xyxy in input-image pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


class AnchorGenerator:
    """Horizontal anchors per FPN level.

    Args:
        strides: level strides (pixels); base size = stride unless ``base_sizes`` is given.
        ratios: h / w ratios (0.5, 1, 2); scales: multipliers of the base size (8).
        center_offset: anchor centre offset within the cell, as a fraction of the base size.
    """

    def __init__(
        self,
        strides: Sequence[int] = (4, 8, 16, 32, 64),
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
        scales: Sequence[float] = (8.0,),
        base_sizes: Sequence[int] | None = None,
        center_offset: float = 0.0,
    ) -> None:
        self.strides = list(strides)
        self.ratios, self.scales = list(ratios), list(scales)
        self.base_sizes = list(base_sizes) if base_sizes is not None else list(strides)
        self.center_offset = center_offset
        self.num_anchors = len(self.ratios) * len(self.scales)

    def base_anchors(self, level: int) -> Tensor:
        """(A, 4) anchors of one cell centred on the cell origin; ratios major, scales minor."""
        base = float(self.base_sizes[level])
        rows = []
        for ratio in self.ratios:
            h_ratio = math.sqrt(ratio)
            w_ratio = 1.0 / h_ratio
            for scale in self.scales:
                w, h = base * w_ratio * scale, base * h_ratio * scale
                cx = cy = self.center_offset * base
                rows.append([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h])
        return torch.tensor(rows, dtype=torch.float32)

    def grid_anchors(self, featmap_sizes: Sequence[tuple[int, int]], device: torch.device) -> list[Tensor]:
        """Per level (H_l * W_l * A, 4) anchors for feature maps of the given (H_l, W_l)."""
        anchors = []
        for level, (h, w) in enumerate(featmap_sizes):
            stride = self.strides[level]
            xs = torch.arange(w, device=device, dtype=torch.float32) * stride
            ys = torch.arange(h, device=device, dtype=torch.float32) * stride
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
            anchors.append((shifts + self.base_anchors(level).to(device)[None]).reshape(-1, 4))
        return anchors

    def valid_flags(
        self, featmap_sizes: Sequence[tuple[int, int]], img_hw: tuple[int, int], device: torch.device
    ) -> list[Tensor]:
        """Per level (H_l * W_l * A,) bool: the anchor's cell lies in ceil(img / stride) (mmdet rule)."""
        flags = []
        for level, (h, w) in enumerate(featmap_sizes):
            stride = self.strides[level]
            valid_h, valid_w = min(math.ceil(img_hw[0] / stride), h), min(math.ceil(img_hw[1] / stride), w)
            ok_y = torch.arange(h, device=device) < valid_h
            ok_x = torch.arange(w, device=device) < valid_w
            cell = (ok_y[:, None] & ok_x[None, :]).reshape(-1, 1)
            flags.append(cell.expand(-1, self.num_anchors).reshape(-1))
        return flags


def inside_image(anchors: Tensor, img_hw: tuple[int, int], allowed_border: float = 0.0) -> Tensor:
    """(N,) bool: x1 >= -b, y1 >= -b, x2 < W + b, y2 < H + b (mmdet ``anchor_inside_flags``)."""
    h, w = img_hw
    b = allowed_border
    return (anchors[:, 0] >= -b) & (anchors[:, 1] >= -b) & (anchors[:, 2] < w + b) & (anchors[:, 3] < h + b)
