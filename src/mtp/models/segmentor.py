"""Encoder-decoder segmentor with mmseg ``EncoderDecoder`` names (``backbone.*``, ``decode_head.*``,
``auxiliary_head.*``), so the official fine-tuned segmentation checkpoints load without conversion.

``forward`` returns logits at the decode head's resolution (stride 4 for UperNet on ViT+RVSA);
callers resize them (bilinear, align_corners=False) to the image or label size.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mtp.models.backbones import create_backbone, merge_backbone_kwargs
from mtp.models.checkpoints import LoadReport, load_composite_checkpoint
from mtp.models.heads.fcn import FCNHead
from mtp.models.heads.upernet import UPerHead


class Segmentor(nn.Module):
    """backbone -> decode_head (+ optional auxiliary_head used for the training loss only)."""

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, auxiliary_head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head

    @property
    def num_classes(self) -> int:
        return self.decode_head.num_classes

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalised images -> logits (B, K, H/4, W/4)."""
        return self.decode_head(self.backbone(images))

    def forward_with_aux(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        feats = self.backbone(images)
        aux = self.auxiliary_head(feats) if self.auxiliary_head is not None else None
        return self.decode_head(feats), aux


def build_upernet(
    backbone: str = "vit_b_rvsa",
    *,
    num_classes: int,
    img_size: int = 512,
    channels: int = 512,
    pretrained: str | Path | None = None,
    aux_head: bool = False,
    backbone_kwargs: Mapping[str, Any] | None = None,
    **backbone_overrides,
) -> Segmentor:
    """ViT+RVSA (or another registered backbone) + UperNet, the official segmentation model.

    Official fine-tuning settings: drop_path_rate 0.3, channels 512, dropout 0.1, no aux head.
    """
    overrides = merge_backbone_kwargs(backbone_overrides, backbone_kwargs)
    net = create_backbone(backbone, img_size=img_size, pretrained=pretrained, **overrides)
    head = UPerHead(net.out_channels, num_classes, channels=channels)
    aux = FCNHead(net.out_channels[2], num_classes) if aux_head else None
    return Segmentor(net, head, aux)


def load_segmentor_checkpoint(model: Segmentor, path: str | Path, *, strict: bool = True) -> LoadReport:
    """Load a whole segmentor: an official mmseg file or an mtp (Lightning) checkpoint.

    Keys ``backbone.*`` / ``decode_head.*`` / ``auxiliary_head.*`` (after removing a ``module.`` or
    ``model.`` prefix). The backbone part gets the backbone adaptations of
    :func:`mtp.models.load_checkpoint` (position / table resizing). A file for another number of
    classes fails with an error saying so; an auxiliary head absent from the file is allowed, and so is
    a missing ``conv_seg`` (decoder-reuse files from pretraining: it keeps its initialisation).
    """
    return load_composite_checkpoint(
        model,
        path,
        required_prefix="decode_head.",
        optional=lambda key: key.startswith(("auxiliary_head.", "decode_head.conv_seg.")),
        strict=strict,
    )
