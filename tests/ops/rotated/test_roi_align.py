"""Oracle tests for mtp.ops.rotated.roi_align (docs/CONVENTIONS.md#rotated-iou-nms-and-roialign).

The oracle is a brute-force loop over RoIs, output bins and samples that applies mmcv 2.0's ``RoIAlignRotated``
kernel rules literally; torchvision's roi_align (θ = 0), the published ramp vector and geometric identities are
independent checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.ops import roi_align

from mtp.ops.rotated.roi_align import RotatedRoIExtractor, roi_align_rotated

F64 = torch.float64


# ------------------------------------------------------------------ brute-force oracle


def _bilinear(fmap: np.ndarray, y: float, x: float) -> np.ndarray:
    """mmcv border rule: 0 outside [-1, H] x [-1, W]; otherwise clamp into the map and interpolate."""
    _, height, width = fmap.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(fmap.shape[0])
    y = min(max(y, 0.0), height - 1.0)
    x = min(max(x, 0.0), width - 1.0)
    y0, x0 = math.floor(y), math.floor(x)
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * fmap[:, y0, x0]
        + (1 - ly) * lx * fmap[:, y0, x1]
        + ly * (1 - lx) * fmap[:, y1, x0]
        + ly * lx * fmap[:, y1, x1]
    )


def reference_roi_align_rotated(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: tuple[int, int] = (7, 7),
    spatial_scale: float = 0.25,
    sampling_ratio: int = 2,
    aligned: bool = True,
    clockwise: bool = True,
) -> torch.Tensor:
    feats = features.detach().to(F64).numpy()
    oh, ow = output_size
    sr = sampling_ratio
    out = np.zeros((rois.shape[0], feats.shape[1], oh, ow))
    for k, (b, cx, cy, w, h, theta) in enumerate(rois.to(F64).tolist()):
        fmap = feats[int(b)]
        offset = 0.5 if aligned else 0.0
        cx, cy = cx * spatial_scale - offset, cy * spatial_scale - offset
        w, h = w * spatial_scale, h * spatial_scale
        if not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        if not clockwise:
            theta = -theta
        cos, sin = math.cos(theta), math.sin(theta)
        bin_w, bin_h = w / ow, h / oh
        for ph in range(oh):
            for pw in range(ow):
                acc = np.zeros(feats.shape[1])
                for iy in range(sr):
                    yy = -h / 2 + ph * bin_h + (iy + 0.5) * bin_h / sr
                    for ix in range(sr):
                        xx = -w / 2 + pw * bin_w + (ix + 0.5) * bin_w / sr
                        acc += _bilinear(fmap, cy + xx * sin + yy * cos, cx + xx * cos - yy * sin)
                out[k, :, ph, pw] = acc / (sr * sr)
    return torch.from_numpy(out)


def random_rois(
    gen: torch.Generator, num: int, batch: int, height: int, width: int, spatial_scale: float
) -> torch.Tensor:
    """RoIs in input pixels: centres up to 40 % outside the image, sizes 0.3 px .. 3x the image, all angles."""
    img_h, img_w = height / spatial_scale, width / spatial_scale

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(num, generator=gen, dtype=F64)

    b = torch.randint(0, batch, (num,), generator=gen).to(F64)
    cx, cy = uniform(-0.4 * img_w, 1.4 * img_w), uniform(-0.4 * img_h, 1.4 * img_h)
    big = 3 * max(img_h, img_w)
    w = uniform(math.log(0.3), math.log(big)).exp()
    h = uniform(math.log(0.3), math.log(big)).exp()
    theta = uniform(-math.pi, math.pi)
    theta[:4] = torch.tensor([0.0, math.pi / 2, -math.pi / 2, math.pi], dtype=F64)[: min(4, num)]
    rois = torch.stack((b, cx, cy, w, h, theta), dim=1)
    # A few hand-picked cases: zero size, one fully inside, one straddling the top-left corner.
    extra = torch.tensor(
        [
            [0, img_w / 2, img_h / 2, 0.0, 0.0, 0.3],
            [batch - 1, img_w / 2, img_h / 2, img_w / 3, img_h / 5, -0.7],
            [batch - 1, 0.0, 0.0, img_w / 2, img_h / 3, 2.0],
        ],
        dtype=F64,
    )
    return torch.cat((rois, extra))


# ------------------------------------------------------------------ oracle comparisons


@pytest.mark.parametrize(
    ("batch", "hw", "output_size", "sampling_ratio", "aligned", "clockwise"),
    [
        (3, (13, 21), (7, 7), 2, True, True),  # the Oriented R-CNN setting, several images, non-square map
        (1, (17, 10), (7, 7), 2, True, False),  # single image (no grouping path), counter-clockwise
        (2, (9, 12), (3, 5), 1, True, True),  # non-square output, one sample per bin
        (2, (8, 11), (4, 2), 3, False, True),  # not aligned (size clamp), three samples per axis
        (2, (1, 9), (7, 7), 2, True, True),  # degenerate height
        (1, (7, 1), (7, 7), 2, True, True),  # degenerate width
        (2, (1, 1), (2, 2), 2, True, True),  # single pixel
    ],
)
def test_matches_bruteforce_reference(batch, hw, output_size, sampling_ratio, aligned, clockwise) -> None:
    gen = torch.Generator().manual_seed(sum(hw) * 7 + batch)
    height, width = hw
    feats = torch.randn(batch, 3, height, width, generator=gen, dtype=F64)
    rois = random_rois(gen, 24, batch, height, width, 0.25)
    kwargs = dict(
        output_size=output_size, spatial_scale=0.25, sampling_ratio=sampling_ratio, aligned=aligned, clockwise=clockwise
    )
    out = roi_align_rotated(feats, rois, **kwargs)
    ref = reference_roi_align_rotated(feats, rois, **kwargs)
    assert out.shape == (rois.shape[0], 3, *output_size)
    assert out.dtype == F64
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    assert ref.abs().sum() > 0  # the random RoIs do hit the map


def test_float32_close_to_reference_and_bf16_dtype() -> None:
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 4, 16, 20, generator=gen, dtype=F64)
    rois = random_rois(gen, 20, 2, 16, 20, 0.25)
    ref = reference_roi_align_rotated(feats, rois)
    out32 = roi_align_rotated(feats.float(), rois.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), ref, rtol=0, atol=1e-4)
    out16 = roi_align_rotated(feats.bfloat16(), rois.float())
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.double(), ref, rtol=2e-2, atol=3e-2)


def test_far_outside_is_zero_and_edge_band_uses_edge_pixel() -> None:
    feats = torch.ones(1, 2, 6, 8, dtype=F64)
    far = torch.tensor([[0, -100.0, 10.0, 20.0, 20.0, 0.4], [0, 10.0, 400.0, 8.0, 30.0, -1.0]], dtype=F64)
    assert roi_align_rotated(feats, far).abs().max() == 0
    # Every sample inside (-1, 0) x (-1, 0) feature px (aligned) clamps onto pixel (0, 0) at full weight.
    corner = torch.tensor([[0, 0.5, 0.5, 1.5, 1.5, 0.0]], dtype=F64)  # feature centre (-0.375, -0.375)
    torch.testing.assert_close(roi_align_rotated(feats, corner), torch.ones(1, 2, 7, 7, dtype=F64))


# ------------------------------------------------------------------ independent checks


@pytest.mark.parametrize(("aligned", "spatial_scale"), [(True, 0.25), (True, 0.125), (False, 0.25)])
def test_theta_zero_equals_torchvision_roi_align(aligned: bool, spatial_scale: float) -> None:
    gen = torch.Generator().manual_seed(11)
    feats = torch.randn(3, 5, 14, 19, generator=gen, dtype=F64)
    num = 40
    img_w, img_h = 19 / spatial_scale, 14 / spatial_scale
    b = torch.randint(0, 3, (num,), generator=gen).to(F64)
    cx = (torch.rand(num, generator=gen, dtype=F64) * 1.4 - 0.2) * img_w
    cy = (torch.rand(num, generator=gen, dtype=F64) * 1.4 - 0.2) * img_h
    lo = 1.0 / spatial_scale if not aligned else 0.5  # torchvision's unaligned size clamp is not centred
    w = lo + torch.rand(num, generator=gen, dtype=F64) * img_w
    h = lo + torch.rand(num, generator=gen, dtype=F64) * img_h
    rois = torch.stack((b, cx, cy, w, h, torch.zeros(num, dtype=F64)), dim=1)
    boxes = torch.stack((b, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=1)
    ours = roi_align_rotated(feats, rois, 7, spatial_scale, 2, aligned=aligned)
    theirs = roi_align(feats, boxes, 7, spatial_scale=spatial_scale, sampling_ratio=2, aligned=aligned)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("clockwise", [True, False])
def test_ramp_vector(clockwise: bool) -> None:
    """Angle-sign ramp vector of mmcv's kernel: f(y, x) = x on 16x16, scale 1/4, RoI (0, 32, 32, 16, 8, π/2)."""
    feats = torch.arange(16, dtype=F64).expand(16, 16)[None, None]
    rois = torch.tensor([[0, 32.0, 32.0, 16.0, 8.0, math.pi / 2]], dtype=F64)
    out = roi_align_rotated(feats, rois, 7, 0.25, 2, aligned=True, clockwise=clockwise)[0, 0]
    expected = torch.tensor([8.3571, 8.0714, 7.7857, 7.5, 7.2143, 6.9286, 6.6429], dtype=F64)
    if not clockwise:
        expected = expected.flip(0)
    torch.testing.assert_close(out[:, 0], expected, rtol=0, atol=5e-5)
    torch.testing.assert_close(out, out[:, :1].expand(7, 7), rtol=0, atol=1e-12)  # every column identical
    torch.testing.assert_close(out[:, 0], 7.5 - (torch.arange(7, dtype=F64) - 3) * (2 / 7) * (1 if clockwise else -1))


