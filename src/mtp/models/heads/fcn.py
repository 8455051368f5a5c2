"""FCN auxiliary head with mmseg ``FCNHead`` names (``convs.i.conv/bn``, ``conv_seg``).

Not used by any official MTP config (they have no auxiliary head); offered because UperNet
recipes elsewhere add one on the stride-16 map with loss weight 0.4.
Input: the backbone's maps; uses ``inputs[in_index]`` (B, C, H, W) -> logits (B, K, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtp.models.heads.common import ConvBNReLU


class FCNHead(nn.Module):
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        num_convs: int = 1,
        in_index: int = 2,
        concat_input: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index, self.concat_input = in_index, concat_input
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.convs = nn.Sequential(
            *(ConvBNReLU(in_channels if i == 0 else channels, channels, 3, padding=1) for i in range(num_convs))
        )
        if concat_input:
            self.conv_cat = ConvBNReLU(in_channels + channels, channels, 3, padding=1)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        x = inputs[self.in_index]
        feats = self.convs(x)
        if self.concat_input:
            feats = self.conv_cat(torch.cat([x, feats], dim=1))
        return self.conv_seg(self.dropout(feats))
