"""Semantic-segmentation inference: whole image, sliding window, test-time augmentation.

Follows the official (mmseg 1.x ``EncoderDecoder``) rules, docs/EVALUATION.md#segmentation-inference:

* **whole**: one forward of the (padded) image; logits are resized bilinearly (``align_corners=False``)
  to the padded size and the padding is cropped away.
* **slide**: ``n = max(H - hc + hs - 1, 0) // hs + 1`` windows per axis; window ``i`` starts at ``i * hs``
  and the last one is snapped to the border, so windows are smaller than the crop only where the image
  is. Logits of every window are added into a full-size float32 buffer and divided by the number of
  windows covering each pixel (no Gaussian weighting).
* **TTA**: the official ``aug_test`` (not functional as released, and unused by the configs) meant to sum
  the logits of the augmented copies and divide by their number. That is our default
  (``average='logits'``); ``average='probs'`` averages softmax (sigmoid for one class) probabilities
  instead and returns their log (logit for one class), so the result is still a logit tensor whose
  softmax is the averaged probability.

Conventions: a ``model`` is any callable mapping a normalised image batch (B, C, H, W) float to logits
(B, K, h, w) at some lower resolution (e.g. stride 4); C is not restricted (change detection stacks two
images into 6 channels). Padding happens after normalisation, with ``pad_value`` (0 = the mean colour),
at the bottom/right. Results are float32 logits (B, K, H, W) at the input size. These functions do not
change the grad mode or ``model.train()/eval()``; :func:`predict_segmentation` runs under ``no_grad``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Model = Callable[[Tensor], Tensor]

__all__ = [
    "TTAConfig",
    "predict_segmentation",
    "predict_segmentation_list",
    "slide_inference",
    "slide_windows",
    "tta_inference",
    "whole_inference",
]


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    a, b = (v, v) if isinstance(v, int) else tuple(v)
    if a <= 0 or b <= 0:
        raise ValueError(f"{name} must be positive, got {v}")
    return int(a), int(b)


def _check_images(images: Tensor) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _run_padded(model: Model, x: Tensor, size_divisor: int, pad_value: float) -> Tensor:
    """Pad bottom/right to a multiple of ``size_divisor``, run, resize logits to the padded size, crop."""
    h, w = x.shape[-2:]
    ph, pw = -h % size_divisor, -w % size_divisor
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), value=pad_value)
    logits = model(x)
    if logits.ndim != 4 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"model must return (B, K, h, w) logits for B={x.shape[0]}, got {tuple(logits.shape)}")
    logits = _resize(logits.float(), (h + ph, w + pw))
    return logits[..., :h, :w]


def whole_inference(model: Model, images: Tensor, *, size_divisor: int = 32, pad_value: float = 0.0) -> Tensor:
    """Logits (B, K, H, W) of one forward over the whole batch, padded to a multiple of ``size_divisor``."""
    _check_images(images)
    return _run_padded(model, images, size_divisor, pad_value)


def _axis_starts(size: int, crop: int, stride: int) -> list[int]:
    n = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(n)]


def slide_windows(
    h: int, w: int, crop: int | Sequence[int], stride: int | Sequence[int]
) -> list[tuple[int, int, int, int]]:
    """Official sliding windows ``(y1, y2, x1, x2)`` (row-major) for an ``h`` x ``w`` image.

    ``crop`` / ``stride`` are ``(hc, wc)`` / ``(hs, ws)`` (or one int for both). Every window has size
    ``(min(hc, h), min(wc, w))``. With ``stride > crop`` the windows may leave gaps (the official code
    asserts at inference time; so does :func:`slide_inference`).
    """
    hc, wc = _pair(crop, "crop")
    hs, ws = _pair(stride, "stride")
    return [
        (y1, min(y1 + hc, h), x1, min(x1 + wc, w)) for y1 in _axis_starts(h, hc, hs) for x1 in _axis_starts(w, wc, ws)
    ]


def _coverage(size: int, starts: list[int], crop: int) -> list[int]:
    count = [0] * size
    for s in starts:
        for i in range(s, min(s + crop, size)):
            count[i] += 1
    return count


def slide_inference(
    model: Model,
    images: Tensor,
    *,
    crop: int | Sequence[int] = (512, 512),
    stride: int | Sequence[int] = (384, 384),
    num_classes: int | None = None,
    size_divisor: int = 16,
    batch_windows: int = 8,
    pad_value: float = 0.0,
    pad_to_crop: bool = False,
) -> Tensor:
    """Sliding-window logits (B, K, H, W), averaged where windows overlap.

    Each window crop is padded (bottom/right) to a multiple of ``size_divisor`` (and, with ``pad_to_crop``,
    up to the full crop size, for backbones that only accept the size they were built for), run, resized
    to the padded size and cropped back. All windows share one size, so ``batch_windows`` crops (but at
    least one window of every image in the batch) go through each forward. ``num_classes`` is taken
    from the first forward when not given. Coverage is checked on the host from the window geometry; the
    loop itself issues no device-to-host syncs.
    """
    _check_images(images)
    b, _, h, w = images.shape
    hc, wc = _pair(crop, "crop")
    hs, ws = _pair(stride, "stride")
    ys, xs = _axis_starts(h, hc, hs), _axis_starts(w, wc, ws)
    row_cnt, col_cnt = _coverage(h, ys, hc), _coverage(w, xs, wc)
    if min(row_cnt) == 0 or min(col_cnt) == 0:
        raise AssertionError(f"sliding windows (crop {(hc, wc)}, stride {(hs, ws)}) leave pixels uncovered")
    windows = slide_windows(h, w, (hc, wc), (hs, ws))
    ch, cw = min(hc, h), min(wc, w)
    pad_b, pad_r = (hc - ch, wc - cw) if pad_to_crop else (0, 0)
    per_forward = max(1, batch_windows // b)

    logits_sum: Tensor | None = None
    for start in range(0, len(windows), per_forward):
        group = windows[start : start + per_forward]
        crops = torch.cat([images[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in group])
        if pad_b or pad_r:
            crops = F.pad(crops, (0, pad_r, 0, pad_b), value=pad_value)
        out = _run_padded(model, crops, size_divisor, pad_value)[..., :ch, :cw]
        out = out.reshape(len(group), b, *out.shape[1:])
        if logits_sum is None:
            k = out.shape[2]
            if num_classes is not None and k != num_classes:
                raise ValueError(f"model returned {k} classes, expected num_classes={num_classes}")
            logits_sum = images.new_zeros((b, k, h, w), dtype=torch.float32)
        for (y1, y2, x1, x2), o in zip(group, out, strict=True):
            logits_sum[:, :, y1:y2, x1:x2] += o
    assert logits_sum is not None
    rows = torch.tensor(row_cnt, dtype=torch.float32).to(images.device, non_blocking=True)
    cols = torch.tensor(col_cnt, dtype=torch.float32).to(images.device, non_blocking=True)
    return logits_sum.div_(rows[:, None] * cols[None, :])


@dataclass(frozen=True)
class TTAConfig:
    """Test-time augmentation: every scale, each with the unflipped image and (if ``flip``) flipped copies.

    ``flip_direction``: 'horizontal' (mirror W), 'vertical' (mirror H) or 'both' (one horizontal and one
    vertical copy, i.e. 3 copies per scale, as mmseg's flip_direction=['horizontal', 'vertical']).
    ``average``: 'logits' (the official aug_test intent: mean of logits) or 'probs' (mean of softmax
    probabilities, returned as their log so the output stays a logit tensor).
    """

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    flip_direction: Literal["horizontal", "vertical", "both"] = "horizontal"
    average: Literal["logits", "probs"] = "logits"

    def __post_init__(self) -> None:
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be a non-empty tuple of positive floats, got {self.scales}")
        if self.flip_direction not in ("horizontal", "vertical", "both"):
            raise ValueError(f"unknown flip_direction {self.flip_direction!r}")
        if self.average not in ("logits", "probs"):
            raise ValueError(f"unknown average {self.average!r}")

    def flip_dims(self) -> list[tuple[int, ...]]:
        """Dims to flip for each copy; ``()`` is the unflipped image."""
        if not self.flip:
            return [()]
        dims = {"horizontal": [(-1,)], "vertical": [(-2,)], "both": [(-1,), (-2,)]}[self.flip_direction]
        return [(), *dims]


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """Size of an ``h`` x ``w`` image rescaled by ``scale`` (ratio kept, rounded half up, at least 1)."""
    return max(int(h * scale + 0.5), 1), max(int(w * scale + 0.5), 1)


def tta_inference(infer: Model, images: Tensor, tta: TTAConfig) -> Tensor:
    """Average of ``infer`` over the scales/flips of ``tta``; logits (B, K, H, W) at the input size.

    ``infer(images)`` returns logits at the size of the images it is given (e.g. a ``functools.partial`` of
    :func:`whole_inference` or :func:`slide_inference`). Each copy: resize the image (bilinear,
    ``align_corners=False``), flip, infer, un-flip, resize the logits back to (H, W).
    """
    _check_images(images)
    h, w = images.shape[-2:]
    total: Tensor | None = None
    n = 0
    for scale in tta.scales:
        scaled = _resize(images, scaled_size(h, w, scale))
        for dims in tta.flip_dims():
            x = scaled.flip(dims) if dims else scaled
            logits = infer(x).float()
            if dims:
                logits = logits.flip(dims)
            logits = _resize(logits, (h, w))
            if tta.average == "probs":
                logits = logits.sigmoid() if logits.shape[1] == 1 else logits.softmax(1)
            total = logits if total is None else total + logits
            n += 1
    assert total is not None
    mean = total / n
    if tta.average == "probs":
        eps = torch.finfo(mean.dtype).tiny
        mean = torch.logit(mean, eps=1e-7) if mean.shape[1] == 1 else mean.clamp_min(eps).log()
    return mean


def labels_from_logits(logits: Tensor, threshold: float = 0.5) -> Tensor:
    """Class map (B, H, W) int64: argmax over classes; for one class, ``sigmoid(logits) > threshold``."""
    if logits.shape[1] == 1:
        return (logits[:, 0].sigmoid() > threshold).long()
    return logits.argmax(1)


def predict_segmentation(
    model: Model,
    images: Tensor,
    *,
    mode: Literal["whole", "slide"] = "whole",
    crop: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    tta: TTAConfig | None = None,
    size_divisor: int | None = None,
    batch_windows: int = 8,
    threshold: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """``(logits (B, K, H, W) float32, labels (B, H, W) int64)`` under ``torch.no_grad``.

    ``mode='slide'`` uses ``crop``/``stride`` (defaults (512, 512)/(384, 384)); ``size_divisor`` defaults to
    32 for whole and 16 for slide. ``tta`` wraps either mode. Labels: :func:`labels_from_logits`.
    """
    if mode == "whole":
        if crop is not None or stride is not None:
            raise ValueError("crop/stride are only used with mode='slide'")

        def infer(x: Tensor) -> Tensor:
            return whole_inference(model, x, size_divisor=size_divisor or 32)

    elif mode == "slide":
        kw = {"crop": crop or (512, 512), "stride": stride or (384, 384)}

        def infer(x: Tensor) -> Tensor:
            return slide_inference(model, x, size_divisor=size_divisor or 16, batch_windows=batch_windows, **kw)

    else:
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    with torch.no_grad():
        logits = infer(images) if tta is None else tta_inference(infer, images, tta)
    return logits, labels_from_logits(logits, threshold)


def predict_segmentation_list(model: Model, images: Sequence[Tensor], **kwargs) -> tuple[list[Tensor], list[Tensor]]:
    """:func:`predict_segmentation` for images (C, H, W) of different sizes, one by one.

    Returns ``(logits list of (K, H, W), labels list of (H, W))``; ``kwargs`` go to
    :func:`predict_segmentation`.
    """
    all_logits, all_labels = [], []
    for image in images:
        if image.ndim != 3:
            raise ValueError(f"each image must be (C, H, W), got shape {tuple(image.shape)}")
        logits, labels = predict_segmentation(model, image[None], **kwargs)
        all_logits.append(logits[0])
        all_labels.append(labels[0])
    return all_logits, all_labels
