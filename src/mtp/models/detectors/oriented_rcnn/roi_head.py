"""Oriented R-CNN RoI head (mmdet ``StandardRoIHead`` + ``Shared2FCBBoxHead``, rbox prediction;
docs/RECIPES.md#oriented-r-cnn-model).

Layers (official names under ``roi_head.bbox_head``): ``shared_fcs.{0,1}`` (256*7*7 -> 1024 ->
1024, ReLU, Xavier-uniform), ``fc_cls`` (1024 -> C + 1, background last, Normal 0.01), ``fc_reg``
(1024 -> 5, class-agnostic, Normal 0.001).
Training: ground truths prepended to the proposals, rotated MaxIoU 0.5/0.5 (no low-quality), 512
sampled RoIs (25 % positive), softmax CE + SmoothL1(beta 1) on DeltaXYWHT targets, both divided by
the number of sampled RoIs. Test: softmax, class-agnostic decode with centre clamp, per-class
score > 0.05, rotated NMS 0.1 per class, top 2000.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtp.models.detectors.oriented_rcnn.coders import DeltaXYWHTCoder
from mtp.models.detectors.sampling import max_iou_assign, random_sample
from mtp.ops.rotated.iou import rbox_overlaps_for_assigner
from mtp.ops.rotated.nms import batched_rotated_nms
from mtp.ops.rotated.roi_align import RotatedRoIExtractor


@dataclass
class RCNNConfig:
    pos_iou_thr: float = 0.5
    neg_iou_thr: float = 0.5
    min_pos_iou: float = 0.5
    num_samples: int = 512
    pos_fraction: float = 0.25
    score_thr: float = 0.05
    nms_iou: float = 0.1
    max_per_img: int = 2000
    smooth_l1_beta: float = 1.0


class Shared2FCBBoxHead(nn.Module):
    """(K, C, 7, 7) RoI features -> class logits (K, num_classes + 1), deltas (K, 5)."""

    def __init__(self, num_classes: int, in_channels: int = 256, roi_size: int = 7, fc_channels: int = 1024) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.shared_fcs = nn.ModuleList(
            [nn.Linear(in_channels * roi_size * roi_size, fc_channels), nn.Linear(fc_channels, fc_channels)]
        )
        self.fc_cls = nn.Linear(fc_channels, num_classes + 1)
        self.fc_reg = nn.Linear(fc_channels, 5)
        for fc in self.shared_fcs:
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.normal_(self.fc_reg.weight, std=0.001)
        nn.init.zeros_(self.fc_cls.bias)
        nn.init.zeros_(self.fc_reg.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)


class OrientedRoIHead(nn.Module):
    """Rotated RoI extraction on P2–P5 + the box head + targets, losses and post-processing."""

    def __init__(
        self,
        bbox_head: Shared2FCBBoxHead,
        extractor: RotatedRoIExtractor | None = None,
        coder: DeltaXYWHTCoder | None = None,
        cfg: RCNNConfig | None = None,
    ) -> None:
        super().__init__()
        self.bbox_head = bbox_head
        self.bbox_roi_extractor = extractor or RotatedRoIExtractor()
        self.coder = coder or DeltaXYWHTCoder()
        self.cfg = cfg or RCNNConfig()

    @property
    def num_classes(self) -> int:
        return self.bbox_head.num_classes

    def _head(self, feats: list[Tensor], boxes: list[Tensor]) -> tuple[Tensor, Tensor]:
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b.float()], dim=1) for i, b in enumerate(boxes)])
        roi_feats = self.bbox_roi_extractor(feats[:4], rois)
        return self.bbox_head(roi_feats)

    def loss(
        self, feats: list[Tensor], proposals: list[Tensor], gt_rboxes: list[Tensor], gt_labels: list[Tensor]
    ) -> dict[str, Tensor]:
        sampled, labels, targets, target_w = [], [], [], []
        for props, gt, gt_lab in zip(proposals, gt_rboxes, gt_labels, strict=True):
            assigned = max_iou_assign(
                rbox_overlaps_for_assigner(gt.float(), props.float()),
                pos_iou_thr=self.cfg.pos_iou_thr,
                neg_iou_thr=self.cfg.neg_iou_thr,
                min_pos_iou=self.cfg.min_pos_iou,
                match_low_quality=False,
            )
            # mmdet add_gt_as_proposals: ground truths go first, each assigned to itself.
            candidates = torch.cat([gt.float(), props.float()])
            assigned = torch.cat([torch.arange(1, len(gt) + 1, device=gt.device), assigned])
            pos, neg = random_sample(assigned, num=self.cfg.num_samples, pos_fraction=self.cfg.pos_fraction)
            idx = torch.cat([pos, neg])
            lab = torch.full((len(idx),), self.num_classes, dtype=torch.long, device=gt.device)
            tgt = candidates.new_zeros(len(idx), 5)
            tw = candidates.new_zeros(len(idx), 5)
            if len(pos):
                matched = assigned[pos] - 1
                lab[: len(pos)] = gt_lab[matched]
                tgt[: len(pos)] = self.coder.encode(candidates[pos], gt[matched].float())
                tw[: len(pos)] = 1.0
            sampled.append(candidates[idx])
            labels.append(lab)
            targets.append(tgt)
            target_w.append(tw)
        cls_logits, deltas = self._head(feats, sampled)
        labels, targets, target_w = torch.cat(labels), torch.cat(targets), torch.cat(target_w)
        avg = max(len(labels), 1)
        loss_cls = F.cross_entropy(cls_logits.float(), labels, reduction="sum") / avg
        loss_bbox = F.smooth_l1_loss(deltas.float(), targets, beta=self.cfg.smooth_l1_beta, reduction="none")
        loss_bbox = (loss_bbox * target_w).sum() / avg
        accuracy = (cls_logits.argmax(1) == labels).float().mean() if len(labels) else cls_logits.new_zeros(())
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox, "acc": accuracy.detach()}

    @torch.no_grad()
    def predict(
        self, feats: list[Tensor], proposals: list[Tensor], img_hw: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Per image {"rboxes" (D, 5), "scores" (D,), "labels" (D,)} in the resized-image frame."""
        if sum(len(p) for p in proposals) == 0:
            return [self._empty(feats[0].device) for _ in proposals]
        cls_logits, deltas = self._head(feats, proposals)
        results, start = [], 0
        for props, hw in zip(proposals, img_hw, strict=True):
            end = start + len(props)
            probs = cls_logits[start:end].float().softmax(-1)[:, : self.num_classes]
            boxes = self.coder.decode(props.float(), deltas[start:end], max_hw=hw)
            results.append(self._multiclass_nms(boxes, probs))
            start = end
        return results

    def _multiclass_nms(self, boxes: Tensor, probs: Tensor) -> dict[str, Tensor]:
        roi_idx, cls_idx = torch.nonzero(probs > self.cfg.score_thr, as_tuple=True)
        scores = probs[roi_idx, cls_idx]
        cand = boxes[roi_idx]
        keep = batched_rotated_nms(cand, scores, cls_idx, self.cfg.nms_iou)[: self.cfg.max_per_img]
        return {"rboxes": cand[keep], "scores": scores[keep], "labels": cls_idx[keep]}

    @staticmethod
    def _empty(device) -> dict[str, Tensor]:
        return {
            "rboxes": torch.zeros(0, 5, device=device),
            "scores": torch.zeros(0, device=device),
            "labels": torch.zeros(0, dtype=torch.long, device=device),
        }
