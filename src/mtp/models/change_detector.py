"""Siamese change detector with Open-CD ``SiamEncoderDecoder`` names (``backbone.*``, ``decode_head.*``).

Official model (``RS_Tasks_Finetune/Change_Detection/configs/mtp/``; docs/RECIPES.md#change-detection,
docs/CHECKPOINTS.md#prefixes-per-toolbox, docs/CHECKPOINTS.md#head-layouts):

* one **shared** backbone runs on image A (time 1) and image B (time 2); the change-detection copy of
  ViT+RVSA returns the 4 raw stride-16 taps (``pyramid=False``: no fpn adapters; the official copy keeps
  unused ``norm`` / ``fpn1`` / ``fpn2`` weights, which are ignored on loading);
* ``FeatureFusionNeck`` (no parameters), policy ``abs_diff``: ``|f_A - f_B|`` at each of the 4 levels
  (``diff`` = f_B - f_A, ``sum`` and ``concat`` are the other Open-CD policies, unused by MTP);
* :class:`~mtp.models.heads.unet.UNetHead` (decoder channels 512/256/128/64, 2 classes).

Input convention: the official pre-processor stacks the two normalised RGB images into one 6-channel
tensor, so :meth:`ChangeDetector.forward` takes (B, 6, H, W) = cat(A, B) — any callable-on-a-batch
inference helper (:mod:`mtp.inference.segmentation`, whole or slide) works unchanged. Output: logits
(B, num_classes, 2H, 2W) for ViT, (B, num_classes, H, W) for InternImage (see the head); resize them bilinearly
to the label / image size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtp.models.backbones import create_backbone, merge_backbone_kwargs
from mtp.models.backbones.copies import task_copy_overrides
from mtp.models.checkpoints import LoadReport, load_composite_checkpoint
from mtp.models.heads.unet import UNetHead

__all__ = ["FUSION_POLICIES", "ChangeDetector", "build_change_detector", "fuse", "load_change_detector_checkpoint"]

FUSION_POLICIES = ("abs_diff", "diff", "sum", "concat")


def fuse(feats_a: Sequence[Tensor], feats_b: Sequence[Tensor], policy: str = "abs_diff") -> list[Tensor]:
    """Open-CD ``FeatureFusionNeck``: per level |A - B| (``abs_diff``), B - A, A + B or cat([A, B], dim=1)."""
    ops = {
        "abs_diff": lambda a, b: (a - b).abs(),
        "diff": lambda a, b: b - a,
        "sum": lambda a, b: a + b,
        "concat": lambda a, b: torch.cat([a, b], dim=1),
    }
    if policy not in ops:
        raise ValueError(f"fusion policy must be one of {FUSION_POLICIES}, got {policy!r}")
    return [ops[policy](a, b) for a, b in zip(feats_a, feats_b, strict=True)]


class ChangeDetector(nn.Module):
    """Shared backbone on both dates -> fusion -> decode head.

    Args:
        backbone: module mapping (B, 3, H, W) to a sequence of feature maps.
        decode_head: module mapping the fused maps to logits (B, K, h, w).
        policy: fusion policy (official ``abs_diff``).
    """

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, policy: str = "abs_diff") -> None:
        super().__init__()
        if policy not in FUSION_POLICIES:
            raise ValueError(f"fusion policy must be one of {FUSION_POLICIES}, got {policy!r}")
        self.backbone = backbone
        self.decode_head = decode_head
        self.policy = policy

    @property
    def num_classes(self) -> int:
        return self.decode_head.num_classes

    def forward_pair(self, image_a: Tensor, image_b: Tensor) -> Tensor:
        """Two (B, 3, H, W) normalised images -> logits (B, K, h, w).

        Both dates go through the backbone as one batch of 2B images (same result as two passes: the
        ViT has no batch statistics; it is faster than two passes).
        """
        if image_a.shape != image_b.shape:
            raise ValueError(f"images A and B differ in shape: {tuple(image_a.shape)} vs {tuple(image_b.shape)}")
        feats = self.backbone(torch.cat([image_a, image_b], dim=0))
        n = image_a.shape[0]
        return self.decode_head(fuse([f[:n] for f in feats], [f[n:] for f in feats], self.policy))

    def forward(self, images: Tensor) -> Tensor:
        """(B, 6, H, W) = cat(A, B) along channels -> logits (B, K, h, w)."""
        if images.ndim != 4 or images.shape[1] % 2:
            raise ValueError(f"expected (B, 2*C, H, W) stacked image pairs, got {tuple(images.shape)}")
        image_a, image_b = images.chunk(2, dim=1)
        return self.forward_pair(image_a, image_b)


def build_change_detector(
    backbone: str = "vit_b_rvsa",
    *,
    img_size: int = 256,
    num_classes: int = 2,
    decoder_channels: Sequence[int] = (512, 256, 128, 64),
    dropout: float = 0.1,
    policy: str = "abs_diff",
    pretrained: str | Path | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    **backbone_overrides,
) -> ChangeDetector:
    """ViT+RVSA (change-detection copy) + |A-B| fusion + UNet head, the official MTP CD model.

    ViT+RVSA defaults for this task (override through ``backbone_overrides``): ``pyramid=False`` (the 4
    raw stride-16 taps) and ``drop_path_rate=0.3`` (official fine-tuning); other backbones get only the
    overrides given. ``img_size``: 256 for
    LEVIR / WHU / CDD, 224 for OSCD. ``pretrained``: MAE / MTP encoder / MTP whole-model file for the
    backbone; whole fine-tuned files go through :func:`load_change_detector_checkpoint`.
    """
    overrides = merge_backbone_kwargs(backbone_overrides, backbone_kwargs)
    overrides = task_copy_overrides(backbone, "change_detection", overrides)
    net = create_backbone(backbone, img_size=img_size, pretrained=pretrained, **overrides)
    in_channels = list(net.out_channels)
    if policy == "concat":
        in_channels = [2 * c for c in in_channels]
    head = UNetHead(in_channels, num_classes, decoder_channels=decoder_channels, dropout=dropout)
    return ChangeDetector(net, head, policy)


def load_change_detector_checkpoint(model: ChangeDetector, path: str | Path, *, strict: bool = True) -> LoadReport:
    """Load a whole change detector: an official Open-CD file (``epoch_150.pth``) or an mtp checkpoint.

    Keys ``backbone.*`` / ``decode_head.*`` after removing ``module.`` / ``model.`` (Lightning) prefixes;
    the backbone part is adapted like :func:`mtp.models.load_checkpoint` (resized position tables; the
    unused ``norm`` / ``fpn1`` / ``fpn2`` weights of the official CD copy are ignored). A file for another
    number of classes or backbone size fails with an error naming the keys.
    """
    return load_composite_checkpoint(model, path, required_prefix="decode_head.", strict=strict)
