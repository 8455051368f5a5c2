"""Shared task decoders of the MTP pretraining model (official ``semsegdecoder``, ``inssegdecoder``,
``rotdetdecoder``); the per-dataset final layers live in the model (:mod:`.framework`) and are slotted in per call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.image_list import ImageList

from mtp.models.detectors.horizontal.rcnn import build_rcnn_roi_heads, build_rcnn_rpn
from mtp.models.detectors.oriented_rcnn.roi_head import OrientedRoIHead, RCNNConfig
from mtp.models.detectors.oriented_rcnn.rpn import OrientedRPNHead, RPNConfig
from mtp.models.heads.upernet import UPerHead
from mtp.models.necks.fpn import FPN
from mtp.models.pretraining.heads import BoxPredictorSlot, MaskLogitsSlot, MaskTrunk, SharedFCBBoxHead


@dataclass
class ProposalBudget:
    """Smaller-than-official proposal and RoI counts for CPU runs (None in the model = official numbers:
    RPN 2000 pre-NMS / 1000 (IS) or 2000 (RD) kept, 512 sampled RoIs). ``proposals``: per image, before and
    after NMS, both RPNs, train and test; ``rcnn_samples``: RoIs sampled per image by both R-CNN heads."""

    proposals: int = 2000
    rcnn_samples: int = 512


class InstanceDecoder(nn.Module):
    """Backbone-less Mask R-CNN: ``neck`` (FPN 256 x 5), ``rpn`` (torchvision RPN, mmdet rules) and
    ``roi_heads`` (Shared2FC box trunk + mask trunk; predictors are per-dataset slots)."""

    def __init__(self, in_channels: Sequence[int], channels: int = 256, budget: ProposalBudget | None = None) -> None:
        super().__init__()
        self.neck = FPN(in_channels, channels)
        self.rpn = build_rcnn_rpn(channels, train_post_nms=1000)
        if budget is not None:
            self.rpn._pre_nms_top_n = {"training": budget.proposals, "testing": budget.proposals}
            self.rpn._post_nms_top_n = {"training": budget.proposals, "testing": budget.proposals}
        heads = build_rcnn_roi_heads(1, channels, match_low_quality=True, with_mask=True)
        heads.box_predictor = BoxPredictorSlot()
        heads.mask_head = MaskTrunk(channels, channels)
        heads.mask_predictor = MaskLogitsSlot()
        if budget is not None:
            heads.fg_bg_sampler = BalancedPositiveNegativeSampler(budget.rcnn_samples, 0.25)
        self.roi_heads = heads

    def forward(self, feats: Sequence[Tensor], images: Tensor, img_hw: list[tuple[int, int]], targets=None):
        """Training: dict of losses; evaluation: per image {boxes, labels (1..C), scores, masks (N,1,28,28)}
        in the resized-image frame (masks not pasted)."""
        maps = OrderedDict(zip(["0", "1", "2", "3", "pool"], self.neck(feats), strict=True))
        image_list = ImageList(images, [tuple(int(v) for v in hw) for hw in img_hw])
        proposals, rpn_losses = self.rpn(image_list, maps, targets)
        detections, roi_losses = self.roi_heads(maps, proposals, image_list.image_sizes, targets)
        if self.training:
            return {
                "loss_rpn_cls": rpn_losses["loss_objectness"],
                "loss_rpn_bbox": rpn_losses["loss_rpn_box_reg"],
                "loss_cls": roi_losses["loss_classifier"],
                "loss_bbox": roi_losses["loss_box_reg"],
                "loss_mask": roi_losses["loss_mask"],
            }
        return detections


class RotatedDecoder(nn.Module):
    """Backbone-less Oriented R-CNN: ``neck``, ``rpn_head``, ``roi_head`` (shared FCs, per-dataset layers)."""

    def __init__(self, in_channels: Sequence[int], channels: int = 256, budget: ProposalBudget | None = None) -> None:
        super().__init__()
        self.neck = FPN(in_channels, channels)
        rpn_cfg, rcnn_cfg = RPNConfig(), RCNNConfig()
        if budget is not None:
            rpn_cfg.nms_pre = rpn_cfg.max_per_img = budget.proposals
            rcnn_cfg.num_samples = budget.rcnn_samples
        self.rpn_head = OrientedRPNHead(channels, cfg=rpn_cfg)
        self.roi_head = OrientedRoIHead(SharedFCBBoxHead(channels), cfg=rcnn_cfg)

    def forward(self, feats: Sequence[Tensor], img_hw: list[tuple[int, int]], gt_rboxes=None, gt_labels=None):
        maps = self.neck(feats)
        proposals, rpn_losses = self.rpn_head(maps, img_hw, gt_rboxes)
        if gt_rboxes is None:
            return self.roi_head.predict(maps, proposals, img_hw)
        losses = self.roi_head.loss(maps, proposals, gt_rboxes, gt_labels)
        return {**rpn_losses, "loss_cls": losses["loss_cls"], "loss_bbox": losses["loss_bbox"], "acc": losses["acc"]}


class SemanticDecoder(nn.Module):
    """Official ``semsegdecoder``: holds ``decode_head`` (UPerHead, ``num_classes=1`` unused classifier)."""

    def __init__(self, in_channels: Sequence[int], channels: int = 256) -> None:
        super().__init__()
        self.decode_head = UPerHead(in_channels, num_classes=1, channels=channels)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        return self.decode_head.forward_features(feats)
