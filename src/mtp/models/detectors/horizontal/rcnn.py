"""Faster R-CNN and Mask R-CNN on ViT+RVSA, assembled from torchvision's kept components.

torchvision ``FasterRCNN`` / ``MaskRCNN`` with the official MTP / mmdet settings
(docs/RECIPES.md#horizontal-detection, docs/RECIPES.md#pretraining-model, docs/CHECKPOINTS.md#mmdet-and-torchvision):
FPN 256 x 5 levels (P6 by max-pool), anchors scales 8, ratios 0.5/1/2, strides 4..64 (not rounded), RPN MaxIoU 0.7/0.3
with low-quality matches at >= 0.3, 256 samples (1/2 positive), L1 box loss, proposals 2000 -> NMS 0.7 -> 1000 (train) /
1000 -> 1000 (test); RoIAlign 7 (mask 14), aligned, adaptive sampling; Shared2FC 1024; class-specific deltas with
stds (0.1, 0.1, 0.2, 0.2) (= torchvision weights (10, 10, 5, 5)); MaxIoU 0.5 (Faster R-CNN on DIOR without low-quality
matches, Mask R-CNN with); 512 samples (1/4 positive), ground truths added as proposals; L1 box loss; test
score > 0.05, NMS 0.5, 100 per image; mask head 4 convs + deconv, 28x28 targets.

Labels follow torchvision inside the model (1..K, background 0); the task converts from the
0-based dataset labels. Official mmdet checkpoints load through :mod:`.keymap`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from mtp.models.backbones import create_backbone, merge_backbone_kwargs
from mtp.models.backbones.copies import task_copy_overrides
from mtp.models.detectors.horizontal.components import (
    MaxIoUMatcher,
    MMDetRoIAlign,
    PrebatchedTransform,
    UnroundedAnchorGenerator,
)
from mtp.models.necks.fpn import FPN


class ViTWithFPN(nn.Module):
    """``body`` (ViT+RVSA, 4 maps) + ``fpn`` -> OrderedDict '0'..'3', 'pool' (strides 4..64)."""

    def __init__(self, body: nn.Module, fpn: FPN) -> None:
        super().__init__()
        self.body, self.fpn = body, fpn
        self.out_channels = fpn.out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        maps = self.fpn(self.body(x))
        return OrderedDict(zip(["0", "1", "2", "3", "pool"], maps, strict=True))


class MMDetRPN(RegionProposalNetwork):
    """torchvision RPN with mmdet's MaxIoU assigner and L1 box loss (Faster / Mask R-CNN configs)."""

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        sampled_pos = torch.where(torch.cat(sampled_pos, dim=0))[0]
        sampled_neg = torch.where(torch.cat(sampled_neg, dim=0))[0]
        sampled = torch.cat([sampled_pos, sampled_neg], dim=0)
        objectness = objectness.flatten()
        labels, regression_targets = torch.cat(labels, dim=0), torch.cat(regression_targets, dim=0)
        box_loss = F.l1_loss(pred_bbox_deltas[sampled_pos], regression_targets[sampled_pos], reduction="sum")
        objectness_loss = F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled])
        return objectness_loss, box_loss / max(sampled.numel(), 1)


def fastrcnn_l1_loss(class_logits, box_regression, labels, regression_targets) -> tuple[Tensor, Tensor]:
    """Softmax CE + class-specific L1 (mmdet ``L1Loss``), both averaged over the sampled RoIs."""
    labels, regression_targets = torch.cat(labels, dim=0), torch.cat(regression_targets, dim=0)
    classification_loss = F.cross_entropy(class_logits, labels)
    pos = torch.where(labels > 0)[0]
    box_regression = box_regression.reshape(class_logits.shape[0], -1, 4)
    box_loss = F.l1_loss(box_regression[pos, labels[pos]], regression_targets[pos], reduction="sum")
    return classification_loss, box_loss / max(labels.numel(), 1)


