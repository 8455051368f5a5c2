"""DCNv3 core (InternImage's deformable convolution v3) in pure PyTorch.

Tensors are channels-last, as in the official op (``Multi-Task_Pretrain/backbone/ops_dcnv3``):

* ``value``  (N, H, W, C): the projected input; C = group * group_channels, channels are
  split group-major (channels [g*C/G, (g+1)*C/G) belong to group g);
* ``offset`` (N, Ho, Wo, G*P*2): per group g and sampling point p, an (x, y) pair in **input
  pixels** (before ``offset_scale``); last dimension laid out (G, P, 2);
* ``mask``   (N, Ho, Wo, G*P): the modulation weights (InternImage: softmax over the P points);
* output     (N, Ho, Wo, C), same dtype as ``value``.

P = kh*kw (minus 1 with ``remove_center``). Sampling points are ordered as the official
``_generate_dilation_grids``: p = ix*kh + iy (x outer, y inner), kernel offsets
``-(d*(k-1))//2 + i*d`` pixels. Output pixel (i, j), point p of group g samples the value map at

    x = j*sw + (dw*(kw-1))//2 - pad_W + (kx_p + offset_x) * offset_scale
    y = i*sh + (dh*(kh-1))//2 - pad_H + (ky_p + offset_y) * offset_scale

(pixel units, pixel centres at integers, input frame), bilinearly with zeros outside the map
(``grid_sample(align_corners=False, padding_mode='zeros')`` on the padded map in the official
``dcnv3_core_pytorch``); the output is the mask-weighted sum over the P points. Note that
``offset_scale`` also scales the kernel grid, as officially. Padding follows the official
PyTorch core: ``F.pad(x, [0, 0, pad_h, pad_h, pad_w, pad_w])`` on a channels-last map pads the
**width by pad_h and the height by pad_w** (pad_W = pad_h, pad_H = pad_w; every InternImage
uses pad_h = pad_w). Ho = (H + 2*pad_w - (dh*(kh-1)+1)) // sh + 1, Wo likewise with pad_h.

Implementations (``impl``):

* ``"reference"``: the straightforward form of the official arithmetic, one ``grid_sample`` over
  the zero-padded map with normalised coordinates, then a masked sum; plain autograd.
* ``"gather"`` (default): the forward computes the 4 bilinear corners of every point once and
  lets ``F.embedding_bag`` (mode ``sum``, per-sample weights) gather-and-accumulate the 4*P
  weighted rows of every output (no (.., P, C) intermediate). Autograd saves only ``value``,
  ``offset`` and ``mask`` (as the official CUDA op); the backward recomputes the sampling grid
  and uses PyTorch's own ``grid_sample`` forward (for the mask gradient) and
  ``aten.grid_sampler_2d_backward`` (value and location gradients), in fp32.

Written here by hand, because no kept library provides it: the sampling-location arithmetic,
the corner/weight construction for ``embedding_bag`` and the autograd function tying the
gather forward to the ``grid_sample`` backward. Bilinear gathering, accumulation and all
gradients are PyTorch kernels.

Mixed precision: sampling locations are computed in fp32 (fp64 for fp64 inputs; a bf16 coordinate has a
1-pixel step at 128 px); the gather path samples ``value`` in its own dtype with weights cast
to it (embedding_bag needs one dtype), the reference path samples in fp32; the output has
``value``'s dtype. Autocast is disabled inside the op.
"""

from __future__ import annotations

from torch import Tensor

from mtp.ops.dcnv3.gather import dcnv3_gather
from mtp.ops.dcnv3.geometry import DCNv3Geometry, pair
from mtp.ops.dcnv3.reference import dcnv3_reference

__all__ = ["DCN_IMPLS", "dcnv3_core"]

DCN_IMPLS = ("gather", "reference")


def dcnv3_core(
    value: Tensor,
    offset: Tensor,
    mask: Tensor,
    *,
    kernel_size: int | tuple[int, int] = 3,
    stride: int | tuple[int, int] = 1,
    pad: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    group: int = 1,
    offset_scale: float = 1.0,
    remove_center: bool = False,
    impl: str = "gather",
) -> Tensor:
    """Deformable sampling + modulated sum (see the module docstring for conventions).

    Args:
        value: (N, H, W, C), C divisible by ``group``.
        offset: (N, Ho, Wo, group*P*2) pixel offsets (x, y) per group and point.
        mask: (N, Ho, Wo, group*P) modulation weights.
        kernel_size, stride, dilation: int or (h, w). pad: int or the official (pad_h, pad_w).
        group: channel groups, each with its own offsets and mask.
        offset_scale: multiplies both the kernel grid and the offsets (InternImage-XL: 2.0).
        remove_center: drop the centre point (P = k*k - 1), official rule.
        impl: ``"gather"`` (default) or ``"reference"``.

    Returns:
        (N, Ho, Wo, C) in ``value``'s dtype.
    """
    geometry = DCNv3Geometry(
        pair(kernel_size, "kernel_size"),
        pair(stride, "stride"),
        pair(pad, "pad"),
        pair(dilation, "dilation"),
        int(group),
        float(offset_scale),
        bool(remove_center),
    )
    _check_inputs(value, offset, mask, geometry)
    if impl == "gather":
        return dcnv3_gather(value, offset, mask, geometry)
    if impl == "reference":
        return dcnv3_reference(value, offset, mask, geometry)
    raise ValueError(f"impl must be one of {DCN_IMPLS}, got {impl!r}")


def _check_inputs(value: Tensor, offset: Tensor, mask: Tensor, geometry: DCNv3Geometry) -> None:
    if value.ndim != 4 or offset.ndim != 4 or mask.ndim != 4:
        raise ValueError(
            f"dcnv3_core expects channels-last 4-D tensors, got value {tuple(value.shape)}, "
            f"offset {tuple(offset.shape)}, mask {tuple(mask.shape)}"
        )
    n, h, w, c = value.shape
    g, p = geometry.group, geometry.num_points
    if c % g:
        raise ValueError(f"value has {c} channels, not divisible by group={g}")
    ho, wo = geometry.output_size(h, w)
    if ho < 1 or wo < 1:
        raise ValueError(f"input {h}x{w} is too small for {geometry}")
    if tuple(offset.shape) != (n, ho, wo, g * p * 2) or tuple(mask.shape) != (n, ho, wo, g * p):
        raise ValueError(
            f"for value {tuple(value.shape)} and {geometry}, offset must be {(n, ho, wo, g * p * 2)} "
            f"and mask {(n, ho, wo, g * p)}; got {tuple(offset.shape)} and {tuple(mask.shape)}"
        )
