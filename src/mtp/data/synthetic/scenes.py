"""Seeded procedural aerial-like scenes with exact labels for every task.

``SceneGenerator(seed, size).scene(index)`` is a pure function of (seed, size, object_scale, index): the
per-scene numpy Generator is seeded with ``[seed, index]`` (change pairs use ``[seed, index, 1]``), the
material textures with ``[seed]``. Conventions: images uint8 (H, W, 3) RGB; pixels x right, y down, pixel
centres at integer coordinates; rotated boxes (cx, cy, w, h, theta) in pixels/radians, 'le90'
(w >= h, theta in [-pi/2, pi/2), docs/CONVENTIONS.md#regularisation); horizontal boxes (x1, y1, x2, y2).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mtp.data.synthetic.classes import LAND_COVER_CLASSES, OBJECT_CLASSES, SCENE_CLASSES
from mtp.data.synthetic.geometry import corners_hbox, rbox_corners, regularize_le90
from mtp.data.synthetic.layout import MARKING_RGB, Canvas
from mtp.data.synthetic.shapes import FX, FX_SHIFT, SUN_DIR, Spec
from mtp.data.synthetic.templates import TEMPLATES
from mtp.data.synthetic.textures import GRASS, MATERIAL_CLASS, colour_lut, make_textures

# Scene classes drawn for change pairs (building-rich, like LEVIR-CD) and their probabilities.
CHANGE_SCENE_WEIGHTS = {"residential": 0.45, "industrial": 0.2, "agricultural": 0.15, "forest": 0.1, "highway": 0.1}


@dataclass
class SceneObject:
    """One object instance.

    category: an ``OBJECT_CLASSES`` name; subtype: finer look ('house'/'industrial', 'car'/'truck',
    'motorboat'/'cargo-ship', 'narrow-body'/'wide-body', 'tank'), used to map onto official class lists.
    rbox: (5,) float64 (cx, cy, w, h, theta) px/rad, le90. polygon: (4, 2) float64 corners of ``rbox`` in
    mmrotate 1.x order (docs/CONVENTIONS.md#corners-and-polygons). hbox: (4,) float64 (x1, y1, x2, y2)
    circumscribing ``polygon``.
    mask_crop: (h, w) bool mask of the visible object pixels inside the crop whose top-left pixel is
    ``mask_origin`` = (x0, y0); ``mask`` expands it to the full (H, W) image (``image_hw``).
    difficult: low-contrast object (drawn close to the ground colour, without shadow).
    """

    category: str
    subtype: str
    rbox: np.ndarray
    polygon: np.ndarray
    hbox: np.ndarray
    mask_crop: np.ndarray
    mask_origin: tuple[int, int]
    image_hw: tuple[int, int]
    difficult: bool = False

    @property
    def label(self) -> int:
        """Index of ``category`` in ``OBJECT_CLASSES``."""
        return OBJECT_CLASSES.index(self.category)

    @property
    def mask(self) -> np.ndarray:
        """Full instance mask (H, W) bool."""
        full = np.zeros(self.image_hw, bool)
        x0, y0 = self.mask_origin
        h, w = self.mask_crop.shape
        full[y0 : y0 + h, x0 : x0 + w] = self.mask_crop
        return full


@dataclass
class Scene:
    """A generated scene: ``image`` (H, W, 3) uint8 RGB; ``semantic`` (H, W) uint8 ids of
    ``LAND_COVER_CLASSES`` (background, building, road, water, barren, forest, agricultural = 0..6; vehicles,
    ships, planes and storage tanks keep the class of the ground under them, ``building`` pixels are exactly the
    union of the building masks; shadows keep the class of the shadowed ground); ``objects`` (never
    overlapping, fully inside the image); ``scene_class`` (a ``SCENE_CLASSES`` name: the template the scene
    was drawn from); ``index`` (the generator index)."""

    index: int
    image: np.ndarray
    semantic: np.ndarray
    objects: list[SceneObject]
    scene_class: str

    @property
    def scene_label(self) -> int:
        return SCENE_CLASSES.index(self.scene_class)

    @property
    def rboxes(self) -> np.ndarray:
        """(N, 5) float64 le90 rotated boxes."""
        return np.array([o.rbox for o in self.objects], np.float64).reshape(-1, 5)

    @property
    def hboxes(self) -> np.ndarray:
        """(N, 4) float64 xyxy boxes."""
        return np.array([o.hbox for o in self.objects], np.float64).reshape(-1, 4)

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 indices in ``OBJECT_CLASSES``."""
        return np.array([o.label for o in self.objects], np.int64)

    def instance_map(self) -> np.ndarray:
        """(H, W) int32: 0 = no object, k + 1 = ``objects[k]`` (objects never overlap)."""
        out = np.zeros(self.semantic.shape, np.int32)
        for k, o in enumerate(self.objects):
            x0, y0 = o.mask_origin
            h, w = o.mask_crop.shape
            out[y0 : y0 + h, x0 : x0 + w][o.mask_crop] = k + 1
        return out


@dataclass
class _Layout:
    scene_class: str
    canvas: Canvas
    offset: tuple[int, int]
    flip: tuple[bool, bool]
    lut: np.ndarray


class SceneGenerator:
    """Procedural generator of aerial-like scenes (see the module docstring).

    Args:
        seed: dataset seed. size: image size, int or (H, W), in pixels.
        object_scale: multiplies every object/road size (1.0 ~ 0.5 m/px, DOTA-like objects).
        scene_classes: the classes ``scene(index)`` draws uniformly from (default: all ``SCENE_CLASSES``).
    Speed (one core): ~3.3 ms per 256 x 256 scene, ~12 ms at 512; textures (16 materials, (H + pad) x (W + pad)
    packed RGBA, 7 MB at 256, 105 MB at 1024) are precomputed in ``__init__``. Change pairs ignore
    ``scene_classes`` and draw from ``CHANGE_SCENE_WEIGHTS``.
    """

    def __init__(
        self,
        seed: int = 0,
        size: int | tuple[int, int] = 256,
        *,
        object_scale: float = 1.0,
        scene_classes: Sequence[str] = SCENE_CLASSES,
    ) -> None:
        self.seed = int(seed)
        self.height, self.width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.object_scale = float(object_scale)
        unknown = set(scene_classes) - set(SCENE_CLASSES)
        if unknown:
            raise ValueError(f"unknown scene classes {sorted(unknown)}; choose from {SCENE_CLASSES}")
        self.scene_classes = tuple(scene_classes)
        pad = max(32, min(self.height, self.width) // 4)
        self._tex_hw = (self.height + pad, self.width + pad)
        rng = np.random.default_rng([self.seed])
        self._textures = make_textures(rng, *self._tex_hw).reshape(-1)
        self._noise = np.clip(rng.normal(0, 3.0, (*self._tex_hw, 3)), -12, 12).astype(np.int16)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    # -- public API -------------------------------------------------------------------------------------------
    def scene(self, index: int, *, scene_class: str | None = None, exclude: Collection[str] = ()) -> Scene:
        """Scene ``index``, a pure function of (generator settings, index, scene_class, exclude).

        ``scene_class`` forces the template (the scene then differs from the unforced scene ``index``);
        ``exclude`` lists object categories left out (not drawn, not labelled; the rest of the layout is
        unchanged), e.g. ``("building",)``."""
        if scene_class is not None and scene_class not in SCENE_CLASSES:
            raise ValueError(f"unknown scene class {scene_class!r}; choose from {SCENE_CLASSES}")
        rng = np.random.default_rng([self.seed, int(index)])
        if scene_class is None:
            scene_class = self.scene_classes[int(rng.integers(len(self.scene_classes)))]
        layout = self._layout(rng, scene_class)
        specs = [s for s in layout.canvas.specs if s.category not in exclude]
        return self._render(index, layout, specs)

    def change_pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bi-temporal pair ``(image_a, image_b, change)``: uint8 (H, W, 3) RGB twice and (H, W) uint8 {0, 1}.

        B shows the same layout as A with ~20 % of the buildings removed and ~20 % added (10 % of pairs have
        no change); ``change`` = pixels of the added/removed building footprints. Not changes: a global
        radiometric difference (per-channel gain/bias), sensor noise, moved vehicles and the shadows of
        changed buildings."""
        a, b, change = self.change_pair_scenes(index)
        return a.image, b.image, change

    def change_pair_scenes(self, index: int) -> tuple[Scene, Scene, np.ndarray]:
        """Like :meth:`change_pair` but returns the two full :class:`Scene` objects."""
        rng = np.random.default_rng([self.seed, int(index), 1])
        names = list(CHANGE_SCENE_WEIGHTS)
        scene_class = names[int(rng.choice(len(names), p=list(CHANGE_SCENE_WEIGHTS.values())))]
        layout = self._layout(rng, scene_class)
        p_change = 0.0 if rng.random() < 0.1 else 0.2
        specs_a, specs_b, changed = [], [], []
        for spec in layout.canvas.specs:
            r = rng.random()
            if spec.category == "building":
                in_a, in_b = r >= p_change, r < 1 - p_change
            else:
                in_a, in_b = r < 0.8, r >= 0.2
            specs_a += [spec] if in_a else []
            specs_b += [spec] if in_b else []
            if spec.category == "building" and in_a != in_b:
                changed.append(spec)
        scene_a = self._render(index, layout, specs_a)
        gain = np.clip(rng.normal(1.0, 0.08, 3) + rng.normal(0, 0.05), 0.8, 1.2).astype(np.float32)
        layout.lut = colour_lut(gain, rng.uniform(-12, 12, 3).astype(np.float32))
        scene_b = self._render(index, layout, specs_b)
        oy, ox = (int(rng.integers(0, t - s + 1)) for t, s in zip(self._tex_hw, self.size, strict=True))
        noise = self._noise[oy : oy + self.height, ox : ox + self.width]
        scene_b.image = np.clip(scene_b.image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        change = np.zeros(self.size, np.uint8)
        for spec in changed:
            for p in spec.parts_fx:
                cv2.fillConvexPoly(change, p, 1, cv2.LINE_8, FX_SHIFT)
        return scene_a, scene_b, change

    # -- internals --------------------------------------------------------------------------------------------
    def _layout(self, rng: np.random.Generator, scene_class: str) -> _Layout:
        canvas = Canvas(rng, self.height, self.width, self.object_scale, GRASS)
        TEMPLATES[scene_class](canvas)
        (th, tw), (h, w) = self._tex_hw, self.size
        offset = (int(rng.integers(0, th - h + 1)), int(rng.integers(0, tw - w + 1)))
        flip = (bool(rng.integers(2)), bool(rng.integers(2)))
        gain = np.clip(rng.normal(1.0, 0.03, 3) + rng.normal(0, 0.03), 0.9, 1.1).astype(np.float32)
        lut = colour_lut(gain, rng.uniform(-6, 6, 3).astype(np.float32))
        return _Layout(scene_class, canvas, offset, flip, lut)

    def _render(self, index: int, layout: _Layout, specs: list[Spec]) -> Scene:
        canvas, (h, w), (th, tw) = layout.canvas, self.size, self._tex_hw
        material = canvas.ground.copy()
        for spec in specs:
            for p, (_, colour) in zip(spec.parts_fx, spec.parts, strict=True):
                if isinstance(colour, int):
                    cv2.fillConvexPoly(material, p, colour, cv2.LINE_8, FX_SHIFT)
        semantic = MATERIAL_CLASS[material]
        rows = np.arange(h) + layout.offset[0]
        cols = np.arange(w) + layout.offset[1]
        rows, cols = (rows[::-1] if layout.flip[0] else rows), (cols[::-1] if layout.flip[1] else cols)
        idx = material.astype(np.intp) * (th * tw) + (rows[:, None] * tw + cols[None, :])
        rgba = np.take(self._textures, idx).view(np.uint8).reshape(h, w, 4)
        image = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
        if canvas.markings:
            cv2.polylines(image, canvas.markings, False, MARKING_RGB, 1, cv2.LINE_8, FX_SHIFT)
        self._shadows(image, specs)
        for spec in specs:
            for p, (_, colour) in zip(spec.parts_fx, spec.parts, strict=True):
                if not isinstance(colour, int):
                    cv2.fillConvexPoly(image, p, colour, cv2.LINE_8, FX_SHIFT)
            for pts, colour, thickness in spec.details:
                fx = np.round(pts * FX).astype(np.int32)
                if thickness < 0:
                    cv2.fillConvexPoly(image, fx, colour, cv2.LINE_8, FX_SHIFT)
                else:
                    cv2.polylines(image, [fx], len(pts) > 2, colour, thickness, cv2.LINE_8, FX_SHIFT)
        image = cv2.LUT(image, layout.lut)
        objects = [self._object(spec) for spec in specs]
        return Scene(int(index), image, semantic, objects, layout.scene_class)

    def _shadows(self, image: np.ndarray, specs: list[Spec]) -> None:
        """Darken the ground where objects cast shadows (fixed sun direction ``SUN_DIR``); roofs stay lit."""
        shadow = np.zeros(image.shape[:2], np.uint8)
        for spec in specs:
            if spec.shadow > 0:
                d = np.round(np.array(SUN_DIR) * spec.shadow * FX).astype(np.int32)
                for p in spec.parts_fx:
                    cv2.fillConvexPoly(shadow, cv2.convexHull(np.concatenate([p, p + d])), 1, cv2.LINE_8, FX_SHIFT)
        for spec in specs:
            if spec.category == "building":
                for p in spec.parts_fx:
                    cv2.fillConvexPoly(shadow, p, 0, cv2.LINE_8, FX_SHIFT)
        cv2.copyTo(cv2.convertScaleAbs(image, alpha=0.55), shadow, image)

    def _object(self, spec: Spec) -> SceneObject:
        rbox = np.array(regularize_le90(*spec.rbox))
        polygon = rbox_corners(rbox)
        allfx = np.concatenate(spec.parts_fx)
        x0, y0 = (int(v) for v in allfx.min(axis=0) // FX - 1)
        x1, y1 = (int(v) for v in allfx.max(axis=0) // FX + 2)
        crop = np.zeros((y1 - y0, x1 - x0), np.uint8)
        origin = np.array([x0, y0], np.int32) * FX
        for p in spec.parts_fx:
            cv2.fillConvexPoly(crop, p - origin, 1, cv2.LINE_8, FX_SHIFT)
        return SceneObject(
            spec.category, spec.subtype, rbox, polygon, corners_hbox(polygon), crop.astype(bool), (x0, y0),
            self.size, spec.difficult,
        )  # fmt: skip


def land_cover_fractions(semantic: np.ndarray) -> dict[str, float]:
    """Fraction of pixels per ``LAND_COVER_CLASSES`` entry."""
    counts = np.bincount(semantic.reshape(-1), minlength=len(LAND_COVER_CLASSES))
    return {name: float(c) / semantic.size for name, c in zip(LAND_COVER_CLASSES, counts, strict=False)}
