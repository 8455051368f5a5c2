"""Oriented R-CNN composed from parts (torchvision style): backbone -> FPN -> oriented RPN -> RoI head.

Attribute names follow the official mmrotate 1.x model (``backbone``, ``neck``, ``rpn_head``,
``roi_head.bbox_head``), so official fine-tuned checkpoints load through a small key map
(:func:`load_oriented_rcnn_checkpoint`: only the FPN names differ, torchvision vs mmdet).

Input: a normalised batch (B, 3, H, W) padded to a multiple of 32 and the resized, unpadded sizes
``img_hw``; ground truths as le90 rboxes (N_i, 5) in resized-image pixels with labels (N_i,).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mtp.models.backbones import create_backbone, merge_backbone_kwargs
from mtp.models.backbones.copies import task_copy_overrides
from mtp.models.checkpoints import LoadReport, load_composite_checkpoint
from mtp.models.detectors.oriented_rcnn.roi_head import OrientedRoIHead, RCNNConfig, Shared2FCBBoxHead
from mtp.models.detectors.oriented_rcnn.rpn import OrientedRPNHead, RPNConfig
from mtp.models.necks.fpn import FPN, mmdet_fpn_key_to_ours


class OrientedRCNN(nn.Module):
    def __init__(self, backbone: nn.Module, neck: nn.Module, rpn_head: OrientedRPNHead, roi_head: OrientedRoIHead):
        super().__init__()
        self.backbone, self.neck, self.rpn_head, self.roi_head = backbone, neck, rpn_head, roi_head

    @property
    def num_classes(self) -> int:
        return self.roi_head.num_classes

    def forward(
        self,
        images: Tensor,
        img_hw: list[tuple[int, int]],
        gt_rboxes: list[Tensor] | None = None,
        gt_labels: list[Tensor] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training (ground truths given): dict of losses. Otherwise: per image detections
        {"rboxes", "scores", "labels"} in resized-image pixels."""
        feats = self.neck(self.backbone(images))
        proposals, rpn_losses = self.rpn_head(feats, img_hw, gt_rboxes)
        if gt_rboxes is None:
            return self.roi_head.predict(feats, proposals, img_hw)
        if gt_labels is None:
            raise ValueError("gt_labels are required with gt_rboxes")
        return {**rpn_losses, **self.roi_head.loss(feats, proposals, gt_rboxes, gt_labels)}


def build_oriented_rcnn(
    backbone: str = "vit_b_rvsa",
    *,
    num_classes: int,
    img_size: int = 1024,
    pretrained: str | Path | None = None,
    fpn_channels: int = 256,
    rpn_cfg: RPNConfig | None = None,
    rcnn_cfg: RCNNConfig | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    **backbone_overrides,
) -> OrientedRCNN:
    """ViT+RVSA detection copy (``RVSA_MTP_branches``: no global rel-pos tables) + FPN + Oriented R-CNN.

    Official fine-tuning: ``drop_path_rate=0.3, use_checkpoint=True``; ``rpn_cfg`` / ``rcnn_cfg``
    default to the official train/test settings.
    """
    overrides = merge_backbone_kwargs(backbone_overrides, backbone_kwargs)
    overrides = task_copy_overrides(backbone, "detection", overrides)  # ViT: RVSA_MTP_branches
    net = create_backbone(backbone, img_size=img_size, pretrained=pretrained, **overrides)
    neck = FPN(net.out_channels, fpn_channels)
    rpn = OrientedRPNHead(fpn_channels, cfg=rpn_cfg)
    roi = OrientedRoIHead(Shared2FCBBoxHead(num_classes, in_channels=fpn_channels), cfg=rcnn_cfg)
    return OrientedRCNN(net, neck, rpn, roi)


def official_to_ours(key: str) -> str:
    """mmrotate 1.x key -> our key (``neck.lateral_convs.0.conv.weight`` -> ``neck.fpn.inner_blocks.0.0.weight``)."""
    if key.startswith("neck."):
        mapped = mmdet_fpn_key_to_ours(key[len("neck.") :])
        if mapped is not None:
            return "neck." + mapped
    return key


def load_oriented_rcnn_checkpoint(model: OrientedRCNN, path: str | Path, *, strict: bool = True) -> LoadReport:
    """Load an official mmrotate 1.x / 0.3.4 Oriented R-CNN file or an mtp checkpoint.

    ``backbone.*`` gets the backbone adaptations (position-embedding resizing, ...), FPN names are
    mapped, ``rpn_head.*`` / ``roi_head.bbox_head.*`` load as they are. A file for another number
    of classes fails with a clear error; a file without ``fc_cls`` / ``fc_reg`` (decoder reuse from MTP
    pretraining, ``mtp tool reuse-decoder``) leaves them at their initialisation.
    """
    return load_composite_checkpoint(
        model, path, required_prefix="roi_head.", key_map=official_to_ours, strict=strict,
        optional=lambda key: key.startswith(("roi_head.bbox_head.fc_cls.", "roi_head.bbox_head.fc_reg.")),
    )  # fmt: skip
