"""SceneGenerator: determinism, basic statistics, label consistency, change pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtp.data.synthetic import (
    LAND_COVER_CLASSES,
    OBJECT_CLASSES,
    SCENE_CLASSES,
    SceneGenerator,
    land_cover_fractions,
    rbox_corners,
)

SUBTYPES = {
    "building": {"house", "industrial"},
    "small-vehicle": {"car"},
    "large-vehicle": {"truck"},
    "ship": {"motorboat", "cargo-ship"},
    "plane": {"narrow-body", "wide-body"},
    "storage-tank": {"tank"},
}


@pytest.fixture(scope="module")
def gen() -> SceneGenerator:
    return SceneGenerator(seed=3, size=256)


@pytest.fixture(scope="module")
def scenes(gen) -> list:
    """Two scenes of every scene class plus 10 unforced ones."""
    forced = [gen.scene(100 + i, scene_class=c) for i, c in enumerate(SCENE_CLASSES * 2)]
    return forced + [gen.scene(i) for i in range(10)]


def _same(a, b) -> bool:
    if not (np.array_equal(a.image, b.image) and np.array_equal(a.semantic, b.semantic)):
        return False
    if a.scene_class != b.scene_class or len(a.objects) != len(b.objects):
        return False
    return all(
        o.category == p.category and np.array_equal(o.rbox, p.rbox) and np.array_equal(o.mask, p.mask)
        for o, p in zip(a.objects, b.objects, strict=True)
    )


def test_determinism(gen):
    other = SceneGenerator(seed=3, size=256)
    for i in (0, 5):
        assert _same(gen.scene(i), other.scene(i))
    assert not np.array_equal(gen.scene(0).image, gen.scene(1).image)
    assert not np.array_equal(gen.scene(0).image, SceneGenerator(seed=4, size=256).scene(0).image)
    a, b = gen.change_pair(2), other.change_pair(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_basic_statistics(scenes):
    present = set()
    for s in scenes:
        assert s.image.dtype == np.uint8 and s.image.shape == (256, 256, 3)
        assert s.semantic.dtype == np.uint8 and s.semantic.shape == (256, 256)
        assert s.semantic.max() < len(LAND_COVER_CLASSES)
        assert s.scene_class in SCENE_CLASSES and s.scene_label == SCENE_CLASSES.index(s.scene_class)
        assert 20 < s.image.mean() < 220 and s.image.std() > 10
        present |= set(np.unique(s.semantic).tolist())
    assert present == set(range(len(LAND_COVER_CLASSES)))
    categories = {o.category for s in scenes for o in s.objects}
    assert categories == set(OBJECT_CLASSES)


def test_scene_class_signatures(scenes):
    """The forced templates have their documented dominant content (what makes them learnable)."""
    for s in scenes[: 2 * len(SCENE_CLASSES)]:
        f = land_cover_fractions(s.semantic)
        cats = [o.category for o in s.objects]
        check = {
            "agricultural": f["agricultural"] > 0.4,
            "airport": "plane" in cats and f["road"] > 0.08,
            "forest": f["forest"] > 0.5,
            "highway": f["road"] > 0.12 and cats.count("small-vehicle") + cats.count("large-vehicle") >= 5,
            "industrial": f["building"] > 0.03 and "storage-tank" in cats,
            "residential": cats.count("building") >= 10,
            "water": f["water"] > 0.2 and "ship" in cats,
        }[s.scene_class]
        assert check, (s.scene_class, f, cats)


def test_class_colours_are_separable(scenes):
    means = []
    for c in range(len(LAND_COVER_CLASSES)):
        pix = np.concatenate([s.image[s.semantic == c] for s in scenes]).astype(float)
        means.append(pix.mean(axis=0))
    d = np.linalg.norm(np.array(means)[:, None] - np.array(means)[None], axis=-1)
    assert d[~np.eye(len(means), dtype=bool)].min() > 30


def test_object_labels_are_consistent(scenes):
    for s in scenes:
        inst = s.instance_map()
        union = np.zeros(s.semantic.shape, int)
        buildings = np.zeros(s.semantic.shape, bool)
        for o in s.objects:
            assert o.subtype in SUBTYPES[o.category]
            cx, cy, w, h, t = o.rbox
            assert w >= h and -math.pi / 2 <= t < math.pi / 2  # le90
            np.testing.assert_allclose(o.polygon, rbox_corners(o.rbox))
            np.testing.assert_allclose(o.hbox, [*o.polygon.min(0), *o.polygon.max(0)])
            m = o.mask
            assert m.shape == s.semantic.shape and m.sum() > 0
            union += m
            buildings |= m if o.category == "building" else False
            ys, xs = np.nonzero(m)  # every mask pixel inside the rbox, up to rasterisation (1 px)
            u = (xs - cx) * math.cos(t) + (ys - cy) * math.sin(t)
            v = -(xs - cx) * math.sin(t) + (ys - cy) * math.cos(t)
            assert np.all(np.abs(u) <= w / 2 + 1) and np.all(np.abs(v) <= h / 2 + 1)
            assert m.sum() <= (w + 2) * (h + 2)
        assert union.max() <= 1  # objects never overlap
        np.testing.assert_array_equal(inst > 0, union > 0)
        np.testing.assert_array_equal(s.semantic == 1, buildings)
        assert s.rboxes.shape == (len(s.objects), 5) and s.hboxes.shape == (len(s.objects), 4)
        assert [OBJECT_CLASSES[i] for i in s.labels] == [o.category for o in s.objects]


def test_difficult_objects_exist_and_rectangles_fill_their_box(gen):
    objs = [o for i in range(30) for o in gen.scene(200 + i, scene_class="highway").objects]
    assert any(o.difficult for o in objs) and not all(o.difficult for o in objs)
    cars = [o for o in objs if o.category == "small-vehicle"]
    for o in cars:  # a car is a filled rectangle: area ~ w * h
        assert abs(o.mask.sum() - o.rbox[2] * o.rbox[3]) <= o.rbox[2] + o.rbox[3] + 2


def test_exclude_and_non_square_size():
    gen = SceneGenerator(seed=1, size=(96, 160))
    s = gen.scene(0, scene_class="residential", exclude=("building",))
    assert s.image.shape == (96, 160, 3) and s.semantic.shape == (96, 160)
    assert all(o.category != "building" for o in s.objects) and not (s.semantic == 1).any()
    full = gen.scene(0, scene_class="residential")
    assert any(o.category == "building" for o in full.objects)
    with pytest.raises(ValueError):
        SceneGenerator(0, 64, scene_classes=("desert",))
    with pytest.raises(ValueError):
        gen.scene(0, scene_class="desert")


def test_change_pairs(gen):
    n_changed = 0
    for i in range(6):
        a, b, change = gen.change_pair_scenes(i)
        assert change.dtype == np.uint8 and set(np.unique(change).tolist()) <= {0, 1}
        # change = building footprints present at exactly one date
        np.testing.assert_array_equal(change == 1, (a.semantic == 1) ^ (b.semantic == 1))
        # everything but buildings keeps its land-cover class
        same = change == 0
        np.testing.assert_array_equal(a.semantic[same], b.semantic[same])
        # a global radiometric difference that is not change
        unchanged = same & (a.semantic != 1)
        diff = np.abs(a.image.astype(int) - b.image.astype(int))[unchanged]
        assert diff.mean() > 1.0
        n_changed += int(change.any())
        img_a, img_b, ch = gen.change_pair(i)
        assert np.array_equal(img_a, a.image) and np.array_equal(img_b, b.image) and np.array_equal(ch, change)
    assert n_changed >= 3
