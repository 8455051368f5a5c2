"""Whole / sliding-window / TTA segmentation inference against the official rules
(docs/EVALUATION.md#segmentation-inference)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from mtp.inference.segmentation import (
    TTAConfig,
    predict_segmentation,
    predict_segmentation_list,
    scaled_size,
    slide_inference,
    slide_windows,
    tta_inference,
    whole_inference,
)


def official_windows(h: int, w: int, crop: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, ...]]:
    """The mmseg ``slide_inference`` loop, transcribed literally from docs/EVALUATION.md#segmentation-inference."""
    hc, wc = crop
    hs, ws = stride
    h_grids = max(h - hc + hs - 1, 0) // hs + 1
    w_grids = max(w - wc + ws - 1, 0) // ws + 1
    out = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1 = h_idx * hs
            x1 = w_idx * ws
            y2 = min(y1 + hc, h)
            x2 = min(x1 + wc, w)
            y1 = max(y2 - hc, 0)
            x1 = max(x2 - wc, 0)
            out.append((y1, y2, x1, x2))
    return out


def pixel_model(k: int = 4, c: int = 3) -> nn.Module:
    """A per-pixel (1x1 conv) model: translation- and flip-equivariant, no context."""
    conv = nn.Conv2d(c, k, 1)
    nn.init.normal_(conv.weight)
    nn.init.normal_(conv.bias)
    return conv.eval()