def test_representation_dependence() -> None:
    """(w, h, θ) and (h, w, θ + π/2) are one rectangle; the second grid is rot90 of the first.

    The second box's w axis is the first's h axis and its h axis is minus the first's w axis, so
    B[ph, pw] = A[pw, ow - 1 - ph], i.e. B = rot90(A) (with the output size transposed); θ + π gives A
    flipped in both directions.
    """
    gen = torch.Generator().manual_seed(5)
    feats = torch.randn(2, 3, 12, 15, generator=gen, dtype=F64)
    rois = random_rois(gen, 16, 2, 12, 15, 0.25)
    swapped = rois[:, [0, 1, 2, 4, 3, 5]].clone()
    swapped[:, 5] += math.pi / 2
    flipped = rois.clone()
    flipped[:, 5] += math.pi
    a = roi_align_rotated(feats, rois, (3, 5))
    b = roi_align_rotated(feats, swapped, (5, 3))
    c = roi_align_rotated(feats, flipped, (3, 5))
    torch.testing.assert_close(b, torch.rot90(a, 1, dims=(-2, -1)), rtol=0, atol=1e-10)
    for ph in range(5):
        for pw in range(3):
            torch.testing.assert_close(b[..., ph, pw], a[..., pw, 5 - 1 - ph], rtol=0, atol=1e-10)
    torch.testing.assert_close(c, a.flip(-2, -1), rtol=0, atol=1e-10)
    # ... and the (7, 7) outputs of the two forms really differ (hence le90 must be exact upstream).
    assert (roi_align_rotated(feats, swapped) - roi_align_rotated(feats, rois)).abs().max() > 1e-3


