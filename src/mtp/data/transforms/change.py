"""Joint change-detection transforms (Open-CD ``MultiImg*`` semantics) on torchvision.transforms.v2.

Sample dicts (see :mod:`mtp.data.datasets.change_detection`) hold ``"image_a"`` / ``"image_b"``:
``tv_tensors.Image`` uint8 (3, H, W) RGB and ``"mask"``: ``tv_tensors.Mask`` int64 (H, W) 0/1/255. Geometric
transforms draw their parameters once per sample and apply them to A, B and the label together (the v2 rule
for all tv_tensors of a sample), so the three stay aligned.

Official recipe (docs/RECIPES.md#change-detection), for crop size ``c``:

* train: [OSCD: ``ResizeTo(224, keep_ratio=True, resize_mask=True)``] → :class:`RandomRotFlip` (rotate p 0.5
  within ±20°, otherwise flip p 0.5) → ``RandomCropCatMax(c, 0.75)`` → :class:`ExchangeTime` (p 0.5) →
  :class:`PerImage` (``PhotoMetricDistortion(10, (0.8, 1.2), (0.8, 1.2), 10)``, drawn independently for A and
  B) → ``Normalize`` → ``PadTo(c)`` (image 0, label 255) → :class:`StackPair`;
* val: image-only ``ResizeTo(c, keep_ratio=True)`` (labels stay at the original size) → ``Normalize`` →
  :class:`StackPair`; test: no resize (OSCD: resize 224) → ``Normalize`` → :class:`StackPair`.

:class:`StackPair` replaces A and B by ``"image"`` = cat(A, B) float32 (6, H, W), the official 6-channel
input; :func:`split_pair` undoes it. Random numbers come from torch's global generator (worker seeding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from mtp.data.transforms.photometric import PhotoMetricDistortion
from mtp.data.transforms.segmentation import Normalize, PadTo, RandomCropCatMax, ResizeTo

__all__ = [
    "ExchangeTime",
    "PerImage",
    "RandomRotFlip",
    "StackPair",
    "build_change_eval_transform",
    "build_change_train_transform",
    "split_pair",
]

PAIR_KEYS = ("image_a", "image_b")


class RandomRotFlip(v2.Transform):
    """Open-CD ``MultiImgRandomRotFlip`` (mmseg ``RandomRotFlip`` on every image and the label).

    With probability ``rotate_prob``: rotation by an angle uniform in ``degree`` about the centre, same size
    (images bilinear, label nearest; the uncovered corners are 0 = black / unchanged, mmcv's default border).
    Otherwise, with probability ``flip_prob``: ``rot90`` by ``k`` in {0, 1, 2, 3} quarter turns, then a flip
    along a random axis (rows or columns).
    """

    def __init__(
        self, rotate_prob: float = 0.5, flip_prob: float = 0.5, degree: tuple[float, float] = (-20.0, 20.0)
    ) -> None:
        super().__init__()
        self.rotate_prob, self.flip_prob = float(rotate_prob), float(flip_prob)
        self.degree = (float(min(degree)), float(max(degree)))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"angle": None, "k": None, "axis": None}
        if torch.rand(()).item() < self.rotate_prob:
            lo, hi = self.degree
            params["angle"] = lo + (hi - lo) * torch.rand(()).item()
        elif torch.rand(()).item() < self.flip_prob:
            params["k"] = int(torch.randint(0, 4, ()).item())
            params["axis"] = int(torch.randint(0, 2, ()).item())
        return params

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        if params["angle"] is not None:
            nearest = isinstance(inpt, tv_tensors.Mask)
            mode = v2.InterpolationMode.NEAREST if nearest else v2.InterpolationMode.BILINEAR
            return F.rotate(inpt, params["angle"], interpolation=mode, expand=False, fill=0)
        if params["k"] is not None:
            out = torch.rot90(inpt.as_subclass(torch.Tensor), params["k"], dims=(-2, -1))
            out = out.flip(-2 if params["axis"] == 0 else -1)
            return tv_tensors.wrap(out.contiguous(), like=inpt)
        return inpt


class ExchangeTime(v2.Transform):
    """Open-CD ``MultiImgExchangeTime``: swap ``image_a`` and ``image_b`` (and their paths) with probability ``p``;
    the change label is symmetric and stays."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, *inputs: Any) -> Any:
        sample = inputs[0] if len(inputs) == 1 else inputs
        if not isinstance(sample, dict) or not all(k in sample for k in PAIR_KEYS):
            raise TypeError("ExchangeTime expects a sample dict with 'image_a' and 'image_b'")
        if torch.rand(()).item() < self.p:
            sample = dict(sample)
            sample["image_a"], sample["image_b"] = sample["image_b"], sample["image_a"]
            if "image_b_path" in sample:
                sample["image_path"], sample["image_b_path"] = sample["image_b_path"], sample["image_path"]
        return sample


class PerImage(v2.Transform):
    """Apply ``transform`` separately to each of ``keys`` (its random parameters drawn once per image), as
    Open-CD's ``MultiImgPhotoMetricDistortion`` loops over the images. Other entries pass through."""

    def __init__(self, transform: v2.Transform, keys: Sequence[str] = PAIR_KEYS) -> None:
        super().__init__()
        self.inner, self.keys = transform, tuple(keys)

    def forward(self, *inputs: Any) -> Any:
        sample = inputs[0] if len(inputs) == 1 else inputs
        if not isinstance(sample, dict):
            raise TypeError("PerImage expects a sample dict")
        return {k: (self.inner(v) if k in self.keys else v) for k, v in sample.items()}


class StackPair(v2.Transform):
    """Replace ``image_a`` / ``image_b`` (3, H, W) by ``image`` = cat([A, B]) (6, H, W), a plain tensor."""

    def forward(self, *inputs: Any) -> Any:
        sample = dict(inputs[0] if len(inputs) == 1 else inputs)
        a, b = (sample.pop(k).as_subclass(torch.Tensor) for k in PAIR_KEYS)
        sample["image"] = torch.cat([a, b], dim=0)
        return sample


def split_pair(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, 6, H, W) stacked pair -> images A and B (…, 3, H, W)."""
    return images.chunk(2, dim=-3)  # type: ignore[return-value]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def build_change_train_transform(
    crop_size: int | Sequence[int] = (256, 256),
    cat_max_ratio: float = 0.75,
    rotate_prob: float = 0.5,
    flip_prob: float = 0.5,
    degree: tuple[float, float] = (-20.0, 20.0),
    exchange_prob: float = 0.5,
    photometric: bool = True,
    resize_to: int | Sequence[int] | None = None,
    ignore_index: int = 255,
) -> v2.Compose:
    """The official Open-CD training pipeline (module docstring). ``resize_to=224`` for OSCD.

    Output sample: ``"image"`` float32 (6, c_h, c_w) normalised A‖B, ``"mask"`` int64 (c_h, c_w), padding 255.
    """
    crop = _pair(crop_size)
    steps: list[v2.Transform] = []
    if resize_to is not None:
        steps.append(ResizeTo(resize_to, keep_ratio=True, resize_mask=True))
    steps += [
        RandomRotFlip(rotate_prob, flip_prob, degree),
        RandomCropCatMax(crop, cat_max_ratio=cat_max_ratio, ignore_index=ignore_index),
        ExchangeTime(exchange_prob),
    ]
    if photometric:
        steps.append(PerImage(PhotoMetricDistortion(10, (0.8, 1.2), (0.8, 1.2), 10)))
    steps += [Normalize(), PadTo(crop, image_value=0.0, mask_value=ignore_index), StackPair()]
    return v2.Compose(steps)


def build_change_eval_transform(resize_to: int | Sequence[int] | None = None) -> v2.Compose:
    """Evaluation: optional image-only keep-ratio resize (labels stay at their size), ``Normalize``, stack."""
    steps: list[v2.Transform] = []
    if resize_to is not None:
        steps.append(ResizeTo(resize_to, keep_ratio=True, resize_mask=False))
    return v2.Compose([*steps, Normalize(), StackPair()])
