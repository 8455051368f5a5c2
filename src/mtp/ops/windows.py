"""Window utilities for RVSA (rotated varied-size window attention).

Hand-written: no maintained library implements RVSA's window transform. Conventions follow the
official implementation (``Multi-Task_Pretrain/backbone/vit_win_rvsa_v3_wsz7.py``; docs/CONVENTIONS.md#vitrvsa):

* feature maps are padded symmetrically to a multiple of the window size (top = pad // 2,
  bottom = the rest; the same for left/right);
* coordinates are normalised to [-1, 1] over the *padded* map (``grid_sample`` with
  ``align_corners=True``), channel 0 = x (column), channel 1 = y (row);
* each window is scaled, rotated (x' = x cos t - y sin t, y' = x sin t + y cos t) around its
  centre and shifted by a per-window, per-head offset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def symmetric_window_padding(h: int, w: int, window: int) -> tuple[int, int, int, int]:
    """Padding (left, right, top, bottom) that makes (h, w) a multiple of ``window``."""
    pad_h = (window - h % window) % window
    pad_w = (window - w % window) % window
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2


def window_reference_and_offsets(
    padded_hw: tuple[int, int], window: int, device, dtype=torch.float32
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Window centres and in-window relative coordinates on the normalised padded grid.

    Returns:
        ref_x (1, 1, nw, 1), ref_y (nh, 1, 1, 1): centre of every window (mean of the
            linspace(-1, 1) coordinates it covers), broadcastable to (N, nh, ws, nw, ws);
        rel_x (1, 1, 1, 1, ws), rel_y (1, 1, ws, 1, 1): zero-mean in-window offsets, spaced by
            2 / (padded_len - 1) (one pixel), broadcastable to (B*heads, nh, ws, nw, ws).
    """
    hp, wp = padded_hw
    nh, nw = hp // window, wp // window
    lin_y = torch.linspace(-1, 1, hp, device=device, dtype=dtype)
    lin_x = torch.linspace(-1, 1, wp, device=device, dtype=dtype)
    ref_y = lin_y.reshape(nh, window).mean(-1).reshape(nh, 1, 1, 1)
    ref_x = lin_x.reshape(nw, window).mean(-1).reshape(1, 1, nw, 1)
    step_y = torch.arange(window, device=device, dtype=dtype) * 2 / (hp - 1)
    step_x = torch.arange(window, device=device, dtype=dtype) * 2 / (wp - 1)
    rel_y = (step_y - step_y.mean()).reshape(1, 1, window, 1, 1)
    rel_x = (step_x - step_x.mean()).reshape(1, 1, 1, 1, window)
    return ref_x, ref_y, rel_x, rel_y


def rvsa_sampling_grid(
    offsets: Tensor, scales: Tensor, angles: Tensor, padded_hw: tuple[int, int], window: int
) -> Tensor:
    """Sampling grid of the rotated, scaled and shifted windows.

    Args:
        offsets: (N, 2, nh, nw) window shifts in normalised units (x, y), already divided by
            the official window-count factors.
        scales: (N, 2, nh, nw) relative scale change (x, y); the window extent is multiplied by
            ``scale + 1``.
        angles: (N, 1, nh, nw) rotation in radians.
        padded_hw: (Hp, Wp) of the padded map, multiples of ``window``.

    Returns:
        (N, Hp, Wp, 2) grid in ``grid_sample`` convention ((x, y) in [-1, 1], align_corners=True),
        laid out so that window (i, j) covers rows i*ws:(i+1)*ws and columns j*ws:(j+1)*ws.
    """
    n = offsets.shape[0]
    hp, wp = padded_hw
    ref_x, ref_y, rel_x, rel_y = window_reference_and_offsets(padded_hw, window, offsets.device, offsets.dtype)

    def per_window(t: Tensor) -> Tensor:  # (N, nh, nw) -> (N, nh, 1, nw, 1)
        return t[:, :, None, :, None]

    x = rel_x * (per_window(scales[:, 0]) + 1)
    y = rel_y * (per_window(scales[:, 1]) + 1)
    cos, sin = per_window(torch.cos(angles[:, 0])), per_window(torch.sin(angles[:, 0]))
    grid_x = ref_x + x * cos - y * sin + per_window(offsets[:, 0])
    grid_y = ref_y + x * sin + y * cos + per_window(offsets[:, 1])
    return torch.stack([grid_x, grid_y], dim=-1).reshape(n, hp, wp, 2)


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, Hp, Wp, C) -> (B * nh * nw, ws * ws, C), windows in row-major order."""
    b, hp, wp, c = x.shape
    x = x.reshape(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_unpartition(windows: Tensor, window: int, padded_hw: tuple[int, int]) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nh * nw, ws * ws, C) -> (B, Hp, Wp, C)."""
    hp, wp = padded_hw
    nh, nw = hp // window, wp // window
    c = windows.shape[-1]
    x = windows.reshape(-1, nh, nw, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, hp, wp, c)


def pad_channels_last(x: Tensor, padding: tuple[int, int, int, int]) -> Tensor:
    """Zero-pad a (B, H, W, C) map by (left, right, top, bottom)."""
    left, right, top, bottom = padding
    if left == right == top == bottom == 0:
        return x
    return F.pad(x, (0, 0, left, right, top, bottom))
