"""Oriented RPN (mmrotate ``OrientedRPNHead`` semantics; docs/RECIPES.md#oriented-r-cnn-model).

Layers (official names): ``rpn_conv`` 3x3 256 -> ReLU -> ``rpn_cls`` 1x1 (A) and ``rpn_reg`` 1x1
(A x 6, channel a*6 + k), shared across the 5 FPN levels, Normal(0, 0.01) init.
Training: horizontal anchors vs the circumscribed boxes of the ground truth, MaxIoU 0.7/0.3/0.3
with low-quality matches, 256 sampled anchors (half positive), sigmoid BCE + SmoothL1(beta 1/9),
both divided by the number of sampled anchors. Proposals: per level top 2000 by score, decode,
drop empty boxes, NMS 0.8 on circumscribed boxes per level, keep 2000.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

from mtp.models.detectors.anchors import AnchorGenerator, inside_image
from mtp.models.detectors.oriented_rcnn.coders import MidpointOffsetCoder
from mtp.models.detectors.sampling import max_iou_assign, random_sample
from mtp.ops.rotated.boxes import rbox2hbox


@dataclass
class RPNConfig:
    """Official Oriented R-CNN RPN settings (train_cfg.rpn, train_cfg.rpn_proposal == test_cfg.rpn)."""

    pos_iou_thr: float = 0.7
    neg_iou_thr: float = 0.3
    min_pos_iou: float = 0.3
    num_samples: int = 256
    pos_fraction: float = 0.5
    allowed_border: float = 0.0
    nms_pre: int = 2000
    max_per_img: int = 2000
    nms_iou: float = 0.8
    smooth_l1_beta: float = 1.0 / 9.0


class OrientedRPNHead(nn.Module):
    """RPN head + anchors + coder + losses + proposal generation.

    Args:
        in_channels: FPN width (256). anchor_generator / coder / cfg: official defaults.
    """

    def __init__(
        self,
        in_channels: int = 256,
        anchor_generator: AnchorGenerator | None = None,
        coder: MidpointOffsetCoder | None = None,
        cfg: RPNConfig | None = None,
    ) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator or AnchorGenerator()
        self.coder = coder or MidpointOffsetCoder()
        self.cfg = cfg or RPNConfig()
        a = self.anchor_generator.num_anchors
        self.rpn_conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(in_channels, a, 1)
        self.rpn_reg = nn.Conv2d(in_channels, a * 6, 1)
        for conv in (self.rpn_conv, self.rpn_cls, self.rpn_reg):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward_layers(self, feats: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: scores (B, H*W*A) and deltas (B, H*W*A, 6) in anchor order."""
        scores, deltas = [], []
        for f in feats:
            x = F.relu(self.rpn_conv(f))
            b = x.shape[0]
            scores.append(self.rpn_cls(x).permute(0, 2, 3, 1).reshape(b, -1))
            deltas.append(self.rpn_reg(x).permute(0, 2, 3, 1).reshape(b, -1, 6))
        return scores, deltas

    def forward(
        self, feats: list[Tensor], img_hw: list[tuple[int, int]], gt_rboxes: list[Tensor] | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Returns proposals (per image (P, 5) le90 rboxes, descending score) and losses (training)."""
        sizes = [tuple(f.shape[-2:]) for f in feats]
        anchors = self.anchor_generator.grid_anchors(sizes, feats[0].device)
        scores, deltas = self.forward_layers(feats)
        losses = {}
        if gt_rboxes is not None:
            losses = self.loss(anchors, sizes, scores, deltas, img_hw, gt_rboxes)
        with torch.no_grad():
            proposals = [
                self.proposals([s[i].detach() for s in scores], [d[i].detach() for d in deltas], anchors)
                for i in range(len(img_hw))
            ]
        return proposals, losses

    def proposals(self, scores: list[Tensor], deltas: list[Tensor], anchors: list[Tensor]) -> Tensor:
        """One image: per-level top-k, decode, per-level NMS on circumscribed boxes -> (P, 5)."""
        boxes, kept_scores, levels = [], [], []
        for level, (s, d, a) in enumerate(zip(scores, deltas, anchors, strict=True)):
            s = s.float().sigmoid()
            if s.numel() > self.cfg.nms_pre:
                s, idx = s.topk(self.cfg.nms_pre)
                d, a = d[idx], a[idx]
            boxes.append(self.coder.decode(a, d))
            kept_scores.append(s)
            levels.append(torch.full_like(s, level, dtype=torch.long))
        boxes, kept_scores, levels = torch.cat(boxes), torch.cat(kept_scores), torch.cat(levels)
        valid = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        boxes, kept_scores, levels = boxes[valid], kept_scores[valid], levels[valid]
        keep = batched_nms(rbox2hbox(boxes), kept_scores, levels, self.cfg.nms_iou)[: self.cfg.max_per_img]
        return boxes[keep]

    def loss(self, anchors, sizes, scores, deltas, img_hw, gt_rboxes) -> dict[str, Tensor]:
        all_anchors = torch.cat(anchors)
        labels, label_weights, targets, target_weights = [], [], [], []
        num_sampled = 0
        for i, gt in enumerate(gt_rboxes):
            flags = torch.cat(self.anchor_generator.valid_flags(sizes, img_hw[i], all_anchors.device))
            valid = flags & inside_image(all_anchors, img_hw[i], self.cfg.allowed_border)
            label = all_anchors.new_zeros(len(all_anchors))
            label_w = all_anchors.new_zeros(len(all_anchors))
            target = all_anchors.new_zeros(len(all_anchors), 6)
            target_w = all_anchors.new_zeros(len(all_anchors), 6)
            valid_idx = torch.nonzero(valid).flatten()
            overlaps = box_iou(rbox2hbox(gt.float()), all_anchors[valid_idx]) if len(gt) else None
            assigned = max_iou_assign(
                overlaps if overlaps is not None else all_anchors.new_zeros(0, len(valid_idx)),
                pos_iou_thr=self.cfg.pos_iou_thr,
                neg_iou_thr=self.cfg.neg_iou_thr,
                min_pos_iou=self.cfg.min_pos_iou,
                match_low_quality=True,
            )
            pos, neg = random_sample(assigned, num=self.cfg.num_samples, pos_fraction=self.cfg.pos_fraction)
            pos_anchor, neg_anchor = valid_idx[pos], valid_idx[neg]
            label[pos_anchor] = 1.0
            label_w[pos_anchor] = 1.0
            label_w[neg_anchor] = 1.0
            if len(pos):
                target[pos_anchor] = self.coder.encode(all_anchors[pos_anchor], gt[assigned[pos] - 1])
                target_w[pos_anchor] = 1.0
            num_sampled += len(pos) + len(neg)
            labels.append(label)
            label_weights.append(label_w)
            targets.append(target)
            target_weights.append(target_w)
        avg = max(num_sampled, 1)
        pred_scores = torch.cat(scores, dim=1).float()  # (B, N)
        pred_deltas = torch.cat(deltas, dim=1).float()  # (B, N, 6)
        loss_cls = F.binary_cross_entropy_with_logits(
            pred_scores, torch.stack(labels), weight=torch.stack(label_weights), reduction="sum"
        )
        loss_bbox = F.smooth_l1_loss(pred_deltas, torch.stack(targets), beta=self.cfg.smooth_l1_beta, reduction="none")
        loss_bbox = (loss_bbox * torch.stack(target_weights)).sum()
        return {"loss_rpn_cls": loss_cls / avg, "loss_rpn_bbox": loss_bbox / avg}
