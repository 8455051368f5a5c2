"""Segmentation transforms on torchvision.transforms.v2 with the official (mmseg 1.x) semantics.

Sample dicts (see :mod:`mtp.data.datasets.segmentation`) hold ``"image"``: ``tv_tensors.Image`` uint8
(3, H, W) RGB and ``"mask"``: ``tv_tensors.Mask`` int64 (H, W) with 255 = ignore; strings, ints and
``None`` entries pass through. Every transform here is a ``v2.Transform``, so it composes with
``v2.Compose`` and acts jointly on image and mask. Random numbers come from torch's global generator, so
DataLoader worker seeding controls them.

Official recipes (docs/RECIPES.md#segmentation):

* train: ``RandomResize(scale=(c, c), ratio_range=(0.5, 2), keep_ratio)`` → ``RandomCropCatMax(c, 0.75)``
  → ``RandomFlip(0.5)`` → ``PhotoMetricDistortion()`` → ``Normalize`` → ``PadTo(c)`` (the official data
  preprocessor pads train batches to the crop size after normalisation: image 0, mask 255);
* test (slide inference at the original size): ``Normalize`` only;
* SpaceNet in-training val: ``ResizeTo((384, 384), keep_ratio=False)`` → ``Normalize``; the image is resized
  but the label stays at the original size (see :class:`ResizeTo` for what the task must do with logits).

Image resizing is bilinear without antialiasing (mmcv / OpenCV ``INTER_LINEAR``; torchvision agrees to ±1
grey level); masks use nearest neighbour (OpenCV ``INTER_NEAREST`` ≡ torchvision ``NEAREST``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from mtp.data.transforms.photometric import PhotoMetricDistortion

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Normalize",
    "PadTo",
    "PhotoMetricDistortion",
    "RandomCropCatMax",
    "RandomFlip",
    "RandomResize",
    "ResizeTo",
    "build_test_transform",
    "build_train_transform",
    "rescale_size",
]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _spatial_size(flat_inputs: list[Any]) -> tuple[int, int]:
    """(H, W) of the first image / mask / plain tensor in the sample."""
    for x in flat_inputs:
        if isinstance(x, (tv_tensors.Image, tv_tensors.Mask)) or type(x) is torch.Tensor:
            return int(x.shape[-2]), int(x.shape[-1])
    raise TypeError("no image or mask tensor found in the sample")


def rescale_size(old_hw: tuple[int, int], scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``rescale`` rule: the largest size fitting ``scale`` (long, short edge limits), keeping the ratio.

    ``f = min(max(scale) / long_edge, min(scale) / short_edge)``; returns ``(int(h*f + 0.5), int(w*f + 0.5))``.
    """
    h, w = old_hw
    f = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * f + 0.5), int(w * f + 0.5)


