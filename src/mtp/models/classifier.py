"""Scene classifier with mmpretrain ``ImageClassifier`` names, so official fine-tuned files load as they are.

Structure (docs/RECIPES.md#classification, docs/CHECKPOINTS.md#prefixes-per-toolbox): backbone -> global average
pooling of the **last** backbone map -> ``LinearClsHead`` (one ``fc`` layer). Parameter names: ``backbone.*`` and
``head.fc.weight`` (num_classes, D) / ``head.fc.bias`` (num_classes,); the pooling has no parameters.

The ViT+RVSA copy used for classification (docs/CHECKPOINTS.md#vitrvsa-copies, mmpretrain ``RVSA_MTP``) keeps the
global relative-position tables, returns the 4 raw stride-16 taps (no fpn adapters) and never applies its final
``norm``: :func:`build_classifier` builds exactly that (``pyramid=False, global_rel_pos=True``). The
official files' unused ``backbone.norm.*`` / ``backbone.fpn1.*`` / ``backbone.fpn2.*`` tensors are
ignored by the loader.

Input: (B, 3, H, W) float images normalised as in docs/CONVENTIONS.md#images-and-normalisation (224 x 224 in the
official recipe; any multiple of 16 works). Output: logits (B, num_classes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtp.models.backbones import create_backbone, merge_backbone_kwargs
from mtp.models.backbones.copies import task_copy_overrides
from mtp.models.checkpoints import LoadReport, load_composite_checkpoint

__all__ = ["ImageClassifier", "LinearClsHead", "build_classifier", "load_classifier_checkpoint"]


class LinearClsHead(nn.Module):
    """(B, D) pooled features -> (B, num_classes) logits; mmpretrain init: fc weight N(0, 0.01), bias 0."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.fc = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


class ImageClassifier(nn.Module):
    """backbone -> GAP over the last map -> head. ``forward``: (B, 3, H, W) -> logits (B, K)."""

    def __init__(self, backbone: nn.Module, head: LinearClsHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def features(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> pooled (B, D) features of the last backbone map (mmpretrain GlobalAveragePooling)."""
        last = self.backbone(images)[-1]
        return last.mean(dim=(2, 3))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


def build_classifier(
    backbone: str = "vit_b_rvsa",
    *,
    num_classes: int,
    img_size: int = 224,
    pretrained: str | Path | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    **backbone_overrides,
) -> ImageClassifier:
    """The official scene classifier: ViT+RVSA classification copy + GAP + linear head.

    Args:
        backbone: a registered backbone (``vit_b_rvsa`` / ``vit_l_rvsa``; any 4-map backbone: the head reads
            the last map).
        num_classes: EuroSAT 10, RESISC-45 45.
        img_size: training size (224 official; fixes the pos-embed grid and the global tables).
        pretrained: backbone weights (MAE / MTP encoder or whole-model file).
        **backbone_overrides: :func:`mtp.models.create_backbone` overrides (official fine-tuning:
            ``drop_path_rate=0.3``). For ViT+RVSA ``pyramid`` and ``global_rel_pos`` are fixed by the copy.
    """
    overrides = merge_backbone_kwargs(backbone_overrides, backbone_kwargs)
    overrides = task_copy_overrides(backbone, "classification", overrides)
    net = create_backbone(backbone, img_size=img_size, pretrained=pretrained, **overrides)
    return ImageClassifier(net, LinearClsHead(net.out_channels[-1], num_classes))


def load_classifier_checkpoint(model: ImageClassifier, path: str | Path, *, strict: bool = True) -> LoadReport:
    """Load a whole classifier: an official mmpretrain file (``backbone.*``, ``head.fc.*``) or an mtp
    (Lightning) checkpoint (``model.`` prefix removed). A file for another number of classes fails with
    an error saying so; a backbone-only file fails with a hint to use ``pretrained=``."""
    return load_composite_checkpoint(model, path, required_prefix="head.", strict=strict)


@torch.no_grad()
def predict_topk(model: ImageClassifier, images: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
    """Softmax scores and class indices of the ``k`` best classes: two (B, min(k, K)) tensors."""
    probs = model(images).float().softmax(dim=1)
    return probs.topk(min(k, probs.shape[1]), dim=1)
