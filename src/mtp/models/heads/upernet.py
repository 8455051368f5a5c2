"""UperNet decode head with the structure and parameter names of mmseg's ``UPerHead``.

Official facts (docs/CHECKPOINTS.md#head-layouts, docs/RECIPES.md#segmentation): pyramid pooling on the last
input (pool scales 1, 2, 3, 6) -> ``bottleneck``; ``lateral_convs`` (1x1) on the other inputs;
top-down addition; ``fpn_convs`` (3x3); all levels resized to the first and concatenated ->
``fpn_bottleneck`` (3x3); Dropout2d(0.1) -> ``conv_seg`` (1x1, with bias). Every ConvModule is
conv (no bias) + BN + ReLU. Channels: 512 in fine-tuning, 256 in MTP pretraining. Bilinear
resizing with ``align_corners=False``.

Input: the backbone's 4 maps (B, C_i, H_i, W_i) (strides 4, 8, 16, 32 for ViT+RVSA); output:
logits (B, num_classes, H_0, W_0) at the resolution of the first map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtp.models.heads.common import ConvBNReLU, resize


class UPerHead(nn.Module):
    """mmseg-compatible UperNet head.

    Args:
        in_channels: channels of the 4 (or more) input maps, finest first.
        num_classes: output classes of ``conv_seg``.
        channels: internal width (512 fine-tuning, 256 pretraining).
        pool_scales: PPM output sizes.
        dropout: Dropout2d probability before ``conv_seg``.
        align_corners: bilinear resizing flag (False in every MTP config).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.num_classes, self.channels = list(in_channels), num_classes, channels
        self.align_corners = align_corners
        # Registration order follows mmseg (conv_seg first) so state_dict order matches too.
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        top = self.in_channels[-1]
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvBNReLU(top, channels, 1)) for scale in pool_scales
        )
        self.bottleneck = ConvBNReLU(top + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in self.in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3, padding=1) for _ in self.in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(self.in_channels) * channels, channels, 3, padding=1)

    def psp_forward(self, x: Tensor) -> Tensor:
        """Pyramid pooling of the top map (B, C_top, h, w) -> (B, channels, h, w)."""
        outs = [x] + [resize(ppm(x), x.shape[2:], self.align_corners) for ppm in self.psp_modules]
        return self.bottleneck(torch.cat(outs, dim=1))

    def forward_features(self, inputs: Sequence[Tensor]) -> Tensor:
        """The shared trunk (used by the MTP pretraining decoders): -> (B, channels, H_0, W_0)."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"UPerHead expects {len(self.in_channels)} feature maps, got {len(inputs)}")
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:], self.align_corners)
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        outs = [outs[0]] + [resize(o, outs[0].shape[2:], self.align_corners) for o in outs[1:]]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))

    def cls_seg(self, feats: Tensor) -> Tensor:
        return self.conv_seg(self.dropout(feats))

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """4 maps -> logits (B, num_classes, H_0, W_0)."""
        return self.cls_seg(self.forward_features(inputs))
