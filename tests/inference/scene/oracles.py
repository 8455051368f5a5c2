"""Oracle "models" for the scene tests: deterministic task modules that find bright objects by thresholding.

They look like mtp tasks to ``predict-scene`` (a ``model`` with the calling convention of the family, a
``scene_family``, classes), so the whole path (reading, scaling, normalisation, tiling, stitching / merging,
coordinates, writers) is checked against objects whose scene coordinates the test knows. They can be named in a
YAML config (``class_path: tests.inference.scene.oracles.OracleRotatedDetection``) and run through the CLI.

An object is a 4-connected component of pixels whose three bands are all >= ``threshold`` (0–255 scale). A
component touching the tile border (cut by it) gets score 0.5, a whole one 0.9, so that the cross-tile merge keeps
the whole object.
"""

from __future__ import annotations

import time

import cv2
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtp.inference.outputs import IMAGENET_MEAN, IMAGENET_STD
from mtp.ops import poly2rbox

_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def bright(images: Tensor, threshold: float) -> Tensor:
    """(B, 3k, H, W) normalised -> (B, H, W) bool: the first 3 channels all >= threshold on the 0–255 scale."""
    rgb = images[:, :3].float() * _STD.to(images.device) + _MEAN.to(images.device)
    return (rgb >= threshold).all(dim=1)


def components(mask: np.ndarray) -> list[np.ndarray]:
    """(H, W) bool -> one (H, W) bool mask per 4-connected component."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    return [labels == k for k in range(1, n)]


class _Oracle(L.LightningModule):
    scene_family = ""

    def __init__(self, threshold: float = 200.0, delay: float = 0.0, class_names: list[str] | None = None,
                 img_size: int = 64) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters()
        self.class_names = class_names or ["background", "object"]
        self.model = self._build(threshold, delay)
        self.anchor = nn.Parameter(torch.zeros(1))  # a checkpoint has something to load

    def _build(self, threshold: float, delay: float) -> nn.Module:
        raise NotImplementedError


class _SegModel(nn.Module):
    def __init__(self, threshold: float, delay: float, channels: int = 3) -> None:
        super().__init__()
        self.threshold, self.delay, self.channels = threshold, delay, channels

    def forward(self, images: Tensor) -> Tensor:
        if self.delay:
            time.sleep(self.delay)
        if self.channels == 6:  # change: bright in exactly one date
            on = bright(images[:, :3], self.threshold) ^ bright(images[:, 3:], self.threshold)
        else:
            on = bright(images, self.threshold)
        logit = on.float() * 8 - 4  # +4 object, -4 background
        logits = torch.stack([-logit, logit], dim=1)
        return F.avg_pool2d(logits, 4)  # stride 4, like the real decoders


class OracleSegmentation(_Oracle):
    scene_family = "segmentation"
    crop_size, stride = (64, 64), (48, 48)

    def _build(self, threshold, delay):
        return _SegModel(threshold, delay)


class OracleChange(_Oracle):
    scene_family = "change_detection"

    def _build(self, threshold, delay):
        return _SegModel(threshold, delay, channels=6)


class _RotatedModel(nn.Module):
    def __init__(self, threshold: float, delay: float) -> None:
        super().__init__()
        self.threshold, self.delay = threshold, delay

    def forward(self, images: Tensor, img_hw: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        if self.delay:
            time.sleep(self.delay)
        out = []
        for mask, (h, w) in zip(bright(images, self.threshold).cpu().numpy(), img_hw, strict=True):
            polys, scores = [], []
            for comp in components(mask[:h, :w]):
                ys, xs = comp.nonzero()
                corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)])
                rect = cv2.minAreaRect(corners.astype(np.float32))  # the pixel squares, not their centres
                polys.append(cv2.boxPoints(rect).reshape(-1))
                cut = ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1
                scores.append(0.5 if cut else 0.9)
            polys_t = torch.tensor(np.array(polys), dtype=torch.float32).reshape(-1, 8)
            out.append({"rboxes": poly2rbox(polys_t) if len(polys) else torch.zeros(0, 5),
                        "scores": torch.tensor(scores, dtype=torch.float32),
                        "labels": torch.ones(len(polys), dtype=torch.long)})  # class 1: "object"  # fmt: skip
        return out


class OracleRotatedDetection(_Oracle):
    scene_family = "rotated_detection"

    def _build(self, threshold, delay):
        return _RotatedModel(threshold, delay)


class _HorizontalModel(nn.Module):
    """torchvision-style: list of (3, H, W) -> [{boxes xyxy, scores, labels (1 = object), masks (N, 1, H, W)}]."""

    def __init__(self, threshold: float, delay: float) -> None:
        super().__init__()
        self.threshold, self.delay = threshold, delay

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        out = []
        for image in images:
            mask = bright(image[None], self.threshold)[0].cpu().numpy()
            h, w = mask.shape
            boxes, scores, masks = [], [], []
            for comp in components(mask):
                ys, xs = comp.nonzero()
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                cut = ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1
                scores.append(0.5 if cut else 0.9)
                masks.append(comp.astype(np.float32))
            out.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        "scores": torch.tensor(scores, dtype=torch.float32),
                        "labels": torch.full((len(boxes),), 2, dtype=torch.long),  # 1 + label_offset
                        "masks": torch.tensor(np.array(masks)).reshape(-1, 1, h, w)})  # fmt: skip
        return out


class OracleDetection(_Oracle):
    scene_family = "detection"
    label_offset, with_masks = 1, True

    def _build(self, threshold, delay):
        return _HorizontalModel(threshold, delay)


class _ClassifierModel(nn.Module):
    def __init__(self, threshold: float, delay: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, images: Tensor) -> Tensor:
        fraction = bright(images, self.threshold).float().mean(dim=(1, 2))
        logit = (fraction > 0.01).float() * 8 - 4
        return torch.stack([-logit, logit], dim=1)


class OracleClassification(_Oracle):
    scene_family = "classification"

    def _build(self, threshold, delay):
        return _ClassifierModel(threshold, delay)
