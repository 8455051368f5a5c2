"""The "reference" DCNv3 path: the official ``dcnv3_core_pytorch`` arithmetic
(``Multi-Task_Pretrain/backbone/ops_dcnv3/functions/dcnv3_func.py``), written plainly, with autograd."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mtp.ops.dcnv3.geometry import DCNv3Geometry, autocast_off, compute_dtype, xy_tensor

__all__ = ["dcnv3_reference"]


def dcnv3_reference(value: Tensor, offset: Tensor, mask: Tensor, geometry: DCNv3Geometry) -> Tensor:
    """Straightforward path: zero-pad, normalise locations by the padded size, one grid_sample."""
    n, h, w, c = value.shape
    g, p = geometry.group, geometry.num_points
    ph, pw = geometry.frame_pad
    dtype, device = compute_dtype(value), value.device
    with autocast_off(device):
        padded = F.pad(value.to(dtype), (0, 0, pw, pw, ph, ph))
        hp, wp = h + 2 * ph, w + 2 * pw
        ho, wo = offset.shape[1:3]
        base = geometry.base_locations(ho, wo, device, dtype)  # (2, Ho, Wo, P), input frame
        size = xy_tensor(wp, hp, device, dtype)
        # padded-frame pixel -> [0, 1] (the official 'sampling_locations') -> [-1, 1]
        base = (base.permute(1, 2, 3, 0) + xy_tensor(pw + 0.5, ph + 0.5, device, dtype)) / size
        loc = base.unsqueeze(2) + offset.to(dtype).reshape(n, ho, wo, g, p, 2) * geometry.offset_scale / size
        grid = (2 * loc - 1).permute(0, 3, 1, 2, 4, 5).reshape(n * g, ho * wo, p, 2)
        inputs = padded.view(n, hp * wp, g, c // g).permute(0, 2, 3, 1).reshape(n * g, c // g, hp, wp)
        sampled = F.grid_sample(inputs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        weights = mask.to(dtype).reshape(n, ho * wo, g, p).transpose(1, 2).reshape(n * g, 1, ho * wo, p)
        out = (sampled * weights).sum(-1)  # (N*G, C/G, Ho*Wo)
        out = out.view(n, c, ho, wo).permute(0, 2, 3, 1).contiguous()
    return out.to(value.dtype)
