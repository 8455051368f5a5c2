"""DCNv3 core: a brute-force oracle of the official sampling rule, both paths, gradients, dtypes."""

from __future__ import annotations

import math

import pytest
import torch

from mtp.ops.dcnv3 import DCN_IMPLS, DCNv3Geometry, dcnv3_core

IMPLS = list(DCN_IMPLS)


def brute_force(value, offset, mask, kernel, stride, pad, dilation, group, offset_scale, remove_center):
    """Per output pixel, group and point, the official rule written out with Python loops.

    Location (input-frame pixels, centres at integers): x = j*sw + (dw*(kw-1))//2 - pad_h
    + (kx + off_x) * offset_scale (the official PyTorch core pads the width by pad_h), y likewise
    with pad_w; bilinear with zeros outside the map; points ordered x outer, y inner.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, pad, dilation
    n, h, w, c = value.shape
    cg = c // group
    ho = (h + 2 * pw - (dh * (kh - 1) + 1)) // sh + 1
    wo = (w + 2 * ph - (dw * (kw - 1) + 1)) // sw + 1
    x_first, y_first = -((dw * (kw - 1)) // 2), -((dh * (kh - 1)) // 2)
    points = [(x_first + ix * dw, y_first + iy * dh) for ix in range(kw) for iy in range(kh)]
    if remove_center:
        points.pop((kh * kw - 1) // 2)
    npts = len(points)
    out = torch.zeros(n, ho, wo, c, dtype=value.dtype)

    def pixel(b, y, x, g):
        if 0 <= y < h and 0 <= x < w:
            return value[b, y, x, g * cg : (g + 1) * cg]
        return torch.zeros(cg, dtype=value.dtype)

    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                for g in range(group):
                    acc = torch.zeros(cg, dtype=value.dtype)
                    for p, (kx, ky) in enumerate(points):
                        ox, oy = offset[b, i, j, (g * npts + p) * 2 : (g * npts + p) * 2 + 2].tolist()
                        x = j * sw + (dw * (kw - 1)) // 2 - ph + (kx + ox) * offset_scale
                        y = i * sh + (dh * (kh - 1)) // 2 - pw + (ky + oy) * offset_scale
                        x0, y0 = math.floor(x), math.floor(y)
                        fx, fy = x - x0, y - y0
                        sample = (
                            pixel(b, y0, x0, g) * (1 - fy) * (1 - fx)
                            + pixel(b, y0, x0 + 1, g) * (1 - fy) * fx
                            + pixel(b, y0 + 1, x0, g) * fy * (1 - fx)
                            + pixel(b, y0 + 1, x0 + 1, g) * fy * fx
                        )
                        acc += mask[b, i, j, g * npts + p] * sample
                    out[b, i, j, g * cg : (g + 1) * cg] = acc
    return out


def random_inputs(n, h, w, group, cg, geometry: DCNv3Geometry, *, offset_std=2.0, dtype=torch.float64, grad=False):
    ho, wo = geometry.output_size(h, w)
    p = geometry.num_points
    value = torch.randn(n, h, w, group * cg, dtype=dtype)
    offset = torch.randn(n, ho, wo, group * p * 2, dtype=dtype) * offset_std
    mask = torch.rand(n, ho, wo, group * p, dtype=dtype)
    return [t.requires_grad_(grad) for t in (value, offset, mask)]


GEOMETRIES = [  # kernel, stride, pad (official pad_h, pad_w), dilation, group, offset_scale, remove_center
    ((3, 3), (1, 1), (1, 1), (1, 1), 2, 2.0, False),  # InternImage
    ((3, 3), (2, 2), (1, 1), (1, 1), 3, 1.0, False),
    ((3, 3), (1, 1), (2, 2), (2, 2), 2, 1.5, False),
    ((3, 3), (1, 1), (1, 1), (1, 1), 2, 2.0, True),
    ((5, 5), (1, 1), (2, 2), (1, 1), 1, 1.0, True),
    ((3, 3), (1, 2), (0, 1), (1, 1), 2, 1.0, False),  # pad_h != pad_w: width padded by 0, height by 1
    ((2, 3), (1, 1), (0, 0), (1, 2), 2, 0.5, False),  # even kernel, anisotropic dilation
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("geom", GEOMETRIES)
def test_both_paths_match_the_brute_force_oracle(impl, geom):
    kernel, stride, pad, dilation, group, scale, remove_center = geom
    geometry = DCNv3Geometry(kernel, stride, pad, dilation, group, scale, remove_center)
    value, offset, mask = random_inputs(1, 6, 7, group, 2, geometry)
    expected = brute_force(value, offset, mask, kernel, stride, pad, dilation, group, scale, remove_center)
    out = dcnv3_core(
        value,
        offset,
        mask,
        kernel_size=kernel,
        stride=stride,
        pad=pad,
        dilation=dilation,
        group=group,
        offset_scale=scale,
        remove_center=remove_center,
        impl=impl,
    )
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_official_padding_quirk_pads_the_width_by_pad_h():
    geometry = DCNv3Geometry(pad=(0, 1))
    assert geometry.output_size(8, 10) == (8, 8)  # rows padded by pad_w = 1, columns by pad_h = 0
    assert geometry.frame_pad == (1, 0)


def test_point_order_is_x_outer_y_inner():
    """A one-hot mask on point p reads the kernel offset of p: p = ix * kh + iy (official grid order)."""
    h, w = 5, 5
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    value = torch.stack((xs, ys), -1)[None]  # channel 0 = x, channel 1 = y
    offset = torch.zeros(1, h, w, 18, dtype=torch.float64)
    for impl in IMPLS:
        for p in range(9):
            mask = torch.zeros(1, h, w, 9, dtype=torch.float64)
            mask[..., p] = 1
            out = dcnv3_core(value, offset, mask, group=1, impl=impl)
            ix, iy = divmod(p, 3)
            assert out[0, 2, 2].tolist() == [2 + ix - 1, 2 + iy - 1], (impl, p)


NEEDS = [(True, True, True), (True, False, False), (False, True, False), (False, False, True)]


@pytest.mark.parametrize("needs", NEEDS)
def test_gather_gradients_equal_the_reference_gradients(needs):
    geometry = DCNv3Geometry(group=3, offset_scale=2.0)
    inputs = random_inputs(2, 9, 6, 3, 4, geometry, offset_std=3.0)
    for t, need in zip(inputs, needs, strict=True):
        t.requires_grad_(need)
    grad_out = torch.randn(2, 9, 6, 12, dtype=torch.float64)
    grads = {}
    for impl in IMPLS:
        out = dcnv3_core(*inputs, group=3, offset_scale=2.0, impl=impl)
        wanted = [t for t in inputs if t.requires_grad]
        grads[impl] = torch.autograd.grad(out, wanted, grad_out)
    for a, b in zip(grads["gather"], grads["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_gather_backward_passes_gradcheck():
    geometry = DCNv3Geometry(kernel=(3, 3), stride=(2, 1), group=2, offset_scale=1.5)
    inputs = random_inputs(1, 5, 6, 2, 2, geometry, offset_std=1.5, grad=True)

    def fn(value, offset, mask):
        return dcnv3_core(value, offset, mask, stride=(2, 1), group=2, offset_scale=1.5, impl="gather")

    assert torch.autograd.gradcheck(fn, inputs)


def test_fp32_paths_agree_with_each_other_and_with_fp64():
    geometry = DCNv3Geometry(group=4, offset_scale=2.0)
    value, offset, mask = random_inputs(2, 12, 10, 4, 8, geometry, offset_std=4.0)
    exact = dcnv3_core(value, offset, mask, group=4, offset_scale=2.0, impl="reference")
    for impl in IMPLS:
        out = dcnv3_core(value.float(), offset.float(), mask.float(), group=4, offset_scale=2.0, impl=impl)
        assert out.dtype == torch.float32
        assert ((out.double() - exact).abs().max() / exact.abs().max()) < 1e-5


@pytest.mark.parametrize("impl", IMPLS)
def test_bf16_autocast_keeps_the_value_dtype_and_stays_close(impl):
    geometry = DCNv3Geometry(group=2, offset_scale=2.0)
    value, offset, mask = random_inputs(1, 8, 8, 2, 8, geometry, dtype=torch.float32)
    proj = torch.nn.Linear(16, 16)
    exact = dcnv3_core(proj(value), offset, mask.softmax(-1), group=2, offset_scale=2.0, impl="reference")
    value.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        projected = proj(value)
        assert projected.dtype == torch.bfloat16
        out = dcnv3_core(projected, offset.bfloat16(), mask.softmax(-1), group=2, offset_scale=2.0, impl=impl)
    assert out.dtype == torch.bfloat16
    assert ((out.float() - exact).abs().max() / exact.abs().max()) < 3e-2
    out.float().square().sum().backward()
    assert value.grad is not None and torch.isfinite(value.grad).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_far_offsets_read_zeros_and_nan_offsets_propagate(impl):
    geometry = DCNv3Geometry(group=1)
    value, offset, mask = random_inputs(1, 4, 5, 1, 3, geometry, grad=False)
    value.requires_grad_(True)
    far = torch.full_like(offset, 1e4)
    out = dcnv3_core(value, far, mask, impl=impl)
    assert torch.count_nonzero(out) == 0
    (grad,) = torch.autograd.grad(out.sum(), value)
    assert torch.count_nonzero(grad) == 0
    bad = offset.clone()
    bad[0, 1, 2, 0] = float("nan")
    out = dcnv3_core(value, bad, mask, impl=impl)
    assert torch.isnan(out[0, 1, 2]).all()
    assert torch.isfinite(out[0, 0]).all()


def test_invalid_arguments_are_clear_errors():
    value = torch.randn(1, 6, 6, 8)
    offset = torch.randn(1, 6, 6, 2 * 9 * 2)
    mask = torch.rand(1, 6, 6, 2 * 9)
    with pytest.raises(ValueError, match="offset must be"):
        dcnv3_core(value, offset[..., :-2], mask, group=2)
    with pytest.raises(ValueError, match="divisible by group"):
        dcnv3_core(value[..., :7], offset, mask, group=2)
    with pytest.raises(ValueError, match="channels-last 4-D"):
        dcnv3_core(value[0], offset, mask, group=2)
    with pytest.raises(ValueError, match="impl must be one of"):
        dcnv3_core(value, offset, mask, group=2, impl="cuda")
    with pytest.raises(ValueError, match="remove_center"):
        DCNv3Geometry(kernel=(3, 5), remove_center=True)


@pytest.mark.parametrize("impl", IMPLS)
def test_non_contiguous_inputs_and_gradients(impl):
    geometry = DCNv3Geometry(group=2, offset_scale=2.0)
    value, offset, mask = random_inputs(2, 5, 6, 2, 3, geometry)
    strided = [t.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_(True) for t in (value, offset, mask)]
    assert not any(t.is_contiguous() for t in strided)
    out = dcnv3_core(*strided, group=2, offset_scale=2.0, impl=impl)
    expected = dcnv3_core(value, offset, mask, group=2, offset_scale=2.0, impl="reference")
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad_out = torch.randn(2, 6, 5, 6, dtype=torch.float64).transpose(1, 2)  # non-contiguous as well
    grads = torch.autograd.grad(out, strided, grad_out)
    again = dcnv3_core(*strided, group=2, offset_scale=2.0, impl="reference")
    reference = torch.autograd.grad(again, strided, grad_out)
    for a, b in zip(grads, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
