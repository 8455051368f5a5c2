"""Shared decoder trunks whose last layers are chosen per dataset (MTP pretraining, docs/RECIPES.md#pretraining-model).

In the official model the three task decoders are shared across the SAMRS datasets, but the final
classifier / regressor / mask-logit layers are per dataset and live on the framework under their
official names (``inssegroiboxhead_fc_cls1``, ``rotdetroiboxhead_fc_reg3``, ...). The modules here
are the places inside the shared decoders where those layers plug in: they own no parameters and
call the layers selected with ``select(...)`` just before each dataset's pass (the framework does
that), so every parameter is registered exactly once and the state-dict names stay official.

Layouts of the per-dataset layers are the official (mmdet) ones: ``fc_cls`` (C + 1 rows, background
**last**), ``fc_reg`` (4C rows class-major for instance segmentation, 5 class-agnostic for rotated
detection), mask logits ``C`` channels. :class:`BoxPredictorSlot` and :class:`MaskLogitsSlot`
translate to torchvision's conventions (background first, a background box / mask slot).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Slot(nn.Module):
    """Parameter-free holder of the currently selected dataset layers (not registered as submodules)."""

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_active", None)

    def select(self, *layers: nn.Module) -> None:
        object.__setattr__(self, "_active", layers)

    def active(self) -> tuple[nn.Module, ...]:
        if self._active is None:
            raise RuntimeError(f"{type(self).__name__}: no dataset head selected (call select(...) first)")
        return self._active


class BoxPredictorSlot(_Slot):
    """torchvision ``box_predictor`` stand-in: (K, 1024) -> class logits (K, C + 1, background first),
    deltas (K, 4 (C + 1)) with a zero background box in front, from mmdet-layout ``fc_cls`` / ``fc_reg``."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        fc_cls, fc_reg = self.active()
        x = x.flatten(1)
        logits = fc_cls(x)
        deltas = fc_reg(x)
        logits = torch.cat([logits[:, -1:], logits[:, :-1]], dim=1)
        return logits, torch.cat([deltas.new_zeros(len(x), 4), deltas], dim=1)


class MaskLogitsSlot(_Slot):
    """torchvision ``mask_predictor`` stand-in: (K, 256, 28, 28) -> (K, C + 1, 28, 28) mask logits with a
    zero background channel in front, from the dataset's C-channel 1x1 conv (the deconv is in the trunk)."""

    def forward(self, x: Tensor) -> Tensor:
        (conv,) = self.active()
        logits = conv(x)
        return torch.cat([logits.new_zeros(len(x), 1, *logits.shape[2:]), logits], dim=1)


class MaskTrunk(nn.Sequential):
    """Shared mask trunk: 4 x (3x3 conv 256 + ReLU) (torchvision ``MaskRCNNHeads``) then ``upsample``
    (ConvTranspose2d k2 s2) + ReLU: (K, C_in, 14, 14) -> (K, 256, 28, 28)."""

    def __init__(self, in_channels: int, channels: int = 256) -> None:
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads

        super().__init__(*MaskRCNNHeads(in_channels, (channels,) * 4, 1))
        self.upsample = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.upsample_relu = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.upsample.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.upsample.bias)


class SharedFCBBoxHead(_Slot):
    """Oriented R-CNN box head with shared ``shared_fcs`` (256*7*7 -> 1024 -> 1024, ReLU) and the selected
    dataset's ``fc_cls`` (C + 1, background last) / ``fc_reg`` (5): (K, C, 7, 7) -> ((K, C + 1), (K, 5))."""

    def __init__(self, in_channels: int = 256, roi_size: int = 7, fc_channels: int = 1024) -> None:
        super().__init__()
        self.shared_fcs = nn.ModuleList(
            [nn.Linear(in_channels * roi_size * roi_size, fc_channels), nn.Linear(fc_channels, fc_channels)]
        )
        for fc in self.shared_fcs:
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)

    @property
    def num_classes(self) -> int:
        return self.active()[0].out_features - 1

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        fc_cls, fc_reg = self.active()
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x))
        return fc_cls(x), fc_reg(x)


def dataset_linear(in_features: int, out_features: int, std: float) -> nn.Linear:
    """A per-dataset classifier / regressor with mmdet's init (Normal(0, std), zero bias)."""
    layer = nn.Linear(in_features, out_features)
    nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)
    return layer


def semantic_head(channels: int, num_classes: int, dropout: float = 0.1) -> nn.Sequential:
    """Per-dataset segmentation head ``semseghead_k`` = Dropout2d(0.1) + 1x1 conv (official names ``.1.``)."""
    return nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))
