"""Building blocks shared by the decode heads, named as OpenMMLab names them.

``ConvBNReLU`` registers ``conv`` (no bias) then ``bn`` like mmcv's ``ConvModule`` with a BN
norm layer, so ``<name>.conv.weight`` / ``<name>.bn.{weight,bias,running_mean,running_var,
num_batches_tracked}`` match the official checkpoints.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d (eps 1e-5) -> ReLU. (B, C_in, H, W) -> (B, C_out, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)


def resize(x: Tensor, size: tuple[int, int] | list[int], align_corners: bool = False) -> Tensor:
    """Bilinear resize of a (B, C, H, W) map (no-op when the size already matches)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)