def test_translation_by_whole_feature_pixels() -> None:
    gen = torch.Generator().manual_seed(9)
    feats = torch.randn(1, 2, 30, 30, generator=gen, dtype=F64)
    rois = torch.tensor([[0, 40.0, 44.0, 30.0, 12.0, 0.6], [0, 50.0, 36.0, 8.0, 20.0, -1.2]], dtype=F64)
    shifted = torch.roll(feats, shifts=(3, 5), dims=(-2, -1))
    moved = rois.clone()
    moved[:, 1] += 5 * 4
    moved[:, 2] += 3 * 4
    torch.testing.assert_close(roi_align_rotated(shifted, moved), roi_align_rotated(feats, rois), rtol=0, atol=1e-12)


def test_gradcheck_features() -> None:
    gen = torch.Generator().manual_seed(2)
    feats = torch.randn(2, 2, 5, 6, generator=gen, dtype=F64, requires_grad=True)
    rois = torch.tensor(
        [[0, 10.0, 9.0, 12.0, 6.0, 0.5], [1, 2.0, 1.0, 9.0, 14.0, -2.0], [1, 20.0, 14.0, 3.0, 2.0, 1.2]],
        dtype=F64,
        requires_grad=True,
    )
    assert torch.autograd.gradcheck(lambda f: roi_align_rotated(f, rois, (2, 3), 0.5, 2), (feats,))
    out = roi_align_rotated(feats, rois, (2, 3), 0.5, 2)
    out.sum().backward()
    assert rois.grad is None  # RoIs are constants
    single = feats[:1].detach().clone().requires_grad_()  # the ungrouped single-image path
    assert torch.autograd.gradcheck(lambda f: roi_align_rotated(f, rois[:1].detach(), (2, 3), 0.5, 2), (single,))


