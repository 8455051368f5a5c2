"""UNet decode head with the structure and parameter names of Open-CD's ``UNetHead`` (MTP's copy).

Official facts (``RS_Tasks_Finetune/Change_Detection/opencd/models/decode_heads/unet_head.py``;
docs/RECIPES.md#change-detection, docs/CHECKPOINTS.md#head-layouts): the 4 input maps are reversed
(deepest first); the deepest map enters the first block directly (no centre block, no attention);
block ``i`` has input channels ``[C4, 512, 256, 128][i]``, skip channels ``[C3, C2, C1, 0][i]`` and
output channels ``decoder_channels[i]`` = ``[512, 256, 128, 64][i]``. Each block: nearest x2
upsampling of ``x``; if there is a skip, it is resized bilinearly (``align_corners=False``) to ``x``'s
size and concatenated after ``x``; ``conv1`` and ``conv2`` are Sequential(Conv2d 3x3 pad 1 without
bias, BatchNorm2d, ReLU) -> keys ``blocks.i.conv1.0.weight``, ``blocks.i.conv1.1.{weight, bias,
running_mean, running_var, num_batches_tracked}``. After the 4 blocks one more bilinear x2 upsampling,
then Dropout2d(0.1) + ``conv_seg`` (1x1 with bias) to ``num_classes``.

Resolution: for ViT+RVSA every input map is at stride 16, each block doubles the size, so the logits
come out at stride 16 / 2^5 = 0.5, i.e. **twice the input resolution**; the loss and the inference
resize them (bilinear) to the label / image size. For stride 4..32 inputs the output is at stride 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtp.models.heads.common import resize

__all__ = ["UNetDecoderBlock", "UNetHead"]


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv2d 3x3 (no bias) -> BatchNorm2d -> ReLU, registered as indices 0, 1, 2 (official names)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNetDecoderBlock(nn.Module):
    """x (B, C_in, h, w) [+ skip (B, C_skip, h', w')] -> (B, C_out, 2h, 2w)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, align_corners: bool = False) -> None:
        super().__init__()
        self.skip_channels = skip_channels
        self.align_corners = align_corners
        self.conv1 = _conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = _conv_bn_relu(out_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, resize(skip, x.shape[-2:], self.align_corners)], dim=1)
        return self.conv2(self.conv1(x))


class UNetHead(nn.Module):
    """Open-CD-compatible UNet head.

    Args:
        in_channels: channels of the 4 input maps, in backbone order (finest / first tap first);
            ViT-B ``[768] * 4``, ViT-L ``[1024] * 4``.
        num_classes: output classes of ``conv_seg`` (2 for change detection: unchanged, changed).
        decoder_channels: output channels of the blocks (official ``[512, 256, 128, 64]``).
        dropout: Dropout2d probability before ``conv_seg`` (official 0.1).
        align_corners: bilinear resizing flag (False, as mmseg's default).

    ``forward(features)`` takes the 4 maps (B, C_i, H_i, W_i) and returns logits
    (B, num_classes, 2 * H_deepest * 2^3, ...) — see the module docstring.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int = 2,
        decoder_channels: Sequence[int] = (512, 256, 128, 64),
        dropout: float = 0.1,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        encoder = list(in_channels)[::-1]  # deepest first
        if len(decoder_channels) != len(encoder):
            raise ValueError(f"{len(encoder)} input maps need {len(encoder)} decoder channels, got {decoder_channels}")
        self.in_channels, self.num_classes = list(in_channels), num_classes
        self.decoder_channels = list(decoder_channels)
        self.align_corners = align_corners
        # Registration order as in Open-CD (BaseDecodeHead's conv_seg first), so state_dict orders agree.
        self.conv_seg = nn.Conv2d(self.decoder_channels[-1], num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        ins = [encoder[0], *self.decoder_channels[:-1]]
        skips = [*encoder[1:], 0]
        self.blocks = nn.ModuleList(
            UNetDecoderBlock(i, s, o, align_corners) for i, s, o in zip(ins, skips, self.decoder_channels, strict=True)
        )

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"UNetHead expects {len(self.in_channels)} feature maps, got {len(inputs)}")
        feats = list(inputs)[::-1]
        x = feats[0]
        for i, block in enumerate(self.blocks):
            x = block(x, feats[i + 1] if i + 1 < len(feats) else None)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=self.align_corners)
        return self.conv_seg(self.dropout(x))