class RandomResize(v2.Transform):
    """mmseg ``RandomResize``: ``r ~ U(ratio_range)``, target ``(int(s0*r), int(s1*r))``, then resize.

    ``keep_ratio=True`` uses :func:`rescale_size` (new size ``int(w*f + 0.5)``, ``int(h*f + 0.5)``);
    otherwise the image is resized exactly to the (H, W) target ``(int(s0*r), int(s1*r))``. Image bilinear
    (no antialias, like cv2), mask nearest.
    """

    def __init__(
        self,
        scale: int | Sequence[int] = (512, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        keep_ratio: bool = True,
    ) -> None:
        super().__init__()
        self.scale = _pair(scale)
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.keep_ratio = keep_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        lo, hi = self.ratio_range
        r = lo + (hi - lo) * torch.rand(()).item()
        target = (int(self.scale[0] * r), int(self.scale[1] * r))
        hw = _spatial_size(flat_inputs)
        size = rescale_size(hw, target) if self.keep_ratio else target
        return {"size": [size[0], size[1]]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.resize(inpt, params["size"], interpolation=v2.InterpolationMode.BILINEAR, antialias=False)


class ResizeTo(v2.Transform):
    """Deterministic evaluation resize of the image only (the SpaceNet val pipeline: 384×384, no keep ratio).

    ``keep_ratio=False`` resizes to exactly ``size`` = (H, W); ``keep_ratio=True`` uses :func:`rescale_size`.
    With ``resize_mask=False`` (default, the official val pipeline: labels are loaded after the resize)
    the mask stays at its original (H0, W0); the task must then resize the logits (B, C, h, w) back to the
    label size with ``torch.nn.functional.interpolate(logits, size=(H0, W0), mode="bilinear",
    align_corners=False)`` *before* the argmax, exactly as mmseg's ``postprocess_result`` does. The original
    size is also in the sample's ``"ori_size"`` entry for unlabelled images.
    """

    def __init__(self, size: int | Sequence[int], keep_ratio: bool = False, resize_mask: bool = False) -> None:
        super().__init__()
        self.size = _pair(size)
        self.keep_ratio = keep_ratio
        self.resize_mask = resize_mask

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        size = rescale_size(_spatial_size(flat_inputs), self.size) if self.keep_ratio else self.size
        return {"size": [size[0], size[1]]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask) and not self.resize_mask:
            return inpt
        return F.resize(inpt, params["size"], interpolation=v2.InterpolationMode.BILINEAR, antialias=False)


class RandomCropCatMax(v2.Transform):
    """mmseg ``RandomCrop`` with ``cat_max_ratio``.

    The crop size is clipped to the image; the offset is uniform in ``[0, max(H - h, 0)]`` (same for W).
    If ``cat_max_ratio < 1`` a crop is accepted when its mask has more than one non-ignored label value
    and the most frequent one covers less than ``cat_max_ratio`` of the non-ignored pixels; up to 10
    candidates are checked, and if none passes one more random crop is drawn and used unchecked (the
    mmseg loop). Without a mask in the sample no check is made.
    """

    def __init__(self, size: int | Sequence[int], cat_max_ratio: float = 0.75, ignore_index: int = 255) -> None:
        super().__init__()
        self.size = _pair(size)
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = ignore_index

    def _random_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        ch, cw = min(self.size[0], h), min(self.size[1], w)
        top = int(torch.randint(0, h - ch + 1, ()).item())
        left = int(torch.randint(0, w - cw + 1, ()).item())
        return top, left, ch, cw

    def _accepted(self, mask: torch.Tensor, box: tuple[int, int, int, int]) -> bool:
        top, left, ch, cw = box
        values, counts = torch.unique(mask[..., top : top + ch, left : left + cw], return_counts=True)
        counts = counts[values != self.ignore_index]
        return counts.numel() > 1 and counts.max().item() / counts.sum().item() < self.cat_max_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _spatial_size(flat_inputs)
        box = self._random_box(h, w)
        mask = next((x for x in flat_inputs if isinstance(x, tv_tensors.Mask)), None)
        if self.cat_max_ratio < 1.0 and mask is not None:
            for _ in range(10):
                if self._accepted(mask, box):
                    break
                box = self._random_box(h, w)
        return dict(zip(("top", "left", "height", "width"), box, strict=True))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.crop(inpt, **params)


class RandomFlip(v2.Transform):
    """Flip image and mask together with probability ``p``; ``direction`` 'horizontal' | 'vertical' | 'diagonal'
    (diagonal = both axes, mmcv's meaning)."""

    def __init__(self, p: float = 0.5, direction: str = "horizontal") -> None:
        super().__init__()
        if direction not in ("horizontal", "vertical", "diagonal"):
            raise ValueError(f"direction must be horizontal, vertical or diagonal, got {direction!r}")
        self.p = p
        self.direction = direction

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"flip": bool(torch.rand(()).item() < self.p)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["flip"]:
            return inpt
        if self.direction in ("horizontal", "diagonal"):
            inpt = F.horizontal_flip(inpt)
        if self.direction in ("vertical", "diagonal"):
            inpt = F.vertical_flip(inpt)
        return inpt


class Normalize(v2.Transform):
    """uint8 (or float, 0–255 scale) RGB image → float32 ``(x - mean) / std``; masks untouched."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.TVTensor) and not isinstance(inpt, tv_tensors.Image):
            return inpt
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        out = (inpt.as_subclass(torch.Tensor).to(torch.float32) - mean) / std
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out


class PadTo(v2.Transform):
    """Pad bottom/right up to ``size`` = (H, W) (never crops): image with ``image_value``, mask with
    ``mask_value`` (255 = ignore). Apply after :class:`Normalize` so that 0 means the normalised zero."""

    def __init__(self, size: int | Sequence[int], image_value: float = 0.0, mask_value: int = 255) -> None:
        super().__init__()
        self.size = _pair(size)
        self.image_value = image_value
        self.mask_value = mask_value

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.TVTensor) and not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        h, w = inpt.shape[-2:]
        bottom, right = max(self.size[0] - h, 0), max(self.size[1] - w, 0)
        if bottom == 0 and right == 0:
            return inpt
        value = self.mask_value if isinstance(inpt, tv_tensors.Mask) else self.image_value
        out = torch.nn.functional.pad(inpt.as_subclass(torch.Tensor), (0, right, 0, bottom), value=value)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


def build_train_transform(
    crop_size: int | Sequence[int],
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    photometric: bool = True,
    ignore_index: int = 255,
) -> v2.Compose:
    """The official mmseg training pipeline for crop size ``c`` (see the module docstring).

    Output sample: ``"image"`` float32 (3, c_h, c_w) normalised, ``"mask"`` int64 (c_h, c_w) with padding 255.
    """
    crop = _pair(crop_size)
    steps: list[v2.Transform] = [
        RandomResize(scale=crop, ratio_range=ratio_range, keep_ratio=True),
        RandomCropCatMax(crop, cat_max_ratio=cat_max_ratio, ignore_index=ignore_index),
        RandomFlip(p=0.5, direction="horizontal"),
    ]
    if photometric:
        steps.append(PhotoMetricDistortion())
    steps += [Normalize(), PadTo(crop, image_value=0.0, mask_value=ignore_index)]
    return v2.Compose(steps)


def build_test_transform(resize_to: int | Sequence[int] | None = None, keep_ratio: bool = False) -> v2.Compose:
    """Evaluation pipeline: optional image-only :class:`ResizeTo` (SpaceNet val: ``resize_to=(384, 384)``), then
    :class:`Normalize`. Masks keep their original size. Output ``"image"`` float32 (3, H, W)."""
    steps: list[v2.Transform] = []
    if resize_to is not None:
        steps.append(ResizeTo(resize_to, keep_ratio=keep_ratio))
    steps.append(Normalize())
    return v2.Compose(steps)
