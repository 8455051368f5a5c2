"""DCNv3 sampling geometry and the small helpers shared by both paths (see :mod:`mtp.ops.dcnv3`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DCNv3Geometry", "autocast_off", "compute_dtype", "pair", "xy_tensor"]


def pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """``value`` as an (h, w) pair of ints."""
    both = (value, value) if isinstance(value, int) else tuple(value)
    if len(both) != 2 or not all(isinstance(v, int) for v in both):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return both  # type: ignore[return-value]


@dataclass(frozen=True)
class DCNv3Geometry:
    """Sampling geometry; pairs are (h, w) and ``pad`` is the official (pad_h, pad_w)."""

    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    group: int = 1
    offset_scale: float = 1.0
    remove_center: bool = False

    def __post_init__(self) -> None:
        if min(*self.kernel, *self.stride, *self.dilation, self.group) < 1 or min(self.pad) < 0:
            raise ValueError(f"invalid DCNv3 geometry {self}")
        kh, kw = self.kernel
        if self.remove_center and (kh != kw or kh % 2 == 0):
            raise ValueError("remove_center needs a square kernel of odd size (official rule)")

    @property
    def num_points(self) -> int:
        return self.kernel[0] * self.kernel[1] - int(self.remove_center)

    @property
    def frame_pad(self) -> tuple[int, int]:
        """(rows, columns) of zero padding the official core adds: (pad_w, pad_h)."""
        return self.pad[1], self.pad[0]

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw), (ph, pw) = self.kernel, self.stride, self.dilation, self.frame_pad
        return (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1, (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1

    def kernel_points(self, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """(P, 2) kernel offsets (x, y) in pixels, official order p = ix*kh + iy (built on ``device``)."""
        (kh, kw), (dh, dw) = self.kernel, self.dilation
        xs = torch.arange(kw, device=device, dtype=dtype) * dw - (dw * (kw - 1)) // 2
        ys = torch.arange(kh, device=device, dtype=dtype) * dh - (dh * (kh - 1)) // 2
        points = torch.stack((xs.repeat_interleave(kh), ys.repeat(kw)), -1)  # x outer, y inner
        if self.remove_center:
            centre = (kh * kw - 1) // 2
            points = torch.cat((points[:centre], points[centre + 1 :]))
        return points

    def base_locations(
        self, ho: int, wo: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """(2, Ho, Wo, P) sampling locations (x; y) with zero offsets, input-frame pixels."""
        (kh, kw), (sh, sw), (dh, dw), (ph, pw) = self.kernel, self.stride, self.dilation, self.frame_pad
        points = self.kernel_points(device, dtype) * self.offset_scale
        xs = torch.arange(wo, device=device, dtype=dtype) * sw + ((dw * (kw - 1)) // 2 - pw)
        ys = torch.arange(ho, device=device, dtype=dtype) * sh + ((dh * (kh - 1)) // 2 - ph)
        x = xs.view(1, wo, 1) + points[:, 0]
        y = ys.view(ho, 1, 1) + points[:, 1]
        return torch.stack(torch.broadcast_tensors(x, y), 0)


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast disabled on ``device`` (a no-op where autocast does not exist, e.g. meta)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def compute_dtype(value: Tensor) -> torch.dtype:
    """Locations and the fp32 arithmetic (backward, reference path): float64 for float64 inputs, else float32."""
    return torch.float64 if value.dtype == torch.float64 else torch.float32


def xy_tensor(x: float, y: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Tensor [x, y] made on ``device`` (fill kernels, no host-to-device copy and so no sync)."""
    return torch.stack((torch.full((), x, device=device, dtype=dtype), torch.full((), y, device=device, dtype=dtype)))
