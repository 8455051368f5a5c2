"""Bilinear sampling of token-major maps by row gathers: ``grid_sample``'s arithmetic without NCHW copies.

:func:`bilinear_gather` samples points of maps whose pixels are *rows* of a 2-D table, addressed by
``row = base + y * stride_y + x * stride_x``. Examples:

* a (B, H, W, C) channels-last map: ``table = map.reshape(-1, C)``, ``stride_y = W``, ``stride_x = 1``,
  ``base = b * H * W``;
* the keys of head ``g`` in a ViT ``qkv`` output (B, H*W, 3, heads, hd): ``table = qkv.reshape(-1, hd)``,
  ``stride_x = 3 * heads``, ``stride_y = W * 3 * heads``, ``base = b * H * W * 3 * heads + heads + g``
  (RVSA samples keys and values this way, straight from the projection's output: no padding, no permute,
  no float32 copy).

Arithmetic (= ``F.grid_sample(mode="bilinear", padding_mode="zeros", align_corners=True)`` with the grid
converted to pixels, ``x = (gx + 1) / 2 * (W - 1)``): the 4 neighbours (floor x, floor y) + {0, 1}², weights
(1 - fx | fx) (1 - fy | fy); neighbours outside [0, W) x [0, H) read zero. Locations are float32 (sub-pixel
precision does not depend on the table's dtype); the forward is one ``F.embedding_bag`` (fused weighted
gather-and-sum, weights in the table's dtype) and autograd keeps only the table and the locations. The
backward is written out: float32 ``index_add_`` of the weighted output gradient into the 4 neighbours, and
the location gradient from the neighbour differences, as ``grid_sample``'s backward computes them.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bilinear_gather"]


def bilinear_gather(
    table: Tensor,
    loc: Tensor,
    base: Tensor,
    size: tuple[int, int],
    strides: tuple[int, int],
) -> Tensor:
    """Bilinearly sample rows of ``table`` at pixel locations, zero outside the map.

    Args:
        table: (R, D) rows (any float dtype; the output has this dtype).
        loc: (P, 2) float locations (x, y) in pixels of the map (pixel centres at integers); float32
            or float64 (the arithmetic dtype).
        base: (P,) integer row of pixel (0, 0) of each point's map (batch element, head, ...).
        size: (H, W) of the maps; neighbours outside [0, W) x [0, H) contribute zero.
        strides: (stride_y, stride_x) rows between vertically / horizontally adjacent pixels.

    Returns:
        (P, D) samples. Differentiable in ``table`` and ``loc``.
    """
    if table.ndim != 2 or loc.ndim != 2 or loc.shape[1] != 2 or base.shape != loc.shape[:1]:
        raise ValueError(
            f"bilinear_gather expects table (R, D), loc (P, 2), base (P,); got {tuple(table.shape)}, "
            f"{tuple(loc.shape)}, {tuple(base.shape)}"
        )
    if not loc.is_floating_point() or loc.dtype in (torch.float16, torch.bfloat16):
        raise ValueError(f"bilinear_gather locations must be float32 or float64, got {loc.dtype}")
    return _BilinearGather.apply(table, loc, base, tuple(size), tuple(strides))


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def _neighbours(
    table: Tensor, loc: Tensor, base: Tensor, size: tuple[int, int], strides: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Rows (P, 4) of the neighbours (y0x0, y0x1, y1x0, y1x1), their validity (P, 4) and fx, fy (P,)."""
    h, w = size
    stride_y, stride_x = strides
    # Outside [-1, W] every neighbour is invalid anyway; clamping keeps the integer maths in range.
    x = loc[:, 0].clamp(-2, w + 1)
    y = loc[:, 1].clamp(-2, h + 1)
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    index_dtype = torch.int32 if table.shape[0] < 2**31 else torch.int64
    x0, y0 = x0.to(index_dtype), y0.to(index_dtype)
    dx = torch.tensor([0, 1, 0, 1], device=loc.device, dtype=index_dtype)
    dy = torch.tensor([0, 0, 1, 1], device=loc.device, dtype=index_dtype)
    xs, ys = x0[:, None] + dx, y0[:, None] + dy  # (P, 4)
    valid = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    rows = base.to(index_dtype)[:, None] + ys.clamp(0, h - 1) * stride_y + xs.clamp(0, w - 1) * stride_x
    return rows.clamp_(0, table.shape[0] - 1), valid, fx, fy


def _weights(valid: Tensor, fx: Tensor, fy: Tensor) -> Tensor:
    """(P, 4) bilinear weights, zero for invalid neighbours."""
    wx = torch.stack([1 - fx, fx, 1 - fx, fx], -1)
    wy = torch.stack([1 - fy, 1 - fy, fy, fy], -1)
    return wx * wy * valid


class _BilinearGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, loc, base, size, strides):
        ctx.size, ctx.strides = size, strides
        ctx.save_for_backward(table, loc, base)
        with _autocast_off(table.device):
            rows, valid, fx, fy = _neighbours(table, loc, base, size, strides)
            weights = _weights(valid, fx, fy).to(table.dtype)
            return F.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    def backward(ctx, grad_out):
        table, loc, base = ctx.saved_tensors
        grad_table = grad_loc = None
        with _autocast_off(table.device):
            rows, valid, fx, fy = _neighbours(table, loc, base, ctx.size, ctx.strides)
            acc = loc.dtype
            go = grad_out.to(acc)
            if ctx.needs_input_grad[0]:
                weighted = _weights(valid, fx, fy)[:, :, None] * go[:, None, :]  # (P, 4, D)
                grad = torch.zeros(table.shape, device=table.device, dtype=acc)
                grad_table = grad.index_add_(0, rows.reshape(-1), weighted.reshape(-1, go.shape[1])).to(table.dtype)
            if ctx.needs_input_grad[1]:
                # <grad_out, neighbour value>, zero for neighbours outside the map (zero padding)
                values = table.index_select(0, rows.reshape(-1)).view(*rows.shape, -1)  # (P, 4, D)
                dots = (values.to(acc) * go[:, None, :]).sum(-1) * valid  # (P, 4)
                d00, d01, d10, d11 = dots.unbind(1)
                grad_x = (d01 - d00) * (1 - fy) + (d11 - d10) * fy
                grad_y = (d10 - d00) * (1 - fx) + (d11 - d01) * fx
                grad_loc = torch.stack([grad_x, grad_y], -1)
        return grad_table, grad_loc, None, None, None
