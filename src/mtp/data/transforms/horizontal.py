"""Horizontal-detection transforms (mmdet 3.x semantics) on torchvision.transforms.v2.

Samples are the dicts of :mod:`mtp.data.datasets.horizontal`: ``"image"`` (``tv_tensors.Image`` (3, H, W)),
``"boxes"`` (``tv_tensors.BoundingBoxes`` XYXY (N, 4) float32), ``"labels"`` int64 (N,), optional ``"masks"``
(``tv_tensors.Mask`` uint8 (N, H, W)), plus strings / tuples that pass through. Random numbers come from
torch's global generator (DataLoader worker seeding).

Official pipeline (docs/RECIPES.md#horizontal-detection): train ``Resize(scale=(S, S), keep_ratio=True)`` →
``RandomFlip(0.5)`` (horizontal) → pack, then the data preprocessor normalises and pads to a multiple of 32;
test: the same resize with the annotations loaded after it (ground truth in original pixels).

Coordinate frame: pixel k covers [k, k + 1) (mmdet, torchvision): a resize by (sx, sy) maps x → sx·x and a
horizontal flip maps [x1, x2] → [W − x2, W − x1] (mmdet ``HorizontalBoxes.flip_``, torchvision
``F.horizontal_flip``; both exact). Boxes are clipped to the resized image after the resize, as mmdet's
``Resize(clip_object_border=True)`` does; masks are resized with nearest neighbour (mmdet ``BitmapMasks.rescale``
uses cv2 ``INTER_NEAREST``, which torchvision's ``NEAREST`` matches) and flipped with the image.

Per-sample metadata written here: ``"scale_factor"`` (sx, sy) = (new_w / w, new_h / h) after the integer
rounding of the new size (divide predicted x by sx and y by sy to get original pixels), ``"img_hw"`` (resized,
unpadded), ``"pad_hw"`` (after padding) and ``"flip"`` (bool).
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from mtp.data.transforms.rotated import PadToMultiple as _PadImageToMultiple
from mtp.data.transforms.rotated import _image_hw, _SampleTransform
from mtp.data.transforms.segmentation import Normalize, rescale_size

__all__ = [
    "PER_OBJECT_KEYS",
    "Normalize",
    "PadToMultiple",
    "RandomFlip",
    "ResizeKeepRatio",
    "build_detection_test_transform",
    "build_detection_train_transform",
]

PER_OBJECT_KEYS = ("labels", "masks")  # indexed together with "boxes"


def _check_boxes(boxes: Any) -> tv_tensors.BoundingBoxes:
    if not isinstance(boxes, tv_tensors.BoundingBoxes) or boxes.format != tv_tensors.BoundingBoxFormat.XYXY:
        raise TypeError(f"'boxes' must be tv_tensors.BoundingBoxes in XYXY format, got {type(boxes).__name__}")
    return boxes


def _wrap_boxes(boxes: tv_tensors.BoundingBoxes, data: torch.Tensor, hw: tuple[int, int]) -> tv_tensors.BoundingBoxes:
    return tv_tensors.wrap(data.to(boxes.dtype), like=boxes, canvas_size=(int(hw[0]), int(hw[1])))


class ResizeKeepRatio(_SampleTransform):
    """mmdet ``Resize(scale=(S, S), keep_ratio=True)``: factor f = min(S / long side, S / short side) = S / long
    side for a square scale; new size ``int(h·f + 0.5)`` × ``int(w·f + 0.5)`` (:func:`~mtp.data.transforms.segmentation.
    rescale_size`); image bilinear without antialiasing (cv2 ``INTER_LINEAR``), masks nearest.

    Records ``"scale_factor"`` = (new_w / w, new_h / h) (multiplied into an existing one) and ``"img_hw"``.
    With ``rescale_boxes`` (training) boxes are scaled by (sx, sy) then clipped to [0, new_w] × [0, new_h] and
    masks are resized; with ``rescale_boxes=False`` (the official val / test pipelines load annotations after
    the resize) both stay in original pixels.
    """

    def __init__(self, size: int = 800, rescale_boxes: bool = True) -> None:
        super().__init__()
        self.size = int(size)
        self.rescale_boxes = rescale_boxes

    def apply(self, sample: dict[str, Any]) -> dict[str, Any]:
        h, w = _image_hw(sample)
        nh, nw = rescale_size((h, w), (self.size, self.size))
        sx, sy = nw / w, nh / h
        if (nh, nw) != (h, w):
            sample["image"] = F.resize(
                sample["image"], [nh, nw], interpolation=v2.InterpolationMode.BILINEAR, antialias=False
            )
        old = sample.get("scale_factor", (1.0, 1.0))
        sample["scale_factor"] = (old[0] * sx, old[1] * sy)
        sample["img_hw"] = (nh, nw)
        if not self.rescale_boxes:
            return sample
        boxes = sample.get("boxes")
        if boxes is not None:
            _check_boxes(boxes)
            scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float64)
            data = boxes.as_subclass(torch.Tensor).to(torch.float64) * scale
            data[:, 0::2] = data[:, 0::2].clamp(0, nw)
            data[:, 1::2] = data[:, 1::2].clamp(0, nh)
            sample["boxes"] = _wrap_boxes(boxes, data, (nh, nw))
        masks = sample.get("masks")
        if isinstance(masks, torch.Tensor) and tuple(masks.shape[-2:]) != (nh, nw):
            if masks.shape[0] == 0:
                out = masks.as_subclass(torch.Tensor).new_zeros((0, nh, nw))
                sample["masks"] = tv_tensors.wrap(out, like=masks) if isinstance(masks, tv_tensors.Mask) else out
            else:
                sample["masks"] = F.resize(masks, [nh, nw], interpolation=v2.InterpolationMode.NEAREST)
        return sample


class RandomFlip(_SampleTransform):
    """mmdet ``RandomFlip(prob=p)`` (horizontal): with probability ``p`` flip the image, the boxes
    ([x1, x2] → [W − x2, W − x1], W = the boxes' canvas width) and the masks; records ``"flip"``."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = float(p)

    def apply(self, sample: dict[str, Any]) -> dict[str, Any]:
        flip = bool(torch.rand(()).item() < self.p)
        sample["flip"] = flip
        if not flip:
            return sample
        sample["image"] = F.horizontal_flip(sample["image"])
        if sample.get("boxes") is not None:
            sample["boxes"] = F.horizontal_flip(_check_boxes(sample["boxes"]))
        if isinstance(sample.get("masks"), torch.Tensor):
            sample["masks"] = F.horizontal_flip(sample["masks"])
        return sample


class PadToMultiple(_PadImageToMultiple):
    """Pad the image bottom/right with ``value`` (0, after :class:`Normalize`) up to multiples of ``divisor``
    (mmdet ``pad_size_divisor=32``) and masks of the image's size with 0. Records ``"img_hw"`` (before
    padding) and ``"pad_hw"``; boxes keep their values, their canvas grows. Masks / boxes in another frame
    (evaluation ground truth in original pixels) are left alone."""

    def apply(self, sample: dict[str, Any]) -> dict[str, Any]:
        h, w = _image_hw(sample)
        sample = super().apply(sample)
        ph, pw = sample["pad_hw"]
        masks = sample.get("masks")
        if isinstance(masks, torch.Tensor) and tuple(masks.shape[-2:]) == (h, w) and (ph, pw) != (h, w):
            out = torch.nn.functional.pad(masks.as_subclass(torch.Tensor), (0, pw - w, 0, ph - h), value=0)
            sample["masks"] = tv_tensors.wrap(out, like=masks) if isinstance(masks, tv_tensors.Mask) else out
        return sample


def build_detection_train_transform(size: int, flip_p: float = 0.5, divisor: int = 32) -> v2.Compose:
    """MTP's mmdet training pipeline: ``ResizeKeepRatio(size)`` → ``RandomFlip(0.5)`` → ``Normalize`` →
    ``PadToMultiple(32)``. Output: float32 normalised image (3, Hp, Wp), boxes / masks in resized pixels (masks
    padded like the image). ``size``: 800 (DIOR), 416 (xView)."""
    return v2.Compose([ResizeKeepRatio(size), RandomFlip(flip_p), Normalize(), PadToMultiple(divisor)])


def build_detection_test_transform(size: int, rescale_boxes: bool = False, divisor: int = 32) -> v2.Compose:
    """Evaluation pipeline: ``ResizeKeepRatio(size, rescale_boxes)`` → ``Normalize`` → ``PadToMultiple(32)``.
    By default the ground truth (boxes, masks) stays in original pixels (official pipeline); divide the
    predictions by ``"scale_factor"`` before comparing."""
    return v2.Compose([ResizeKeepRatio(size, rescale_boxes=rescale_boxes), Normalize(), PadToMultiple(divisor)])
