"""torchvision detection parts adjusted to mmdet semantics (docs/CHECKPOINTS.md#mmdet-and-torchvision).

torchvision's FasterRCNN / MaskRCNN / RetinaNet are used as they are, with these parts swapped in
where their behaviour differs from the mmdet configs MTP was trained with:

* :class:`UnroundedAnchorGenerator` - torchvision rounds base anchors to integers, mmdet does not;
* :class:`MMDetRoIAlign` - mmdet ``SingleRoIExtractor``: ``aligned=True``, adaptive sampling
  (``sampling_ratio=0``), level = floor(log2(sqrt(wh) / 56 + 1e-6)) clamped to P2..P5, scale 1/stride
  (torchvision's ``MultiScaleRoIAlign`` uses ``aligned=False`` and infers the scales);
* :class:`MaxIoUMatcher` - mmdet ``MaxIoUAssigner`` (low-quality matches need ``min_pos_iou``) behind
  torchvision's ``Matcher`` interface;
* :class:`PrebatchedTransform` - images arrive normalised (0-255 statistics) and already resized by
  the data pipeline; torchvision's transform must neither resize nor normalise again.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import roi_align

from mtp.models.detectors.sampling import max_iou_assign


class UnroundedAnchorGenerator(AnchorGenerator):
    """torchvision anchors without the rounding of the base anchors (mmdet semantics)."""

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device=None) -> Tensor:
        device = device if device is not None else torch.device("cpu")
        scales = torch.as_tensor(scales, dtype=dtype, device=device)
        aspect_ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
        h_ratios = torch.sqrt(aspect_ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales[None, :]).view(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2


class MaxIoUMatcher:
    """torchvision ``Matcher`` interface (matches: gt index, -1 below low, -2 between) on top of
    :func:`mtp.models.detectors.sampling.max_iou_assign`."""

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, pos_iou_thr: float, neg_iou_thr: float, min_pos_iou: float, match_low_quality: bool) -> None:
        self.pos_iou_thr, self.neg_iou_thr = pos_iou_thr, neg_iou_thr
        self.min_pos_iou, self.match_low_quality = min_pos_iou, match_low_quality

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        codes = max_iou_assign(
            match_quality_matrix,
            pos_iou_thr=self.pos_iou_thr,
            neg_iou_thr=self.neg_iou_thr,
            min_pos_iou=self.min_pos_iou,
            match_low_quality=self.match_low_quality,
        )
        matches = codes - 1
        matches[codes == 0] = self.BELOW_LOW_THRESHOLD
        matches[codes == -1] = self.BETWEEN_THRESHOLDS
        return matches


class MMDetRoIAlign(nn.Module):
    """mmdet ``SingleRoIExtractor`` with torchvision's pooler interface.

    ``forward(features: dict name -> (B, C, H, W), boxes: list of (K_i, 4) xyxy, image_shapes)`` ->
    (sum K_i, C, out, out), in the order of the concatenated boxes.
    """

    def __init__(
        self,
        featmap_names: tuple[str, ...] = ("0", "1", "2", "3"),
        strides: tuple[int, ...] = (4, 8, 16, 32),
        output_size: int = 7,
        sampling_ratio: int = 0,
        finest_scale: int = 56,
    ) -> None:
        super().__init__()
        self.featmap_names, self.strides = list(featmap_names), list(strides)
        self.output_size, self.sampling_ratio, self.finest_scale = output_size, sampling_ratio, finest_scale

    def map_levels(self, rois: Tensor) -> Tensor:
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]).clamp(min=0) * (rois[:, 4] - rois[:, 2]).clamp(min=0))
        levels = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        return levels.clamp(min=0, max=len(self.strides) - 1).long()

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes=None) -> Tensor:
        feats = [features[name] for name in self.featmap_names]
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])
        out = feats[0].new_zeros(len(rois), feats[0].shape[1], self.output_size, self.output_size)
        if len(rois) == 0:
            return out
        levels = self.map_levels(rois)
        for level, (feat, stride) in enumerate(zip(feats, self.strides, strict=True)):
            idx = torch.nonzero(levels == level).flatten()
            if idx.numel() == 0:
                out = out + 0.0 * feat.sum()  # keep the level in the graph (no unused parameters under DDP)
                continue
            pooled = roi_align(
                feat,
                rois[idx].to(feat.dtype),
                self.output_size,
                spatial_scale=1.0 / stride,
                sampling_ratio=self.sampling_ratio,
                aligned=True,
            )
            out = out.index_copy(0, idx, pooled.to(out.dtype))
        return out


class PrebatchedTransform(GeneralizedRCNNTransform):
    """Batching only (pad to a multiple of ``size_divisible``): no resize, no normalisation.

    The mtp data pipeline already resized (mmdet ``Resize(keep_ratio)``) and normalised the images
    with the 0-255 statistics of docs/CONVENTIONS.md#images-and-normalisation; outputs therefore stay in the
    input frame.
    """

    def __init__(self, size_divisible: int = 32) -> None:
        super().__init__(min_size=1, max_size=math.inf, image_mean=[0.0] * 3, image_std=[1.0] * 3,
                         size_divisible=size_divisible)  # fmt: skip

    def normalize(self, image: Tensor) -> Tensor:
        return image

    def resize(self, image, target=None):
        return image, target