class MMDetRoIHeads(RoIHeads):
    """torchvision RoI heads with mmdet's L1 box loss (inference is torchvision's, unchanged)."""

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_cls, loss_box = fastrcnn_l1_loss(class_logits, box_regression, labels, regression_targets)
        losses = {"loss_classifier": loss_cls, "loss_box_reg": loss_box}
        if self.has_mask():
            positives = [torch.where(lab > 0)[0] for lab in labels]
            mask_proposals = [p[pos] for p, pos in zip(proposals, positives, strict=True)]
            pos_matched = [m[pos] for m, pos in zip(matched_idxs, positives, strict=True)]
            mask_logits = self.mask_predictor(
                self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes))
            )
            losses["loss_mask"] = maskrcnn_loss(
                mask_logits, mask_proposals, [t["masks"] for t in targets], [t["labels"] for t in targets], pos_matched
            )
        return [], losses


def _vit_fpn(backbone: str, img_size: int, pretrained, fpn_channels: int, overrides: dict) -> ViTWithFPN:
    overrides = task_copy_overrides(backbone, "detection", overrides)  # ViT: RVSA_MTP_branches (no global tables)
    body = create_backbone(backbone, img_size=img_size, pretrained=pretrained, **overrides)
    return ViTWithFPN(body, FPN(body.out_channels, fpn_channels))


def build_rcnn_rpn(fpn_channels: int, train_post_nms: int) -> MMDetRPN:
    anchors = UnroundedAnchorGenerator(((32.0,), (64.0,), (128.0,), (256.0,), (512.0,)), ((0.5, 1.0, 2.0),) * 5)
    head = RPNHead(fpn_channels, 3)
    for conv in head.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
    rpn = MMDetRPN(
        anchors,
        head,
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n={"training": 2000, "testing": 1000},
        post_nms_top_n={"training": train_post_nms, "testing": 1000},
        nms_thresh=0.7,
    )
    rpn.proposal_matcher = MaxIoUMatcher(0.7, 0.3, 0.3, match_low_quality=True)
    return rpn


def build_rcnn_roi_heads(
    num_classes: int, fpn_channels: int, match_low_quality: bool, with_mask: bool
) -> MMDetRoIHeads:
    box_head = TwoMLPHead(fpn_channels * 7 * 7, 1024)
    predictor = FastRCNNPredictor(1024, num_classes + 1)
    nn.init.normal_(predictor.cls_score.weight, std=0.01)
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    nn.init.zeros_(predictor.cls_score.bias)
    nn.init.zeros_(predictor.bbox_pred.bias)
    heads = MMDetRoIHeads(
        MMDetRoIAlign(output_size=7),
        box_head,
        predictor,
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=512,
        positive_fraction=0.25,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0),
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_img=100,
    )
    heads.proposal_matcher = MaxIoUMatcher(0.5, 0.5, 0.5, match_low_quality=match_low_quality)
    if with_mask:
        heads.mask_roi_pool = MMDetRoIAlign(output_size=14)
        heads.mask_head = MaskRCNNHeads(fpn_channels, (256, 256, 256, 256), 1)
        heads.mask_predictor = MaskRCNNPredictor(256, 256, num_classes + 1)
    return heads


def build_faster_rcnn(
    backbone: str = "vit_b_rvsa",
    *,
    num_classes: int,
    img_size: int = 800,
    pretrained: str | Path | None = None,
    fpn_channels: int = 256,
    with_mask: bool = False,
    backbone_kwargs: Mapping[str, Any] | None = None,
    **backbone_overrides,
) -> FasterRCNN:
    """Faster R-CNN (``with_mask=False``, the DIOR configs) or Mask R-CNN (``with_mask=True``, the MTP
    pretraining instance decoder) on the ViT+RVSA detection copy. ``num_classes`` excludes background."""
    overrides = merge_backbone_kwargs(backbone_overrides, backbone_kwargs)
    body = _vit_fpn(backbone, img_size, pretrained, fpn_channels, overrides)
    cls = MaskRCNN if with_mask else FasterRCNN
    model = cls(body, num_classes=num_classes + 1)  # torchvision defaults, replaced below by the mmdet-like parts
    model.transform = PrebatchedTransform(32)
    model.rpn = build_rcnn_rpn(fpn_channels, train_post_nms=1000)
    model.roi_heads = build_rcnn_roi_heads(num_classes, fpn_channels, match_low_quality=with_mask, with_mask=with_mask)
    return model


def build_mask_rcnn(backbone: str = "vit_b_rvsa", *, num_classes: int, **kwargs) -> MaskRCNN:
    return build_faster_rcnn(backbone, num_classes=num_classes, with_mask=True, **kwargs)
