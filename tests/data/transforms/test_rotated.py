"""Rotated transforms: the polygons follow the image exactly (a drawn blob stays covered by its transformed
box), flip directions, rect-class angles, dropped objects, keep-ratio resize, padding and rboxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
import torch
from torchvision import tv_tensors

from mtp.data.transforms.rotated import (
    PadToMultiple,
    RandomRotate,
    RandomRotatedFlip,
    ResizeKeepRatio,
    ToRBoxes,
    build_rotated_test_transform,
    build_rotated_train_transform,
    rotate_polygons,
)
from mtp.ops.rotated.boxes import rbox2poly


def raster(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    """bool (h, w): pixels whose centre (x + 0.5, y + 0.5) lies inside the polygon (pixel k covers [k, k+1))."""
    ys, xs = np.mgrid[0:h, 0:w]
    return shapely.contains_xy(shapely.Polygon(np.asarray(poly, float).reshape(4, 2)), xs + 0.5, ys + 0.5)


def make_sample(h: int, w: int, polys, labels=None, difficult=None) -> dict:
    polys = np.asarray(polys, np.float32).reshape(-1, 8)
    image = np.zeros((3, h, w), np.uint8)
    for k, p in enumerate(polys):
        image[k % 3][raster(p, h, w)] = 255
    n = len(polys)
    return {
        "image": tv_tensors.Image(torch.from_numpy(image)),
        "boxes": tv_tensors.BoundingBoxes(
            torch.from_numpy(polys), format="XYXYXYXY", canvas_size=(h, w), clamping_mode=None
        ),
        "labels": torch.as_tensor(labels if labels is not None else list(range(n)), dtype=torch.int64),
        "difficult": torch.as_tensor(difficult if difficult is not None else [False] * n, dtype=torch.bool),
        "image_id": "x",
    }


def assert_blobs_follow_boxes(sample: dict, tol: float = 1.0) -> None:
    """Every bright pixel of channel k % 3 lies inside box k grown by ``tol`` px, and the box shrunk by ``tol``
    is filled (the image and the polygon went through the same geometric map)."""
    image = sample["image"].as_subclass(torch.Tensor).numpy()
    h, w = image.shape[-2:]
    ys, xs = np.mgrid[0:h, 0:w]
    for k, p in enumerate(sample["boxes"].as_subclass(torch.Tensor).numpy()):
        blob = image[k % 3] > 127
        poly = shapely.Polygon(p.reshape(4, 2).astype(float))
        assert blob.any()
        assert shapely.contains_xy(poly.buffer(tol), xs[blob] + 0.5, ys[blob] + 0.5).all()
        core = shapely.contains_xy(poly.buffer(-tol), xs + 0.5, ys + 0.5)
        assert blob[core].all()


# a general (non-rectangular) quadrilateral, a rotated rectangle, a small box
POLYS = [[12, 10, 40, 14, 44, 30, 16, 35], [60, 40, 80, 52, 72, 66, 52, 54], [20, 50, 30, 50, 30, 56, 20, 56]]


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "diagonal"])
def test_flip_maps_polygons_like_the_image(direction):
    sample = make_sample(70, 96, POLYS)
    out = RandomRotatedFlip(p=1.0, directions=(direction,))(sample)
    assert_blobs_follow_boxes(out, tol=0.01)  # flips are exact
    got = out["boxes"].as_subclass(torch.Tensor).reshape(-1, 4, 2)
    src = torch.tensor(POLYS, dtype=torch.float32).reshape(-1, 4, 2)
    want = src.clone()
    if direction in ("horizontal", "diagonal"):
        want[..., 0] = 96 - want[..., 0]
    if direction in ("vertical", "diagonal"):
        want[..., 1] = 70 - want[..., 1]
    for g, t in zip(got, want, strict=True):  # same vertex set (torchvision permutes the order)
        assert sorted(map(tuple, g.tolist())) == sorted(map(tuple, t.tolist()))
    assert out["labels"].tolist() == [0, 1, 2] and tuple(out["boxes"].canvas_size) == (70, 96)


def test_flip_probability_and_uniform_direction():
    torch.manual_seed(0)
    flip = RandomRotatedFlip(p=0.75)
    seen = [flip.make_params([])["direction"] for _ in range(4000)]
    counts = {d: seen.count(d) for d in (None, "horizontal", "vertical", "diagonal")}
    for c in counts.values():
        assert abs(c / 4000 - 0.25) < 0.03, counts
    sample = make_sample(40, 40, POLYS[2:])
    out = RandomRotatedFlip(p=0.0)(sample)
    assert torch.equal(out["boxes"], sample["boxes"]) and torch.equal(out["image"], sample["image"])
    with pytest.raises(ValueError, match="directions"):
        RandomRotatedFlip(directions=("sideways",))


@pytest.mark.parametrize("angle", [90.0, -90.0, 180.0, 33.0, -71.5])
def test_rotate_maps_polygons_like_the_image(angle):
    sample = make_sample(96, 96, POLYS)
    rot = RandomRotate(p=1.0, rect_classes=(5,), rect_angles=(angle,))
    out = rot(make_sample(96, 96, POLYS, labels=[5, 0, 1]))
    assert out["rotate"] == angle and len(out["labels"]) == 3
    assert_blobs_follow_boxes(out, tol=0.01 if angle % 90 == 0 else 0.6)
    if angle == 90.0:  # clockwise on screen, exactly torch.rot90 towards the right
        assert torch.equal(out["image"].as_subclass(torch.Tensor), torch.rot90(sample["image"], k=-1, dims=(-2, -1)))


def test_rotate_non_square_image_uses_uniform_angles():
    torch.manual_seed(3)
    out = RandomRotate(p=1.0, angle_range=180)(make_sample(72, 100, POLYS))
    assert -180 <= out["rotate"] < 180 and out["rotate"] % 90 != 0
    assert tuple(out["image"].shape[-2:]) == (72, 100)
    assert out["labels"].tolist() == [0, 1, 2]  # all centres stay within 31 px of the image centre
    assert_blobs_follow_boxes(out, tol=0.6)


def test_rect_class_rule_picks_one_of_the_four_angles():
    torch.manual_seed(0)
    rot = RandomRotate(p=1.0, angle_range=180, rect_classes=(9, 11))
    with_rect = {rot.sample_angle(torch.tensor([3, 11])) for _ in range(200)}
    assert with_rect == {90.0, 180.0, -90.0, -180.0}
    without = [rot.sample_angle(torch.tensor([3, 4])) for _ in range(200)]
    assert all(-180 <= a < 180 for a in without) and len(set(without)) == 200
    assert all(RandomRotate(p=0.0).sample_angle(torch.tensor([9])) is None for _ in range(20))
    out = RandomRotate(p=0.0)(make_sample(40, 40, POLYS[2:]))
    assert out["rotate"] == 0.0


def test_objects_whose_centre_leaves_are_dropped_with_labels():
    polys = [[40, 40, 60, 40, 60, 60, 40, 60], [1, 1, 9, 1, 9, 9, 1, 9], [90, 45, 98, 45, 98, 55, 90, 55]]
    sample = make_sample(100, 100, polys, labels=[1, 2, 3], difficult=[False, True, True])
    out = RandomRotate(p=1.0, rect_classes=(1,), rect_angles=(45.0,))(sample)
    # (5, 5) -> about (50, -13.6): outside; (94, 50) -> about (81.1, 81.1): inside
    assert out["labels"].tolist() == [1, 3] and out["difficult"].tolist() == [False, True]
    assert out["boxes"].shape == (2, 8)
    centre = rotate_polygons(torch.tensor([[94.0, 50.0] * 4]), 45.0, (50.0, 50.0))[0, :2]
    assert torch.allclose(centre, torch.tensor([50 + 44 / math.sqrt(2), 50 + 44 / math.sqrt(2)]), atol=1e-4)


def test_resize_keep_ratio_scales_polygons_and_records_factors():
    sample = make_sample(77, 200, [[10, 10, 60, 14, 70, 60, 12, 50], [120, 20, 180, 20, 180, 70, 120, 70]])
    out = ResizeKeepRatio(64)(sample)
    # f = 64 / 200 = 0.32: w = 64, h = int(77 * 0.32 + 0.5) = 25
    assert tuple(out["image"].shape[-2:]) == (25, 64) and out["img_hw"] == (25, 64)
    assert out["scale_factor"] == pytest.approx((64 / 200, 25 / 77))
    want = sample["boxes"].as_subclass(torch.Tensor) * torch.tensor([64 / 200, 25 / 77] * 4)
    torch.testing.assert_close(out["boxes"].as_subclass(torch.Tensor), want)
    assert tuple(out["boxes"].canvas_size) == (25, 64)
    big = ResizeKeepRatio(400)(make_sample(77, 200, POLYS))  # upscaling, blob check
    assert tuple(big["image"].shape[-2:]) == (154, 400)
    assert_blobs_follow_boxes(big, tol=1.0)  # 2x bilinear upscaling blurs edges by about 1 px
    kept = ResizeKeepRatio(64, rescale_boxes=False)(sample)
    assert torch.equal(kept["boxes"], sample["boxes"]) and tuple(kept["boxes"].canvas_size) == (77, 200)


def test_pad_to_multiple():
    sample = make_sample(50, 70, POLYS[2:])
    out = PadToMultiple(32)(sample)
    assert tuple(out["image"].shape) == (3, 64, 96) and out["img_hw"] == (50, 70) and out["pad_hw"] == (64, 96)
    assert out["image"][:, 50:].sum() == 0 and out["image"][:, :, 70:].sum() == 0
    assert torch.equal(out["image"][:, :50, :70], sample["image"])
    assert tuple(out["boxes"].canvas_size) == (64, 96) and torch.equal(out["boxes"], sample["boxes"])


def test_to_rboxes_le90_and_empty():
    sample = make_sample(80, 80, [[30, 45, 70, 45, 70, 55, 30, 55], [40, 10, 50, 10, 50, 40, 40, 40]])
    out = ToRBoxes()(sample)
    r = out["rboxes"]
    assert r.dtype == torch.float32 and r.shape == (2, 5)
    torch.testing.assert_close(r[0, :4], torch.tensor([50.0, 50.0, 40.0, 10.0]))
    torch.testing.assert_close(r[1, :4], torch.tensor([45.0, 25.0, 30.0, 10.0]))
    assert abs(float(r[0, 4])) < 1e-6 and abs(float(r[1, 4]) + math.pi / 2) < 1e-6  # le90: vertical -> -pi/2
    assert "boxes" in out
    empty = make_sample(32, 32, np.zeros((0, 8)))
    assert ToRBoxes()(empty)["rboxes"].shape == (0, 5)


def test_train_pipeline_end_to_end():
    torch.manual_seed(0)
    tf = build_rotated_train_transform(64, rotate=True, rect_classes=(9, 11))
    for _ in range(5):
        out = tf(make_sample(90, 120, POLYS, labels=[9, 0, 1]))
        assert out["image"].dtype == torch.float32 and tuple(out["image"].shape) == (3, 64, 64)
        assert out["img_hw"] == (48, 64) and out["pad_hw"] == (64, 64)
        assert out["rotate"] in (0.0, 90.0, 180.0, -90.0, -180.0)
        n = len(out["labels"])
        assert out["rboxes"].shape == (n, 5) and out["boxes"].shape == (n, 8) and out["difficult"].shape == (n,)
        # rboxes are the minimum-area rectangles of the polygons: their corners enclose every vertex
        for rbox, poly in zip(out["rboxes"], out["boxes"].as_subclass(torch.Tensor), strict=True):
            rect = shapely.Polygon(rbox2poly(rbox[None].double())[0].reshape(4, 2).numpy()).buffer(1e-3)
            assert rect.contains(shapely.Polygon(poly.double().reshape(4, 2).numpy()))


def test_test_pipeline_keeps_ground_truth_in_original_pixels():
    sample = make_sample(90, 120, POLYS)
    out = build_rotated_test_transform(64)(sample)
    assert tuple(out["image"].shape) == (3, 64, 64) and out["scale_factor"] == pytest.approx((64 / 120, 48 / 90))
    assert torch.equal(out["boxes"], sample["boxes"])
    scaled = build_rotated_test_transform(64, rescale_boxes=True)(make_sample(90, 120, POLYS))
    factor = torch.tensor([64 / 120, 48 / 90])
    torch.testing.assert_close(scaled["boxes"].as_subclass(torch.Tensor), out["boxes"] * factor.repeat(4))
    # rectangles (objects 1, 2; object 0 is a general quad with two near-equal minAreaRect candidates)
    torch.testing.assert_close(scaled["rboxes"][1:, :2], out["rboxes"][1:, :2] * factor)
