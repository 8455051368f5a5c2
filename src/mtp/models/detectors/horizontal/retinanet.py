"""RetinaNet on ViT+RVSA from torchvision's ``RetinaNet`` with the MTP xView settings.

Official facts (docs/RECIPES.md#horizontal-detection, docs/CHECKPOINTS.md#head-layouts,
docs/CHECKPOINTS.md#mmdet-and-torchvision): FPN on backbone levels 1..3 (strides
8/16/32) with two extra 3x3 stride-2 convs, P6 on the raw stride-32 backbone map ('on_input') and P7
on P6 **without** a ReLU (torchvision's ``LastLevelP6P7`` adds one); 5 levels, strides 8..128;
anchors octave base scale 4, 3 scales per octave (4, 5.04, 6.35 x stride, not rounded), ratios
0.5/1/2; head 4 convs 256 + ReLU, sigmoid classifier without background; focal loss (gamma 2, alpha
0.25) + L1; MaxIoU 0.5 / 0.4 with low-quality matches (min 0); test: top 1000 per level after
score > 0.05, NMS 0.5, 100 per image. Labels are 0-based (no background channel), as in mmdet.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from mtp.models.backbones import create_backbone, merge_backbone_kwargs
from mtp.models.backbones.copies import task_copy_overrides
from mtp.models.detectors.horizontal.components import MaxIoUMatcher, PrebatchedTransform, UnroundedAnchorGenerator


class P6P7OnInput(ExtraFPNBlock):
    """mmdet ``add_extra_convs='on_input'``: P6 = conv(C5), P7 = conv(P6), no ReLU in between."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)

    def forward(self, results: list[Tensor], x: list[Tensor], names: list[str]):
        p6 = self.p6(x[-1])
        results.extend([p6, self.p7(p6)])
        names.extend(["p6", "p7"])
        return results, names


class ViTWithRetinaFPN(nn.Module):
    """ViT+RVSA taps 1..3 -> FPN + P6/P7 -> OrderedDict of 5 maps (strides 8..128)."""

    def __init__(self, body: nn.Module, out_channels: int = 256) -> None:
        super().__init__()
        self.body = body
        in_channels = list(body.out_channels[1:])
        self.fpn = FeaturePyramidNetwork(
            in_channels, out_channels, extra_blocks=P6P7OnInput(in_channels[-1], out_channels)
        )
        self.out_channels = out_channels
        for module in self.fpn.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        feats = self.body(x)[1:]  # the stride-4 map is not used (start_level 1)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def build_retinanet(
    backbone: str = "vit_b_rvsa",
    *,
    num_classes: int,
    img_size: int = 416,
    pretrained: str | Path | None = None,
    fpn_channels: int = 256,
    backbone_kwargs: Mapping[str, Any] | None = None,
    **backbone_overrides,
) -> RetinaNet:
    """RetinaNet (xView configs, 60 classes) on the ViT+RVSA detection copy."""
    overrides = merge_backbone_kwargs(backbone_overrides, backbone_kwargs)
    overrides = task_copy_overrides(backbone, "detection", overrides)  # ViT: RVSA_MTP_branches
    body = create_backbone(backbone, img_size=img_size, pretrained=pretrained, **overrides)
    features = ViTWithRetinaFPN(body, fpn_channels)
    octave = [2 ** (i / 3) for i in range(3)]
    sizes = tuple(tuple(4.0 * stride * s for s in octave) for stride in (8, 16, 32, 64, 128))
    anchors = UnroundedAnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
    head = RetinaNetHead(fpn_channels, anchors.num_anchors_per_location()[0], num_classes)
    model = RetinaNet(
        features,
        num_classes,
        anchor_generator=anchors,
        head=head,
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_img=100,
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.4,
        topk_candidates=1000,
    )
    model.transform = PrebatchedTransform(32)
    model.proposal_matcher = MaxIoUMatcher(0.5, 0.4, 0.0, match_low_quality=True)
    return model
