"""Rotated RoIAlign and the rotated single-level RoI extractor of Oriented R-CNN.

Hand-written: no maintained library (torchvision, kornia, timm, detectron2's pure-PyTorch paths) ships a
rotated RoIAlign, and the original lives in mmcv's C++/CUDA extension, which we do not depend on. This
module re-implements the *semantics* of mmcv 2.0's ``RoIAlignRotated`` kernel
(docs/CONVENTIONS.md#rotated-iou-nms-and-roialign) with ``torch.nn.functional.grid_sample``; no mmcv code is copied.

Conventions
-----------
* RoIs are ``(K, 6)`` rows ``[batch_index, cx, cy, w, h, theta]`` in input-image pixels, θ in radians,
  image frame (x right, y down); the w side runs along (cos θ, sin θ) (docs/CONVENTIONS.md#frame-and-angle).
* Output ``(K, C, oh, ow)``: columns run along the box's w direction, rows along its h direction, so the
  result depends on the exact (w, h, θ) form — (h, w, θ + π/2) is the same rectangle but gives a
  rotated grid (hence the strict le90 regularisation upstream).

Sampling semantics (mmcv 2.0, per RoI, feature level of size H×W, scale s)
--------------------------------------------------------------------------
1. centre ``c' = (cx·s − o, cy·s − o)`` with ``o = 0.5`` if ``aligned`` else 0; size ``(w·s, h·s)``,
   clamped to ≥ 1 only when ``aligned`` is False;
2. ``sr × sr`` samples per bin at local offsets ``xx = −w'/2 + pw·w'/ow + (ix + ½)·w'/(ow·sr)`` (same for
   y with ph, iy, h', oh);
3. ``clockwise=True``: ``x = c'x + xx·cos θ − yy·sin θ``, ``y = c'y + xx·sin θ + yy·cos θ``;
   ``clockwise=False`` uses −θ;
4. bilinear with the mmcv border rule: a sample is 0 if ``y < −1``, ``y > H``, ``x < −1`` or ``x > W``;
   otherwise the coordinates are clamped into ``[0, H−1] × [0, W−1]`` and interpolated (so inside
   (−1, 0] the edge pixel counts at full weight);
5. the bin value is the plain mean of its ``sr²`` samples (zeros included).

Implementation
--------------
The sample coordinates are clamped here (rule 4), normalised with ``align_corners=True`` and sampled with
``grid_sample(mode='bilinear', padding_mode='zeros')``; invalid samples are sent far off the map so the
zero padding yields exactly 0, which folds the validity mask into the sampling (no extra pass over the
``sr²``-times-larger sample tensor). Because the clamped coordinates already lie inside the map, this equals
the ``padding_mode='border'`` + validity-mask recipe; maps with H == 1 or W == 1 (where ``align_corners=True``
maps every grid value to pixel 0) use the explicit mask instead. The grid is laid out bin-major, so the
``sr²`` samples of a bin are adjacent and the bin mean is a reduction over the last dimension.

RoIs are grouped by (level, image) with one host sync (a ``bincount(...).tolist()``, which also validates
the batch indices), and all RoIs of a group are sampled by a single ``grid_sample`` call on that image's
map, their grids stacked along the grid's H dimension ``(1, n·oh·ow, sr², 2)`` (no per-RoI copies of the
features); the results are scattered back into RoI order with ``index_copy_``. With a single image and a
single level there is no host sync at all. On CPU each map is made channels-last first (faster
``grid_sample``).

The grid is computed in float32 (float64 when the features are float64); float32/float64 features are
sampled as they are, other dtypes (bf16/fp16 under autocast) are sampled in float32 and the output is cast
back to the feature dtype. Gradients flow to the features only; RoIs are treated as constants (detached).
Peak memory per group is the sample tensor, C·n·oh·ow·sr² values (4x the output for sr = 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RoIAlignRotated", "RotatedRoIExtractor", "roi_align_rotated"]

# Normalised grid value used for invalid samples: far enough outside [-1, 1] that bilinear sampling with
# zero padding returns exactly 0 for every map size >= 2 (pixel = (g + 1) / 2 * (size - 1) <= -2).
_OFF_MAP = -5.0


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    oh, ow = size
    return int(oh), int(ow)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _prepare_map(feature: Tensor, dtype: torch.dtype) -> Tensor:
    """One image's map in the sampling dtype; channels-last on CPU (one copy, fused with any cast).

    PyTorch's CPU ``grid_sample`` reads a channels-last input ~3.5x faster (forward, 256 channels, measured);
    on CUDA the contiguous NCHW layout is kept (adjacent threads then read nearby pixels of one plane).
    """
    if feature.device.type == "cpu":
        return feature.to(dtype=dtype, memory_format=torch.channels_last)
    return feature.to(dtype)


def _sample_coordinates(
    rois: Tensor,
    spatial_scale: float | Tensor,
    output_size: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
    clockwise: bool,
) -> tuple[Tensor, Tensor]:
    """Feature-pixel coordinates (x, y) of every sample, each (n, oh·sr, ow·sr), in ``rois.dtype``.

    Sample column j = pw·sr + ix (row i = ph·sr + iy) belongs to output bin (ph, pw).
    """
    oh, ow = output_size
    sr = sampling_ratio
    offset = 0.5 if aligned else 0.0
    cx = rois[:, 1] * spatial_scale - offset
    cy = rois[:, 2] * spatial_scale - offset
    w = rois[:, 3] * spatial_scale
    h = rois[:, 4] * spatial_scale
    if not aligned:
        w = w.clamp_min(1.0)
        h = h.clamp_min(1.0)
    theta = rois[:, 5] if clockwise else -rois[:, 5]
    bin_w = (w / ow)[:, None]
    bin_h = (h / oh)[:, None]
    # Bin index and in-bin sample index of every sample column/row.
    jw = torch.arange(ow * sr, device=rois.device)
    jh = torch.arange(oh * sr, device=rois.device)
    pw, ix = (jw // sr).to(rois.dtype), (jw % sr).to(rois.dtype) + 0.5
    ph, iy = (jh // sr).to(rois.dtype), (jh % sr).to(rois.dtype) + 0.5
    xx = (-0.5 * w)[:, None] + pw * bin_w + ix * (bin_w / sr)  # (n, ow·sr)
    yy = (-0.5 * h)[:, None] + ph * bin_h + iy * (bin_h / sr)  # (n, oh·sr)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    xx, yy = xx[:, None, :], yy[:, :, None]
    x = cx[:, None, None] + xx * cos - yy * sin
    y = cy[:, None, None] + xx * sin + yy * cos
    return x, y


def _align_one_map(
    feature: Tensor,
    rois: Tensor,
    spatial_scale: float,
    output_size: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
    clockwise: bool,
) -> Tensor:
    """All ``rois`` on one image's map ``feature`` (1, C, H, W) -> (C, n, oh, ow) in ``feature.dtype``."""
    _, c, height, width = feature.shape
    n = rois.shape[0]
    oh, ow = output_size
    sr = sampling_ratio
    x, y = _sample_coordinates(rois, spatial_scale, output_size, sr, aligned, clockwise)
    valid = (x >= -1.0) & (x <= width) & (y >= -1.0) & (y <= height)
    # Divide (not multiply by 2 / (size - 1)) so the clamped edges map exactly to -1 and 1.
    gx = x.clamp(0.0, width - 1) / max(width - 1, 1) * 2.0 - 1.0
    gy = y.clamp(0.0, height - 1) / max(height - 1, 1) * 2.0 - 1.0
    degenerate = height == 1 or width == 1
    if not degenerate:
        gx = torch.where(valid, gx, _OFF_MAP)
    # Bin-major grid: the sr² samples of one bin are adjacent, so the bin mean is a last-dim reduction.
    grid = torch.stack((gx, gy), dim=-1).reshape(n, oh, sr, ow, sr, 2).permute(0, 1, 3, 2, 4, 5)
    grid = grid.reshape(1, n * oh * ow, sr * sr, 2)
    samples = F.grid_sample(feature, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    if degenerate:
        mask = valid.reshape(n, oh, sr, ow, sr).permute(0, 1, 3, 2, 4).reshape(1, 1, n * oh * ow, sr * sr)
        samples = samples * mask.to(samples.dtype)
    return samples.sum(-1).mul_(1.0 / (sr * sr)).reshape(c, n, oh, ow)


def _connect_unused(out: Tensor, maps: Sequence[Tensor]) -> Tensor:
    """Add 0 x (one element of every map no RoI used), as mmdet/mmrotate extractors do.

    Keeps every pyramid level in the autograd graph (zero gradients instead of None), so a level that no RoI
    maps to on one rank cannot make distributed training wait for gradients that never come.
    """
    maps = [m for m in maps if m.requires_grad and m.numel() > 0]
    if not maps or not torch.is_grad_enabled():
        return out
    return out + sum(m.reshape(-1)[0] for m in maps).to(out.dtype) * 0.0


def _roi_align_grouped(
    feats: Sequence[Tensor],
    spatial_scales: Sequence[float],
    rois: Tensor,
    levels: Tensor | None,
    output_size: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
    clockwise: bool,
) -> Tensor:
    """RoIAlignRotated of every RoI on ``feats[levels[k]]`` (``levels=None``: level 0) -> (K, C, oh, ow)."""
    if sampling_ratio <= 0:
        raise ValueError(
            f"sampling_ratio must be > 0 (got {sampling_ratio}); the adaptive mode of mmcv "
            "(sampling_ratio=0, ceil(roi_size / output_size) samples per bin) is not supported"
        )
    if rois.dim() != 2 or rois.shape[1] != 6:
        raise ValueError(f"rois must be (K, 6) [batch_index, cx, cy, w, h, theta], got {tuple(rois.shape)}")
    oh, ow = output_size
    ref = feats[0]
    batch, channels = ref.shape[:2]
    out_dtype = ref.dtype
    cdtype = _compute_dtype(out_dtype)
    num = rois.shape[0]
    if num == 0:
        return _connect_unused(ref.new_zeros(0, channels, oh, ow), feats)
    rois = rois.detach().to(device=ref.device, dtype=cdtype)
    num_levels = len(feats)
    args = (output_size, sampling_ratio, aligned, clockwise)

    if batch == 1 and num_levels == 1:  # no grouping, no host sync
        piece = _align_one_map(_prepare_map(ref, cdtype), rois, spatial_scales[0], *args)
        return piece.transpose(0, 1).contiguous().to(out_dtype)

    image_ids = rois[:, 0].long()
    num_bad = ((image_ids < 0) | (image_ids >= batch)).sum().reshape(1)
    key = image_ids.clamp(0, batch - 1)
    if levels is not None:
        key = levels.to(device=key.device, dtype=torch.long) * batch + key
    order = torch.argsort(key, stable=True)
    *counts, bad = torch.cat((torch.bincount(key, minlength=num_levels * batch), num_bad)).tolist()  # 1 sync
    if bad:
        raise ValueError(f"{bad} RoI(s) have a batch index outside [0, {batch})")
    sorted_rois = rois.index_select(0, order)
    out = None
    start = 0
    for group, count in enumerate(counts):
        if count == 0:
            continue
        level, image = divmod(group, batch)
        fmap = _prepare_map(feats[level][image : image + 1], cdtype)
        piece = _align_one_map(fmap, sorted_rois[start : start + count], spatial_scales[level], *args)
        if out is None:
            out = piece.new_empty(num, channels, oh, ow)
        out.index_copy_(0, order[start : start + count], piece.transpose(0, 1))
        start += count
    unused = [feats[lvl] for lvl in range(num_levels) if sum(counts[lvl * batch : (lvl + 1) * batch]) == 0]
    return _connect_unused(out.to(out_dtype), unused)


def roi_align_rotated(
    features: Tensor,
    rois: Tensor,
    output_size: int | Sequence[int] = (7, 7),
    spatial_scale: float = 0.25,
    sampling_ratio: int = 2,
    aligned: bool = True,
    clockwise: bool = True,
) -> Tensor:
    """Rotated RoIAlign with mmcv 2.0 ``RoIAlignRotated`` semantics (module docstring).

    Args:
        features: (B, C, H, W) feature map.
        rois: (K, 6) rows ``[batch_index, cx, cy, w, h, theta]`` in input pixels, θ in radians. Treated as
            constants (no gradient). With B == 1 the batch index is not checked (no host sync).
        output_size: (oh, ow) or an int.
        spatial_scale: feature pixels per input pixel (1 / stride).
        sampling_ratio: samples per bin along each axis; must be > 0 (mmcv's adaptive 0 is unsupported).
        aligned: subtract half a pixel from the scaled centre (and do not clamp the size to ≥ 1).
        clockwise: θ rotates clockwise on screen (y down), as in Oriented R-CNN; False flips its sign.

    Returns:
        (K, C, oh, ow) in ``features.dtype``; columns follow the box's w axis, rows its h axis.
    """
    return _roi_align_grouped(
        [features], [spatial_scale], rois, None, _pair(output_size), sampling_ratio, aligned, clockwise
    )


class RoIAlignRotated(nn.Module):
    """Module form of :func:`roi_align_rotated` (as ``torchvision.ops.RoIAlign`` wraps ``roi_align``):
    ``forward(features (B, C, H, W), rois (K, 6)) -> (K, C, oh, ow)``."""

    def __init__(
        self,
        output_size: int | Sequence[int] = (7, 7),
        spatial_scale: float = 0.25,
        sampling_ratio: int = 2,
        aligned: bool = True,
        clockwise: bool = True,
    ) -> None:
        super().__init__()
        if sampling_ratio <= 0:
            raise ValueError(f"sampling_ratio must be > 0, got {sampling_ratio}")
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.clockwise = bool(clockwise)

    def forward(self, features: Tensor, rois: Tensor) -> Tensor:
        return roi_align_rotated(
            features, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned, self.clockwise
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, clockwise={self.clockwise}"
        )


class RotatedRoIExtractor(nn.Module):
    """mmrotate ``RotatedSingleRoIExtractor`` with RoIAlignRotated(aligned=True) on every level.

    Each RoI is pooled from one pyramid level, chosen by its scale sqrt(w·h):
    ``level = clamp(floor(log2(sqrt(w·h) / finest_scale + 1e-6)), 0, L − 1)`` (mmrotate's
    ``RotatedSingleRoIExtractor``), i.e.
    with finest_scale 56: < 112 px → P2, [112, 224) → P3, [224, 448) → P4, ≥ 448 → P5, pooled with
    spatial scale 1 / stride of that level. Output rows keep the RoI order.
    """

    def __init__(
        self,
        output_size: int | Sequence[int] = 7,
        sampling_ratio: int = 2,
        featmap_strides: Sequence[int] = (4, 8, 16, 32),
        finest_scale: float = 56,
        clockwise: bool = True,
    ) -> None:
        super().__init__()
        if sampling_ratio <= 0:
            raise ValueError(f"sampling_ratio must be > 0, got {sampling_ratio}")
        self.output_size = _pair(output_size)
        self.sampling_ratio = int(sampling_ratio)
        self.featmap_strides = tuple(int(s) for s in featmap_strides)
        self.finest_scale = float(finest_scale)
        self.clockwise = bool(clockwise)

    @property
    def num_levels(self) -> int:
        return len(self.featmap_strides)

    def map_levels(self, rois: Tensor) -> Tensor:
        """Pyramid level (int64, 0 = finest) of every RoI (K, 6) from its scale sqrt(w·h)."""
        scale = torch.sqrt(rois[:, 3] * rois[:, 4])
        levels = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        return levels.clamp(0, self.num_levels - 1).long()

    def forward(self, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
        """``feats``: maps (B, C, H_l, W_l) at ``featmap_strides`` (extra coarser maps, e.g. an FPN's P6, are
        ignored, as mmdet passes ``x[:num_inputs]``); ``rois`` (K, 6) -> (K, C, oh, ow) in RoI order."""
        feats = list(feats)[: self.num_levels]
        if len(feats) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} feature maps, got {len(feats)}")
        levels = self.map_levels(rois) if self.num_levels > 1 else None
        scales = [1.0 / s for s in self.featmap_strides]
        return _roi_align_grouped(
            feats, scales, rois, levels, self.output_size, self.sampling_ratio, True, self.clockwise
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio}, "
            f"featmap_strides={self.featmap_strides}, finest_scale={self.finest_scale}, clockwise={self.clockwise}"
        )
