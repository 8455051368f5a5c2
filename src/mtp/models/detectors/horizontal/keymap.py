"""Official mmdet 3.x checkpoints (Faster R-CNN DIOR, Mask R-CNN, RetinaNet xView) -> our torchvision
detectors (docs/CHECKPOINTS.md#head-layouts, docs/CHECKPOINTS.md#mmdet-and-torchvision).

Names: ``backbone.*`` -> ``backbone.body.*``; FPN ``neck.lateral_convs.i.conv`` / ``fpn_convs.i.conv``
-> torchvision ``inner_blocks.i.0`` / ``layer_blocks.i.0`` (RetinaNet's ``fpn_convs.3/4`` -> the
``p6`` / ``p7`` extra convs); RPN and R-CNN heads to torchvision's names.
Tensors: R-CNN classifiers put background last (mmdet) vs first (torchvision) -> the ``fc_cls`` rows
rotate by one; ``fc_reg`` (4K rows, class-major, no background) gains 4 zero rows in front; the mask
logits (K channels) gain a zero background channel in front. RetinaNet heads map one to one.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from mtp.models.checkpoints import LoadReport, load_composite_checkpoint

_RCNN_RULES = [
    (r"^neck\.lateral_convs\.(\d+)\.conv\.", r"backbone.fpn.fpn.inner_blocks.\1.0."),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.", r"backbone.fpn.fpn.layer_blocks.\1.0."),
    (r"^rpn_head\.rpn_conv\.", "rpn.head.conv.0.0."),
    (r"^rpn_head\.rpn_cls\.", "rpn.head.cls_logits."),
    (r"^rpn_head\.rpn_reg\.", "rpn.head.bbox_pred."),
    (r"^roi_head\.bbox_head\.shared_fcs\.0\.", "roi_heads.box_head.fc6."),
    (r"^roi_head\.bbox_head\.shared_fcs\.1\.", "roi_heads.box_head.fc7."),
    (r"^roi_head\.bbox_head\.fc_cls\.", "roi_heads.box_predictor.cls_score."),
    (r"^roi_head\.bbox_head\.fc_reg\.", "roi_heads.box_predictor.bbox_pred."),
    (r"^roi_head\.mask_head\.convs\.(\d+)\.conv\.", r"roi_heads.mask_head.\1.0."),
    (r"^roi_head\.mask_head\.upsample\.", "roi_heads.mask_predictor.conv5_mask."),
    (r"^roi_head\.mask_head\.conv_logits\.", "roi_heads.mask_predictor.mask_fcn_logits."),
    (r"^backbone\.", "backbone.body."),
]
_RETINA_RULES = [
    (r"^neck\.lateral_convs\.(\d+)\.conv\.", r"backbone.fpn.inner_blocks.\1.0."),
    (r"^neck\.fpn_convs\.3\.conv\.", "backbone.fpn.extra_blocks.p6."),
    (r"^neck\.fpn_convs\.4\.conv\.", "backbone.fpn.extra_blocks.p7."),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.", r"backbone.fpn.layer_blocks.\1.0."),
    (r"^bbox_head\.cls_convs\.(\d+)\.conv\.", r"head.classification_head.conv.\1.0."),
    (r"^bbox_head\.reg_convs\.(\d+)\.conv\.", r"head.regression_head.conv.\1.0."),
    (r"^bbox_head\.retina_cls\.", "head.classification_head.cls_logits."),
    (r"^bbox_head\.retina_reg\.", "head.regression_head.bbox_reg."),
    (r"^backbone\.", "backbone.body."),
]


def _apply(rules, key: str) -> str:
    if key.startswith(("backbone.body.", "backbone.fpn.")) or not re.match(
        r"^(backbone|neck|rpn_head|roi_head|bbox_head)\.", key
    ):
        return key  # already ours (an mtp checkpoint) or not a detector key
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return key


def mmdet_rcnn_key(key: str) -> str:
    """Official Faster / Mask R-CNN key -> ours (unknown keys unchanged)."""
    return _apply(_RCNN_RULES, key)


def mmdet_retinanet_key(key: str) -> str:
    """Official RetinaNet key -> ours (unknown keys unchanged)."""
    return _apply(_RETINA_RULES, key)


def rcnn_background_first(state: dict[str, Tensor], mmdet_keys: set[str]) -> dict[str, Tensor]:
    """Re-order mmdet classifier tensors (background last, no background box / mask) for torchvision."""
    out = dict(state)
    for suffix in ("weight", "bias"):
        cls_key = f"roi_heads.box_predictor.cls_score.{suffix}"
        if cls_key in out and f"roi_head.bbox_head.fc_cls.{suffix}" in mmdet_keys:
            w = out[cls_key]
            out[cls_key] = torch.cat([w[-1:], w[:-1]])
        reg_key = f"roi_heads.box_predictor.bbox_pred.{suffix}"
        if reg_key in out and f"roi_head.bbox_head.fc_reg.{suffix}" in mmdet_keys:
            w = out[reg_key]
            out[reg_key] = torch.cat([w.new_zeros(4, *w.shape[1:]), w])
        mask_key = f"roi_heads.mask_predictor.mask_fcn_logits.{suffix}"
        if mask_key in out and f"roi_head.mask_head.conv_logits.{suffix}" in mmdet_keys:
            w = out[mask_key]
            out[mask_key] = torch.cat([w.new_zeros(1, *w.shape[1:]), w])
    return out


def load_mmdet_detector(
    model: nn.Module, path: str | Path, *, retinanet: bool = False, strict: bool = True
) -> LoadReport:
    """Load an official mmdet file (or an mtp checkpoint of the same model) into our detector.

    R-CNN files without the final classifier / mask logits (decoder reuse from MTP pretraining,
    ``mtp tool reuse-decoder``) leave those layers at their initialisation."""
    if retinanet:
        return load_composite_checkpoint(
            model, path, required_prefix="head.", key_map=mmdet_retinanet_key, backbone_prefix="backbone.body.",
            strict=strict,
        )  # fmt: skip
    seen: set[str] = set()

    def key_map(key: str) -> str:
        seen.add(key)
        return mmdet_rcnn_key(key)

    return load_composite_checkpoint(
        model, path, required_prefix="roi_heads.", key_map=key_map,
        convert=lambda state: rcnn_background_first(state, seen), backbone_prefix="backbone.body.", strict=strict,
        optional=lambda key: key.startswith(("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")),
    )  # fmt: skip