def test_invalid_arguments() -> None:
    feats = torch.zeros(2, 1, 4, 4)
    rois = torch.tensor([[0, 4.0, 4.0, 4.0, 4.0, 0.0]])
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align_rotated(feats, rois, sampling_ratio=0)
    with pytest.raises(ValueError, match="sampling_ratio"):
        RotatedRoIExtractor(sampling_ratio=-1)
    with pytest.raises(ValueError, match="batch index"):
        roi_align_rotated(feats, torch.tensor([[2, 4.0, 4.0, 4.0, 4.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\(K, 6\)"):
        roi_align_rotated(feats, rois[:, :5])


# ------------------------------------------------------------------ extractor


def _pyramid(gen: torch.Generator, batch: int, channels: int, size: int, dtype=F64) -> list[torch.Tensor]:
    return [torch.randn(batch, channels, size // s, size // s, generator=gen, dtype=dtype) for s in (4, 8, 16, 32)]


def test_level_mapping_thresholds() -> None:
    ext = RotatedRoIExtractor()
    # sqrt(w * h) in px and the expected level (finest_scale 56: 112 / 224 / 448 px thresholds).
    cases = [(1.0, 0), (55.0, 0), (56.0, 0), (111.0, 0), (111.99, 0), (112.0, 1), (150.0, 1), (223.9, 1)]
    cases += [(224.0, 2), (447.0, 2), (448.0, 3), (449.0, 3), (5000.0, 3)]
    scales = torch.tensor([c[0] for c in cases], dtype=F64)
    expected = torch.tensor([c[1] for c in cases])
    # Square boxes and elongated ones (w = 4 s, h = s / 4) with the same area map alike.
    zeros = torch.zeros_like(scales)
    square = torch.stack((zeros, zeros, zeros, scales, scales, zeros), dim=1)
    long = torch.stack((zeros, zeros, zeros, 4 * scales, scales / 4, zeros), dim=1)
    assert torch.equal(ext.map_levels(square), expected)
    assert torch.equal(ext.map_levels(long), expected)
    assert torch.equal(RotatedRoIExtractor(featmap_strides=(4, 8)).map_levels(square), expected.clamp(max=1))
    # The +1e-6 inside the log: a float32 scale one ulp below a threshold still maps up; 1e-5 below does not.
    below = torch.nextafter(torch.tensor([112.0, 224.0, 448.0]), torch.tensor(0.0))
    near = torch.cat((below, torch.tensor([112.0, 224.0, 448.0]) * (1 - 1e-5)))
    zeros = torch.zeros_like(near)
    rois32 = torch.stack((zeros, zeros, zeros, near, near, zeros), dim=1)
    assert ext.map_levels(rois32).tolist() == [1, 2, 3, 0, 1, 2]


def test_extractor_per_level_scale_and_order() -> None:
    gen = torch.Generator().manual_seed(21)
    feats = _pyramid(gen, 2, 3, 256)
    num = 30
    side = torch.tensor([20.0, 80.0, 130.0, 200.0, 260.0, 400.0, 500.0, 900.0], dtype=F64)[torch.arange(num) % 8]
    rois = torch.stack(
        (
            torch.randint(0, 2, (num,), generator=gen).to(F64),
            torch.rand(num, generator=gen, dtype=F64) * 256,
            torch.rand(num, generator=gen, dtype=F64) * 256,
            side * 1.5,
            side / 1.5,
            torch.rand(num, generator=gen, dtype=F64) * 2 * math.pi - math.pi,
        ),
        dim=1,
    )[torch.randperm(num, generator=gen)]
    ext = RotatedRoIExtractor()
    levels = ext.map_levels(rois)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    out = ext([*feats, torch.zeros(2, 3, 4, 4, dtype=F64)], rois)  # an extra P6 map is ignored
    assert out.shape == (num, 3, 7, 7)
    for k in range(num):  # row k is RoI k pooled on its own level with scale 1 / stride
        lvl = int(levels[k])
        expected = roi_align_rotated(feats[lvl], rois[k : k + 1], 7, 1 / (4 * 2**lvl), 2)
        torch.testing.assert_close(out[k : k + 1], expected, rtol=0, atol=1e-12)
    # ... which is the brute-force oracle on that level.
    k = int(torch.nonzero(levels == 2)[0])
    ref = reference_roi_align_rotated(feats[2], rois[k : k + 1], spatial_scale=1 / 16)
    torch.testing.assert_close(out[k : k + 1], ref, rtol=0, atol=1e-10)


def test_extractor_empty_and_gradients() -> None:
    gen = torch.Generator().manual_seed(4)
    feats = [f.requires_grad_() for f in _pyramid(gen, 2, 3, 128, dtype=torch.float32)]
    ext = RotatedRoIExtractor()
    empty = ext(feats, torch.zeros(0, 6))
    assert empty.shape == (0, 3, 7, 7) and empty.dtype == torch.float32
    assert roi_align_rotated(feats[0].detach(), torch.zeros(0, 6)).shape == (0, 3, 7, 7)
    empty.sum().backward()  # like mmrotate, every level stays in the graph (zero gradients, not None)
    assert all(f.grad is not None and f.grad.abs().sum() == 0 for f in feats)
    for f in feats:
        f.grad = None
    rois = torch.tensor([[1, 60.0, 60.0, 40.0, 30.0, 0.3], [0, 64.0, 64.0, 300.0, 200.0, -0.9]])
    out = ext(feats, rois)
    out.sum().backward()
    assert feats[0].grad[1].abs().sum() > 0 and feats[0].grad[0].abs().sum() == 0
    assert feats[2].grad[0].abs().sum() > 0 and feats[2].grad[1].abs().sum() == 0
    assert feats[1].grad.abs().sum() == 0 and feats[3].grad.abs().sum() == 0  # unused levels: zeros
