"""FPN neck: torchvision's ``FeaturePyramidNetwork`` with mmdet's configuration and init.

mmdet FPN as used by every MTP detector (docs/RECIPES.md#oriented-r-cnn-model): 1x1 lateral and
3x3 output convs with bias and no norm, nearest top-down upsampling to the lower level's size, and
P6 = max_pool2d(P5, kernel 1, stride 2) -> 5 maps with ``out_channels`` at strides 4..64. That is
exactly torchvision's FPN with ``LastLevelMaxPool``; the official names map as
``lateral_convs.i.conv`` <-> ``inner_blocks.i.0`` and ``fpn_convs.i.conv`` <-> ``layer_blocks.i.0``.
Init: Xavier-uniform weights, zero bias (mmdet), not torchvision's Kaiming.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool


class FPN(nn.Module):
    """(4 maps, finest first) -> list of 5 maps (B, out_channels, H/s, W/s), s = 4, 8, 16, 32, 64."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, extra_max_pool: bool = True) -> None:
        super().__init__()
        self.fpn = FeaturePyramidNetwork(
            list(in_channels), out_channels, extra_blocks=LastLevelMaxPool() if extra_max_pool else None
        )
        self.out_channels = out_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        outs = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))
        return list(outs.values())


_TO_OURS = [
    (re.compile(r"^lateral_convs\.(\d+)\.conv\.(weight|bias)$"), r"fpn.inner_blocks.\1.0.\2"),
    (re.compile(r"^fpn_convs\.(\d+)\.conv\.(weight|bias)$"), r"fpn.layer_blocks.\1.0.\2"),
]


def mmdet_fpn_key_to_ours(key: str) -> str | None:
    """``lateral_convs.0.conv.weight`` -> ``fpn.inner_blocks.0.0.weight`` (None if not an FPN key)."""
    for pattern, replacement in _TO_OURS:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None
