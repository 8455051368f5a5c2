"""The default ("gather") DCNv3 path: an embedding-bag forward and a grid-sample backward.

Forward (per output pixel, group g, point p): the sampling location (see :mod:`mtp.ops.dcnv3`) is
clamped to [-1, W] x [-1, H] and looked up in a copy of ``value`` with one zero row/column before
and two after, so that all 4 bilinear corners are valid rows (clamping changes nothing: outside
the map every corner reads zero). The 4*P corner rows of each (pixel, group) and their weights
``mask * bilinear`` form one bag of ``F.embedding_bag(mode="sum")`` over the table of rows
(N*H'*W'*G, C/G) — one fused gather-and-accumulate, written straight into the channels-last
output. Nothing of size (.., P, C) is materialised and autograd keeps only the three inputs.

Backward (fp32): the same locations as a normalised ``grid_sample`` grid on the unpadded map;
``grid_sample`` gives the samples for the mask gradient, ``aten.grid_sampler_2d_backward`` the
value and location gradients for ``grad_out * mask``. Both paths use ``grid_sample``'s bilinear
rule with zero padding, so the gradients are those of the forward.

Row indices are int32 when the table has fewer than 2**31 rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtp.ops.dcnv3.geometry import DCNv3Geometry, autocast_off, compute_dtype, xy_tensor

__all__ = ["dcnv3_gather"]


def dcnv3_gather(value: Tensor, offset: Tensor, mask: Tensor, geometry: DCNv3Geometry) -> Tensor:
    """(N, H, W, C), (N, Ho, Wo, G*P*2), (N, Ho, Wo, G*P) -> (N, Ho, Wo, C); shapes already checked."""
    return _DCNv3Gather.apply(value, offset, mask, geometry)


class _DCNv3Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value: Tensor, offset: Tensor, mask: Tensor, geometry: DCNv3Geometry) -> Tensor:
        ctx.geometry = geometry
        ctx.save_for_backward(value, offset, mask)
        with autocast_off(value.device):
            return gather_forward(value, offset, mask, geometry)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        value, offset, mask = ctx.saved_tensors
        with autocast_off(value.device):
            grads = grid_backward(grad_out, value, offset, mask, ctx.geometry, ctx.needs_input_grad[:3])
        return (*grads, None)


def gather_forward(value: Tensor, offset: Tensor, mask: Tensor, geometry: DCNv3Geometry) -> Tensor:
    """Forward of the gather path (no autograd graph of its own)."""
    n, h, w, c = value.shape
    g, p = geometry.group, geometry.num_points
    ho, wo = offset.shape[1:3]
    hp, wp = h + 3, w + 3
    device, dtype = value.device, compute_dtype(value)
    table = value.new_zeros(n, hp, wp, c)
    table[:, 1 : h + 1, 1 : w + 1] = value

    # (x; y) locations in the table frame (+1), clamped so that the 4 corners stay inside
    base = geometry.base_locations(ho, wo, device, dtype).add_(1).view(2, 1, ho, wo, 1, p)
    loc = torch.empty(2, n, ho, wo, g, p, device=device, dtype=dtype)
    torch.add(base, offset.reshape(n, ho, wo, g, p, 2).permute(5, 0, 1, 2, 3, 4), alpha=geometry.offset_scale, out=loc)
    loc[0].clamp_(0, w + 1)
    loc[1].clamp_(0, h + 1)
    corner = loc.floor()
    frac = loc.sub_(corner)

    index_dtype = torch.int32 if n * hp * wp * g < 2**31 else torch.int64
    corner = corner.to(index_dtype)
    start = torch.arange(n, device=device, dtype=index_dtype).view(n, 1, 1, 1, 1) * (hp * wp * g)
    start = start + torch.arange(g, device=device, dtype=index_dtype).view(1, 1, 1, g, 1)
    rows = torch.add(start, torch.add(corner[0], corner[1], alpha=wp), alpha=g)
    rows.clamp_(0, n * hp * wp * g - 1 - (wp + 1) * g)  # only matters for NaN locations
    steps = torch.arange(2, device=device, dtype=index_dtype)
    shifts = (steps.view(2, 1) * (wp * g) + steps * g).flatten()  # 0, g, wp*g, (wp+1)*g
    taps = rows.unsqueeze(-1) + shifts  # corners (y0 x0, y0 x1, y1 x0, y1 x1)

    fx, fy = frac[0], frac[1]
    wy1 = fy.mul_(mask.reshape(n, ho, wo, g, p))
    wy0 = mask.reshape(n, ho, wo, g, p) - wy1
    wx0 = 1 - fx
    pairs = ((wy0, wx0), (wy0, fx), (wy1, wx0), (wy1, fx))
    if torch.compiler.is_compiling():  # dynamo does not trace strided out= tensors
        weights = torch.stack([a * b for a, b in pairs], -1).to(value.dtype)
    else:  # eager: 2.5x faster than stack
        weights = torch.empty(n, ho, wo, g, p, 4, device=device, dtype=value.dtype)
        for i, (a, b) in enumerate(pairs):
            torch.mul(a, b, out=weights[..., i])

    bags = n * ho * wo * g
    out = F.embedding_bag(
        taps.view(bags, 4 * p), table.view(-1, c // g), per_sample_weights=weights.view(bags, 4 * p), mode="sum"
    )
    return out.view(n, ho, wo, c)


def grid_backward(
    grad_out: Tensor,
    value: Tensor,
    offset: Tensor,
    mask: Tensor,
    geometry: DCNv3Geometry,
    needs: tuple[bool, ...],
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients for (value, offset, mask) (None where not needed), through ``grid_sample``'s kernels."""
    n, h, w, c = value.shape
    g, p = geometry.group, geometry.num_points
    cg = c // g
    ho, wo = grad_out.shape[1:3]
    device, dtype = value.device, compute_dtype(value)
    inputs = value.to(dtype).reshape(n, h, w, g, cg).permute(0, 3, 4, 1, 2).reshape(n * g, cg, h, w)
    size = xy_tensor(w, h, device, dtype)
    scale = 2 * geometry.offset_scale / size  # d grid / d offset
    base = (geometry.base_locations(ho, wo, device, dtype).permute(1, 2, 3, 0) * 2 + 1) / size - 1
    grid = torch.empty(n, g, ho, wo, p, 2, device=device, dtype=dtype)
    off = offset.reshape(n, ho, wo, g, p, 2).permute(0, 3, 1, 2, 4, 5)
    torch.addcmul(base.view(1, 1, ho, wo, p, 2), off, scale, out=grid)
    grid = grid.view(n * g, ho * wo, p, 2)
    go = grad_out.to(dtype).reshape(n, ho, wo, g, cg).permute(0, 3, 4, 1, 2).reshape(n * g, cg, ho * wo, 1)
    weights = mask.to(dtype).reshape(n, ho, wo, g, p).permute(0, 3, 1, 2, 4).reshape(n * g, 1, ho * wo, p)

    grad_value = grad_offset = grad_mask = buffer = None
    if needs[2]:
        sampled = F.grid_sample(inputs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        grad_mask = sampled.mul_(go).sum(1).view(n, g, ho, wo, p).permute(0, 2, 3, 1, 4)
        grad_mask = grad_mask.reshape(n, ho, wo, g * p).to(mask.dtype)
        buffer = sampled
    if needs[0] or needs[1]:
        grad_sampled = go * weights if buffer is None else torch.mul(go, weights, out=buffer)
        grad_inputs, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_sampled, inputs, grid, 0, 0, False, [bool(needs[0]), True]
        )
        if needs[0]:
            grad_value = grad_inputs.view(n, g, cg, h, w).permute(0, 3, 4, 1, 2).reshape(n, h, w, c).to(value.dtype)
        if needs[1]:
            grad_offset = (grad_grid.view(n, g, ho, wo, p, 2) * scale).permute(0, 2, 3, 1, 4, 5)
            grad_offset = grad_offset.reshape(n, ho, wo, g * p * 2).to(offset.dtype)
    return grad_value, grad_offset, grad_mask
