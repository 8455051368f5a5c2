"""Scene-classification transforms: the official (mmpretrain) pipelines, built with timm.

Official recipe (docs/RECIPES.md#classification), from ``timm.data.create_transform`` on PIL RGB images:

* train: RandomResizedCrop ``img_size`` (scale 0.08-1, ratio 3/4-4/3, bicubic) -> horizontal flip 0.5 ->
  RandAugment ``'rand-m9-n2-mstd0.5-inc1'`` (2 ops, magnitude 9, std 0.5, the "increasing" op set,
  bicubic, fill = the mean colour) -> to tensor + normalise -> RandomErasing (p 0.25, area 0.02-1/3, per-pixel
  normal noise: timm ``re_mode='pixel'``, which is the official mmpretrain ``RandomErasing(mode='rand',
  fill_color=mean, fill_std=std)`` after normalisation — a value drawn per pixel and channel; timm's ``'rand'``
  would draw one colour per channel for the whole box);
* val / test / predict: resize the short edge to ``img_size / crop_pct`` (256 for 224) bicubic -> centre
  crop ``img_size`` -> to tensor + normalise.

Normalisation: mean (123.675, 116.28, 103.53) / 255, std (58.395, 57.12, 57.375) / 255
(docs/CONVENTIONS.md#images-and-normalisation).

"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image, ImageOps
from timm.data import create_transform

__all__ = ["MEAN", "STD", "build_eval_transform", "build_train_transform"]

MEAN = (123.675 / 255, 116.28 / 255, 103.53 / 255)
STD = (58.395 / 255, 57.12 / 255, 57.375 / 255)


def build_train_transform(
    img_size: int = 224,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    hflip: float = 0.5,
    auto_augment: str | None = "rand-m9-n2-mstd0.5-inc1",
    re_prob: float = 0.25,
    re_mode: str = "pixel",
    interpolation: str = "bicubic",
) -> Callable:
    """PIL RGB image -> normalised float (3, img_size, img_size) with the official training augmentation."""
    transform = create_transform(
        img_size,
        is_training=True,
        scale=tuple(scale),
        ratio=(3 / 4, 4 / 3),
        hflip=hflip,
        vflip=0.0,
        color_jitter=None,
        auto_augment=auto_augment,
        interpolation=interpolation,
        mean=MEAN,
        std=STD,
        re_prob=re_prob,
        re_mode=re_mode,
        re_count=1,
    )
    for step in getattr(transform, "transforms", []):
        for op in getattr(step, "ops", []):  # timm RandAugment ops
            if op.name.startswith("Posterize"):
                op.aug_fn = _posterize
    return transform


def _posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize with the ``bits_to_keep == 0`` case (magnitude 10 of 'PosterizeIncreasing', reached
    with mstd 0.5) giving the black image older pillow gave; recent pillow (13) raises on 0 bits."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point([0] * 256 * len(img.getbands()))
    return ImageOps.posterize(img, bits_to_keep)


def build_eval_transform(img_size: int = 224, *, crop_pct: float = 224 / 256, interpolation: str = "bicubic"):
    """PIL RGB image -> resize short edge to img_size / crop_pct -> centre crop -> normalised float tensor."""
    return create_transform(
        img_size, is_training=False, interpolation=interpolation, crop_pct=crop_pct, mean=MEAN, std=STD
    )