class Stride4(nn.Module):
    """Stride-4 logits: 4x4 average pooling then a 1x1 conv (a crude segmentor)."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.conv = pixel_model(k)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.avg_pool2d(x, 4))


class Recorder:
    def __init__(self, model) -> None:
        self.model = model
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, x: Tensor) -> Tensor:
        self.shapes.append(tuple(x.shape))
        return self.model(x)


# ----------------------------------------------------------------------------- slide_windows


def test_slide_windows_hand_example() -> None:
    # n = (1024 - 512 + 383) // 384 + 1 = 3; starts 0, 384, 768 -> last snapped to 1024 - 512 = 512.
    wins = slide_windows(1024, 1024, (512, 512), (384, 384))
    assert sorted({y1 for y1, *_ in wins}) == [0, 384, 512]
    assert sorted({x1 for *_, x1, _ in wins}) == [0, 384, 512]
    assert len(wins) == 9
    assert all(y2 - y1 == 512 and x2 - x1 == 512 for y1, y2, x1, x2 in wins)
    # Exact multiple: 896 = 384 + 512 -> two windows, no snapping.
    assert slide_windows(896, 512, 512, 384) == [(0, 512, 0, 512), (384, 896, 0, 512)]
    # Image smaller than the crop: one window, the whole image.
    assert slide_windows(300, 100, (512, 512), (384, 384)) == [(0, 300, 0, 100)]
    # Mixed: rows smaller than the crop, columns larger.
    assert slide_windows(40, 70, 64, 48) == [(0, 40, 0, 64), (0, 40, 6, 70)]


@pytest.mark.parametrize(
    ("h", "w", "crop", "stride"),
    [
        (512, 512, (512, 512), (384, 384)),
        (1024, 1024, (512, 512), (384, 384)),
        (1024, 768, (512, 512), (384, 384)),
        (650, 650, (384, 384), (256, 256)),
        (100, 50, (512, 512), (384, 384)),
        (1000, 1000, (100, 100), (200, 200)),  # stride > crop: gaps, still the formula
        (1, 1, (16, 16), (1, 1)),
        (37, 1000, (32, 64), (7, 60)),
    ],
)
def test_slide_windows_match_official(h, w, crop, stride) -> None:
    assert slide_windows(h, w, crop, stride) == official_windows(h, w, crop, stride)


@settings(max_examples=200, deadline=None)
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    hc=st.integers(1, 120),
    wc=st.integers(1, 120),
    data=st.data(),
)
def test_slide_windows_properties(h, w, hc, wc, data) -> None:
    hs = data.draw(st.integers(1, hc))
    ws = data.draw(st.integers(1, wc))
    wins = slide_windows(h, w, (hc, wc), (hs, ws))
    assert wins == official_windows(h, w, (hc, wc), (hs, ws))
    covered = torch.zeros(h, w, dtype=torch.bool)
    for y1, y2, x1, x2 in wins:
        assert 0 <= y1 < y2 <= h and 0 <= x1 < x2 <= w
        assert (y2 - y1, x2 - x1) == (min(hc, h), min(wc, w))
        covered[y1:y2, x1:x2] = True
    assert bool(covered.all())
    assert len(set(wins)) == len(wins)


def test_slide_inference_rejects_gaps() -> None:
    with pytest.raises(AssertionError, match="uncovered"):
        slide_inference(pixel_model(), torch.zeros(1, 3, 100, 100), crop=16, stride=32)
    with pytest.raises(ValueError):
        slide_windows(10, 10, 0, 1)


# ----------------------------------------------------------------------------- whole_inference


def test_whole_inference_crops_padding() -> None:
    model = Recorder(pixel_model())
    images = torch.randn(2, 3, 250, 333)
    out = whole_inference(model, images, size_divisor=32)
    assert model.shapes == [(2, 3, 256, 352)]
    assert out.shape == (2, 4, 250, 333) and out.dtype == torch.float32
    torch.testing.assert_close(out, model.model(images))


def test_whole_inference_resizes_low_resolution_logits() -> None:
    model = Stride4()
    images = torch.randn(1, 3, 250, 333)
    out = whole_inference(model, images, size_divisor=32, pad_value=-1.0)
    padded = F.pad(images, (0, 352 - 333, 0, 256 - 250), value=-1.0)
    expected = F.interpolate(model(padded), size=(256, 352), mode="bilinear", align_corners=False)[..., :250, :333]
    torch.testing.assert_close(out, expected)


# ----------------------------------------------------------------------------- slide_inference


@pytest.mark.parametrize(
    ("h", "w", "crop", "stride"),
    [(100, 70, 64, 48), (250, 333, (128, 96), (96, 64)), (40, 30, 64, 48), (128, 128, 64, 64)],
)
def test_slide_equals_whole_for_per_pixel_model(h, w, crop, stride) -> None:
    model = pixel_model()
    images = torch.randn(2, 3, h, w)
    out = slide_inference(model, images, crop=crop, stride=stride, batch_windows=3)
    assert out.shape == (2, 4, h, w)
    torch.testing.assert_close(out, whole_inference(model, images), rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 80), w=st.integers(1, 80), crop=st.integers(8, 48), data=st.data())
def test_slide_equals_whole_property(h, w, crop, data) -> None:
    stride = data.draw(st.integers(1, crop))
    seed = data.draw(st.integers(0, 2**31 - 1))
    model = pixel_model(k=2)
    images = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed))  # reproducible by hypothesis
    out = slide_inference(model, images, crop=crop, stride=stride, batch_windows=16)
    # a pixel is the float32 mean of up to crop**2 window logits (stride 1): allow that summation error
    torch.testing.assert_close(out, model(images), rtol=1e-4, atol=1e-4)


def test_slide_overlaps_are_averaged_by_hand() -> None:
    # Image 32x48, crop 32, stride 16 -> windows at x1 = 0 and 16. Each crop's logits are the constant value
    # of its top-left pixel: a = 1 (window 0), b = 3 (window 1). Columns 0-15: a; 16-31: (a+b)/2; 32-47: b.
    def model(x: Tensor) -> Tensor:
        return x[:, :1, :1, :1].expand(-1, 1, x.shape[2] // 4, x.shape[3] // 4)

    images = torch.zeros(1, 3, 32, 48)
    images[0, 0, 0, 0] = 1.0
    images[0, 0, 0, 16] = 3.0
    out = slide_inference(model, images, crop=(32, 32), stride=(16, 16))
    expected = torch.cat([torch.full((32, 16), v) for v in (1.0, 2.0, 3.0)], dim=1)
    torch.testing.assert_close(out[0, 0], expected)


@pytest.mark.parametrize("batch_windows", [1, 3, 8, 100])
def test_slide_stride4_matches_window_by_window_oracle(batch_windows) -> None:
    model = Stride4(k=3)
    images = torch.randn(2, 3, 90, 77)
    crop, stride = (48, 40), (32, 24)
    out = slide_inference(model, images, crop=crop, stride=stride, batch_windows=batch_windows)
    assert out.shape == (2, 3, 90, 77)

    total = torch.zeros(2, 3, 90, 77)
    count = torch.zeros(90, 77)
    for y1, y2, x1, x2 in official_windows(90, 77, crop, stride):
        x = images[:, :, y1:y2, x1:x2]
        ph, pw = -x.shape[2] % 16, -x.shape[3] % 16
        logits = model(F.pad(x, (0, pw, 0, ph)))
        logits = F.interpolate(logits, size=(x.shape[2] + ph, x.shape[3] + pw), mode="bilinear", align_corners=False)
        total[:, :, y1:y2, x1:x2] += logits[..., : x.shape[2], : x.shape[3]]
        count[y1:y2, x1:x2] += 1
    assert count.max() > 1  # the windows do overlap
    torch.testing.assert_close(out, total / count, rtol=1e-5, atol=1e-5)


def test_slide_pads_crops_to_size_divisor_and_batches() -> None:
    images = torch.randn(2, 3, 40, 70)  # rows smaller than the crop: windows are 40x64 -> padded to 48x64
    model = Recorder(Stride4())
    out = slide_inference(model, images, crop=64, stride=48, batch_windows=8)
    assert out.shape == (2, 3, 40, 70)
    assert model.shapes == [(4, 3, 48, 64)]  # 2 windows x 2 images in one forward

    model.shapes.clear()
    slide_inference(model, images, crop=64, stride=48, batch_windows=1)
    assert model.shapes == [(2, 3, 48, 64), (2, 3, 48, 64)]  # at least one window of every image

    model.shapes.clear()
    slide_inference(model, torch.randn(1, 3, 100, 100), crop=64, stride=32, batch_windows=4)
    assert model.shapes == [(4, 3, 64, 64), (4, 3, 64, 64), (1, 3, 64, 64)]  # 9 windows

    model.shapes.clear()
    slide_inference(model, images, crop=64, stride=48, pad_to_crop=True)
    assert model.shapes == [(4, 3, 64, 64)]


def test_slide_num_classes_checked() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        slide_inference(pixel_model(k=4), torch.randn(1, 3, 32, 32), crop=16, stride=16, num_classes=5)
    out = slide_inference(pixel_model(k=4), torch.randn(1, 3, 32, 32), crop=16, stride=16, num_classes=4)
    assert out.shape == (1, 4, 32, 32)


# ----------------------------------------------------------------------------- TTA


class CoordModel(nn.Module):
    """NOT flip-equivariant: ch0 = image ch0 + column index, ch1 = image ch0 + row index."""

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        xs = torch.arange(w, dtype=x.dtype).expand(h, w)
        ys = torch.arange(h, dtype=x.dtype)[:, None].expand(h, w)
        return torch.stack([x[:, 0] + xs, x[:, 0] + ys], dim=1)


def test_scaled_size_rounds_half_up() -> None:
    assert scaled_size(250, 333, 0.5) == (125, 167)
    assert scaled_size(512, 512, 0.75) == (384, 384)
    assert scaled_size(3, 3, 0.01) == (1, 1)


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "both"])
def test_flip_tta_is_identity_for_equivariant_model(direction) -> None:
    model = pixel_model()
    images = torch.randn(2, 3, 50, 70)
    infer = partial(whole_inference, model)
    out = tta_inference(infer, images, TTAConfig(flip=True, flip_direction=direction))
    torch.testing.assert_close(out, infer(images), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_multiscale_tta_output_shape(mode) -> None:
    images = torch.randn(1, 3, 50, 70)
    tta = TTAConfig(scales=(0.5, 1.0, 1.5), flip=True)
    kwargs = {"crop": 32, "stride": 24} if mode == "slide" else {}
    logits, labels = predict_segmentation(Stride4(), images, mode=mode, tta=tta, **kwargs)
    assert logits.shape == (1, 3, 50, 70)
    assert labels.shape == (1, 50, 70) and labels.dtype == torch.int64


def test_tta_logit_average_matches_manual() -> None:
    model = pixel_model(k=3)
    images = torch.randn(1, 3, 8, 12)
    out = tta_inference(model, images, TTAConfig(scales=(0.5, 2.0), flip=True))

    def up(t: Tensor) -> Tensor:
        return F.interpolate(t, size=(8, 12), mode="bilinear", align_corners=False)

    small = F.interpolate(images, size=(4, 6), mode="bilinear", align_corners=False)
    large = F.interpolate(images, size=(16, 24), mode="bilinear", align_corners=False)
    copies = [
        up(model(small)),
        up(model(small.flip(-1)).flip(-1)),
        up(model(large)),
        up(model(large.flip(-1)).flip(-1)),
    ]
    torch.testing.assert_close(out, sum(copies) / 4)


def test_tta_prob_average() -> None:
    model = Stride4(k=3)
    images = torch.randn(1, 3, 32, 48)
    infer = partial(whole_inference, model)
    out = tta_inference(infer, images, TTAConfig(scales=(0.5, 1.0), average="probs"))
    half = F.interpolate(images, size=(16, 24), mode="bilinear", align_corners=False)
    p = (
        infer(images).softmax(1)
        + F.interpolate(infer(half), size=(32, 48), mode="bilinear", align_corners=False).softmax(1)
    ) / 2
    torch.testing.assert_close(out.softmax(1), p)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(1, 32, 48))


def test_tta_undoes_flips() -> None:
    h, w = 6, 10
    images = torch.randn(1, 3, h, w)
    img0 = images[:, 0]
    xs = torch.arange(w, dtype=torch.float32).expand(h, w)
    ys = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    model = CoordModel()
    torch.testing.assert_close(tta_inference(model, images, TTAConfig()), torch.stack([img0 + xs, img0 + ys], 1))
    # The image term stays aligned only if the input is flipped AND the logits are flipped back; the coordinate
    # term of a flipped copy becomes the mirrored ramp, so its average with the identity copy is constant.
    horizontal = tta_inference(model, images, TTAConfig(flip=True, flip_direction="horizontal"))
    torch.testing.assert_close(horizontal, torch.stack([img0 + (w - 1) / 2, img0 + ys], 1))
    vertical = tta_inference(model, images, TTAConfig(flip=True, flip_direction="vertical"))
    torch.testing.assert_close(vertical, torch.stack([img0 + xs, img0 + (h - 1) / 2], 1))
    # "both": identity + horizontal + vertical copies, e.g. ch0 = (x + (w - 1 - x) + x) / 3.
    both = tta_inference(model, images, TTAConfig(flip=True, flip_direction="both"))
    torch.testing.assert_close(both, torch.stack([img0 + (xs + w - 1) / 3, img0 + (ys + h - 1) / 3], 1))


def test_tta_config_validation() -> None:
    with pytest.raises(ValueError):
        TTAConfig(scales=())
    with pytest.raises(ValueError):
        TTAConfig(flip_direction="diagonal")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TTAConfig(average="max")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- predict_segmentation


def test_predict_segmentation_dispatch_and_labels() -> None:
    model = pixel_model(k=5)
    images = torch.randn(2, 3, 40, 50, requires_grad=True)
    logits, labels = predict_segmentation(model, images)
    assert not logits.requires_grad
    torch.testing.assert_close(logits, model(images).detach())
    assert torch.equal(labels, logits.argmax(1))
    slide_logits, _ = predict_segmentation(model, images, mode="slide", crop=32, stride=16)
    torch.testing.assert_close(slide_logits, logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        predict_segmentation(model, images, mode="sliding")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        predict_segmentation(model, images, crop=32)


def test_predict_single_class_thresholds_sigmoid() -> None:
    def model(x: Tensor) -> Tensor:
        return x[:, :1]

    images = torch.randn(1, 3, 16, 16)
    _, labels = predict_segmentation(model, images)
    assert torch.equal(labels, (images[:, 0] > 0).long())


def test_predict_list_of_sizes() -> None:
    model = Stride4(k=2)
    images = [torch.randn(3, 40, 50), torch.randn(3, 64, 33)]
    logits, labels = predict_segmentation_list(model, images, mode="slide", crop=32, stride=24)
    assert [tuple(t.shape) for t in logits] == [(2, 40, 50), (2, 64, 33)]
    assert [tuple(t.shape) for t in labels] == [(40, 50), (64, 33)]
    with pytest.raises(ValueError):
        predict_segmentation_list(model, [torch.randn(1, 3, 8, 8)])
