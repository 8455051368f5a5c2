"""mmseg-style ``PhotoMetricDistortion`` on uint8 RGB images (torchvision.transforms.v2 compatible).

The official segmentation recipes (docs/RECIPES.md#segmentation) apply, in this order:

1. brightness (p 0.5): ``img + U(-brightness_delta, brightness_delta)``;
2. ``mode = randint(2)``; if ``mode == 1``: contrast (p 0.5): ``img * U(contrast_range)``;
3. saturation (p 0.5): the S channel of the OpenCV HSV image times ``U(saturation_range)``;
4. hue (p 0.5): ``(H + randint(-hue_delta, hue_delta)) mod 180`` on the OpenCV 8-bit hue (0..179);
   ``randint``'s upper bound is exclusive, as in numpy / torch;
5. if ``mode == 0``: contrast (p 0.5) last.

Every step works in float32, clips to [0, 255] and truncates back to uint8, so the image stays uint8
between steps. The images here are RGB, so the HSV round trips use ``cv2.COLOR_RGB2HSV`` /
``COLOR_HSV2RGB`` (the official code is BGR with BGR2HSV: the same operation). Random numbers come from
torch's global generator (``torch.rand`` / ``torch.randint``), so DataLoader worker seeding and
``torch.manual_seed`` control them. Masks, boxes and other entries of the sample pass through unchanged.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["PhotoMetricDistortion"]


def _uniform(low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand(()).item())


def _coin() -> bool:
    """``randint(2) == 1``: probability 0.5."""
    return bool(torch.randint(0, 2, ()).item())


def _convert(x: torch.Tensor, alpha: float = 1.0, beta: float = 0.0) -> torch.Tensor:
    """``uint8(clip(x * alpha + beta, 0, 255))`` with truncation, as the official ``convert``."""
    return (x.to(torch.float32) * alpha + beta).clamp_(0.0, 255.0).to(torch.uint8)


class PhotoMetricDistortion(v2.Transform):
    """Random brightness, contrast, saturation and hue on ``tv_tensors.Image`` uint8 (3, H, W) RGB.

    Plain tensors are treated as the image only when the sample holds no ``tv_tensors.Image`` (the v2
    rule); ``tv_tensors.Mask`` and everything else is returned untouched. All random draws happen once per
    call in :meth:`make_params`, so several images in one sample get the same distortion.
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> None:
        super().__init__()
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        p: dict[str, Any] = {"beta": None, "alpha": None, "sat": None, "hue": None}
        if _coin():
            p["beta"] = _uniform(-self.brightness_delta, self.brightness_delta)
        p["contrast_first"] = _coin()  # mode == 1
        if p["contrast_first"] and _coin():
            p["alpha"] = _uniform(*self.contrast_range)
        if _coin():
            p["sat"] = _uniform(*self.saturation_range)
        if _coin():
            p["hue"] = int(torch.randint(-self.hue_delta, self.hue_delta, ()).item())
        if not p["contrast_first"] and _coin():
            p["alpha"] = _uniform(*self.contrast_range)
        return p

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.TVTensor) and not isinstance(inpt, tv_tensors.Image):
            return inpt  # masks, boxes, ...
        if inpt.dtype != torch.uint8 or inpt.ndim != 3 or inpt.shape[0] != 3:
            raise ValueError(
                f"PhotoMetricDistortion expects a uint8 (3, H, W) RGB image, got {inpt.dtype} {tuple(inpt.shape)}"
            )
        img = inpt.as_subclass(torch.Tensor)
        if params["beta"] is not None:
            img = _convert(img, beta=params["beta"])
        if params["contrast_first"] and params["alpha"] is not None:
            img = _convert(img, alpha=params["alpha"])
        if params["sat"] is not None or params["hue"] is not None:
            img = self._hsv(img, params["sat"], params["hue"])
        if not params["contrast_first"] and params["alpha"] is not None:
            img = _convert(img, alpha=params["alpha"])
        return tv_tensors.wrap(img, like=inpt) if isinstance(inpt, tv_tensors.Image) else img

    @staticmethod
    def _hsv(img: torch.Tensor, sat: float | None, hue: int | None) -> torch.Tensor:
        """Saturation then hue, each on its own RGB→HSV→RGB round trip (as the official code)."""
        arr = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
        if sat is not None:
            hsv = cv2.cvtColor(arr, cv2.COLOR_RGB2HSV)
            s = hsv[:, :, 1].astype(np.float32) * sat
            hsv[:, :, 1] = np.clip(s, 0, 255).astype(np.uint8)
            arr = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if hue is not None:
            hsv = cv2.cvtColor(arr, cv2.COLOR_RGB2HSV)
            hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int64) + hue) % 180).astype(np.uint8)
            arr = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()

    def extra_repr(self) -> str:
        return (
            f"brightness_delta={self.brightness_delta}, contrast_range={self.contrast_range}, "
            f"saturation_range={self.saturation_range}, hue_delta={self.hue_delta}"
        )
