"""Rotated-detection transforms on torchvision.transforms.v2, acting jointly on the image and the polygons.

Samples are the dicts of :mod:`mtp.data.datasets.rotated`: ``"image"`` (``tv_tensors.Image`` (3, H, W)),
``"boxes"`` (``tv_tensors.BoundingBoxes`` XYXYXYXY (N, 8) float32, ``clamping_mode=None``), ``"labels"``
int64 (N,), ``"difficult"`` bool (N,), plus strings / tuples that pass through. Objects stay 8-point polygons
through the augmentations and become rboxes in the last step (:class:`ToRBoxes`), so no information is lost
before minAreaRect. Random numbers come from torch's global generator (DataLoader worker seeding).

Coordinate frame: pixel k covers [k, k + 1) (the frame of mmrotate's formulas and of RoIAlign
``aligned=True``): a flip maps x → W − x, a resize by (sx, sy) maps x → sx·x, and a rotation turns the image
and the polygons about the same point (W/2, H/2) (mmrotate rotates boxes about (W/2, H/2) too,
docs/CONVENTIONS.md#transforms-on-rotated-boxes). Positive angles turn clockwise on screen (y down), like θ.

torchvision 0.29 and ``XYXYXYXY`` boxes: ``F.horizontal_flip`` / ``F.vertical_flip`` are exact (x → W − x,
vertex order permuted, no clamping) and are used here. ``F.resize``, ``F.rotate`` and ``F.affine`` are *not*
usable for general quadrilaterals: they turn every polygon into a parallelogram (``_parallelogram_to_bounding_
boxes``) and, with the default ``clamping_mode='soft'``, clamp it to the canvas (a box half outside the image
collapses). :class:`ResizeKeepRatio` and :class:`RandomRotate` therefore transform the image with torchvision
and the polygon vertices with their own (exact, linear) math.

Per-sample metadata written here: ``"scale_factor"`` (sx, sy) = new/old size of the resize (map predictions
back to original pixels by dividing x by sx and y by sy), ``"img_hw"`` (after resize, before padding),
``"pad_hw"`` (after padding), ``"flip"`` (direction or None), ``"rotate"`` (degrees, 0 when not applied).
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from mtp.data.transforms.segmentation import Normalize, rescale_size

__all__ = [
    "PER_OBJECT_KEYS",
    "Normalize",
    "PadToMultiple",
    "RandomRotate",
    "RandomRotatedFlip",
    "ResizeKeepRatio",
    "ToRBoxes",
    "build_rotated_test_transform",
    "build_rotated_train_transform",
    "rotate_polygons",
]

PER_OBJECT_KEYS = ("labels", "difficult")  # filtered together with "boxes"
FLIP_DIRECTIONS = ("horizontal", "vertical", "diagonal")


def _image_hw(sample: dict[str, Any]) -> tuple[int, int]:
    image = sample.get("image")
    if not isinstance(image, torch.Tensor):
        raise TypeError("rotated transforms need a sample dict with an 'image' tensor (3, H, W)")
    return int(image.shape[-2]), int(image.shape[-1])


def _with_canvas(boxes: tv_tensors.BoundingBoxes, data: torch.Tensor, hw: tuple[int, int]) -> tv_tensors.BoundingBoxes:
    return tv_tensors.wrap(data.to(boxes.dtype), like=boxes, canvas_size=(int(hw[0]), int(hw[1])))


def _check_polygons(boxes: Any) -> None:
    if not isinstance(boxes, tv_tensors.BoundingBoxes) or boxes.format != tv_tensors.BoundingBoxFormat.XYXYXYXY:
        raise TypeError(f"'boxes' must be tv_tensors.BoundingBoxes in XYXYXYXY format, got {type(boxes).__name__}")


class _SampleTransform(v2.Transform, metaclass=ABCMeta):
    """A transform of the whole sample dict (it adds keys or removes objects, which per-leaf v2 transforms
    cannot do), like torchvision's ``SanitizeBoundingBoxes``. Subclasses implement :meth:`apply`."""

    def forward(self, *inputs: Any) -> Any:
        sample = inputs[0] if len(inputs) == 1 else None
        if not isinstance(sample, dict):
            raise TypeError(f"{type(self).__name__} takes one sample dict")
        return self.apply(dict(sample))

    @abstractmethod
    def apply(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Return the transformed copy of ``sample`` (a shallow copy is passed in)."""


class RandomRotatedFlip(v2.Transform):
    """mmrotate ``RandomFlip(prob=p, direction=[...])``: with probability ``p`` flip in one of ``directions``
    chosen uniformly ('diagonal' = both axes). MTP: p 0.75 over h/v/d, i.e. 0.25 each
    (docs/RECIPES.md#rotated-detection). Boxes use torchvision's exact XYXYXYXY flip kernels (x → W − x)."""

    def __init__(self, p: float = 0.75, directions: Sequence[str] = FLIP_DIRECTIONS) -> None:
        super().__init__()
        bad = [d for d in directions if d not in FLIP_DIRECTIONS]
        if bad or not directions:
            raise ValueError(f"directions must be a non-empty subset of {FLIP_DIRECTIONS}, got {tuple(directions)}")
        self.p = float(p)
        self.directions = tuple(directions)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if torch.rand(()).item() >= self.p:
            return {"direction": None}
        return {"direction": self.directions[int(torch.randint(len(self.directions), ()).item())]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        direction = params["direction"]
        if direction is None or not isinstance(inpt, (tv_tensors.Image, tv_tensors.BoundingBoxes, tv_tensors.Mask)):
            return inpt
        if direction in ("horizontal", "diagonal"):
            inpt = F.horizontal_flip(inpt)
        if direction in ("vertical", "diagonal"):
            inpt = F.vertical_flip(inpt)
        return inpt


def rotate_polygons(polys: torch.Tensor, angle: float, center: tuple[float, float]) -> torch.Tensor:
    """Rotate (N, 8) polygons by ``angle`` degrees, clockwise on screen (y down), about ``center`` (x, y)."""
    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)
    pts = polys.reshape(-1, 4, 2).to(torch.float64)
    x, y = pts[..., 0] - center[0], pts[..., 1] - center[1]
    out = torch.stack([center[0] + cos * x - sin * y, center[1] + sin * x + cos * y], dim=-1)
    return out.reshape(polys.shape).to(polys.dtype)


class RandomRotate(_SampleTransform):
    """mmrotate 1.x ``RandomRotate``: with probability ``p`` rotate by α ~ U[−angle_range, angle_range)
    degrees, or — when any label of the image is in ``rect_classes`` — by a random choice of ``rect_angles``
    (DOTA-v1.0: rect classes 9, 11 = storage-tank, roundabout; docs/RECIPES.md#rotated-detection).

    The image keeps its size and is rotated about its centre (bilinear, corners filled with ``fill``);
    polygons are rotated about the same point; objects whose centre (vertex mean) is no longer strictly
    inside (0, W) × (0, H) are removed with their labels / difficult flags.
    """

    def __init__(
        self,
        p: float = 0.5,
        angle_range: float = 180.0,
        rect_classes: Sequence[int] = (),
        rect_angles: Sequence[float] = (90, 180, -90, -180),
        fill: float | Sequence[float] = 0.0,
    ) -> None:
        super().__init__()
        self.p = float(p)
        self.angle_range = float(angle_range)
        self.rect_classes = tuple(int(c) for c in rect_classes)
        self.rect_angles = tuple(float(a) for a in rect_angles)
        self.fill = fill

    def sample_angle(self, labels: torch.Tensor | None) -> float | None:
        """None (no rotation) or the angle in degrees."""
        if torch.rand(()).item() >= self.p:
            return None
        if self.rect_classes and labels is not None and bool(torch.isin(labels, torch.tensor(self.rect_classes)).any()):
            return self.rect_angles[int(torch.randint(len(self.rect_angles), ()).item())]
        return self.angle_range * (2.0 * torch.rand(()).item() - 1.0)

    def apply(self, sample: dict[str, Any]) -> dict[str, Any]:
        angle = self.sample_angle(sample.get("labels"))
        sample["rotate"] = 0.0 if angle is None else float(angle)
        if angle is None:
            return sample
        h, w = _image_hw(sample)
        fill = list(self.fill) if isinstance(self.fill, Sequence) else self.fill
        # torchvision turns counter-clockwise for positive angles; ours are clockwise on screen.
        sample["image"] = F.rotate(sample["image"], -angle, interpolation=v2.InterpolationMode.BILINEAR, fill=fill)
        boxes = sample.get("boxes")
        if boxes is None:
            return sample
        _check_polygons(boxes)
        polys = rotate_polygons(boxes.as_subclass(torch.Tensor), angle, (w / 2, h / 2))
        centre = polys.reshape(-1, 4, 2).mean(dim=1)
        keep = (centre[:, 0] > 0) & (centre[:, 0] < w) & (centre[:, 1] > 0) & (centre[:, 1] < h)
        sample["boxes"] = _with_canvas(boxes, polys[keep], (h, w))
        for key in PER_OBJECT_KEYS:
            if isinstance(sample.get(key), torch.Tensor):
                sample[key] = sample[key][keep]
        return sample


class ResizeKeepRatio(_SampleTransform):
    """mmdet ``Resize(scale=(S, S), keep_ratio=True)``: the long side becomes S (factor f = S / long side,
    new size ``int(w·f + 0.5)`` × ``int(h·f + 0.5)``, :func:`mtp.data.transforms.segmentation.rescale_size`), bilinear
    without antialiasing (cv2 ``INTER_LINEAR``).

    Records ``"scale_factor"`` = (new_w / w, new_h / h) (multiplied into an existing one) and ``"img_hw"``.
    Polygons are scaled by (sx, sy) when ``rescale_boxes`` (training); with ``rescale_boxes=False`` they stay
    in original pixels (the official val/test pipelines load the annotations after the resize).
    """

    def __init__(self, size: int = 1024, rescale_boxes: bool = True) -> None:
        super().__init__()
        self.size = int(size)
        self.rescale_boxes = rescale_boxes

    def apply(self, sample: dict[str, Any]) -> dict[str, Any]:
        h, w = _image_hw(sample)
        nh, nw = rescale_size((h, w), (self.size, self.size))
        sx, sy = nw / w, nh / h
        sample["image"] = F.resize(
            sample["image"], [nh, nw], interpolation=v2.InterpolationMode.BILINEAR, antialias=False
        )
        old = sample.get("scale_factor", (1.0, 1.0))
        sample["scale_factor"] = (old[0] * sx, old[1] * sy)
        sample["img_hw"] = (nh, nw)
        boxes = sample.get("boxes")
        if boxes is not None and self.rescale_boxes:
            _check_polygons(boxes)
            scale = torch.tensor([sx, sy] * 4, dtype=torch.float64)
            sample["boxes"] = _with_canvas(boxes, boxes.as_subclass(torch.Tensor).to(torch.float64) * scale, (nh, nw))
        return sample


class PadToMultiple(_SampleTransform):
    """Pad the image bottom/right with ``value`` up to multiples of ``divisor`` (mmdet ``pad_size_divisor`` 32;
    apply after :class:`Normalize` so that 0 is the normalised zero). Records ``"img_hw"`` (the size before
    padding) and ``"pad_hw"``; polygons keep their values, the canvas grows."""

    def __init__(self, divisor: int = 32, value: float = 0.0) -> None:
        super().__init__()
        self.divisor = int(divisor)
        self.value = float(value)

    def apply(self, sample: dict[str, Any]) -> dict[str, Any]:
        h, w = _image_hw(sample)
        ph, pw = -(-h // self.divisor) * self.divisor, -(-w // self.divisor) * self.divisor
        image = sample["image"]
        if (ph, pw) != (h, w):
            out = torch.nn.functional.pad(image.as_subclass(torch.Tensor), (0, pw - w, 0, ph - h), value=self.value)
            sample["image"] = tv_tensors.wrap(out, like=image) if isinstance(image, tv_tensors.TVTensor) else out
        sample["img_hw"] = (h, w)
        sample["pad_hw"] = (ph, pw)
        boxes = sample.get("boxes")
        if isinstance(boxes, tv_tensors.BoundingBoxes) and tuple(boxes.canvas_size) == (h, w):
            sample["boxes"] = _with_canvas(boxes, boxes.as_subclass(torch.Tensor), (ph, pw))
        return sample


class ToRBoxes(_SampleTransform):
    """Final step: ``"rboxes"`` (N, 5) float32 = ``mtp.ops.rotated.boxes.poly2rbox(boxes)`` (minAreaRect,
    le90: cx, cy, w, h, θ rad); ``"boxes"`` (the polygons) is kept."""

    def apply(self, sample: dict[str, Any]) -> dict[str, Any]:
        from mtp.ops.rotated.boxes import poly2rbox

        boxes = sample.get("boxes")
        if boxes is None:
            sample["rboxes"] = torch.zeros((0, 5), dtype=torch.float32)
            return sample
        polys = boxes.as_subclass(torch.Tensor).reshape(-1, 8).to(torch.float32)
        rboxes = poly2rbox(polys) if polys.shape[0] else torch.zeros((0, 5))
        sample["rboxes"] = rboxes.to(torch.float32).reshape(-1, 5)
        return sample


def build_rotated_train_transform(
    size: int, rotate: bool = False, rect_classes: Sequence[int] = (), flip_p: float = 0.75
) -> v2.Compose:
    """MTP's mmrotate 1.x training pipeline: ``ResizeKeepRatio(size)`` → ``RandomRotatedFlip(0.75, h/v/d)`` →
    [``RandomRotate(0.5, 180, rect_classes)`` when ``rotate``: DOTA-v1.0 (rect classes (9, 11)) and FAIR1M] →
    ``Normalize`` → ``PadToMultiple(32)`` → ``ToRBoxes``. Output: float32 normalised image (3, Hp, Wp),
    polygons / rboxes in resized pixels."""
    steps: list[v2.Transform] = [ResizeKeepRatio(size), RandomRotatedFlip(p=flip_p)]
    if rotate:
        steps.append(RandomRotate(p=0.5, angle_range=180, rect_classes=rect_classes))
    steps += [Normalize(), PadToMultiple(32), ToRBoxes()]
    return v2.Compose(steps)


def build_rotated_test_transform(size: int, rescale_boxes: bool = False) -> v2.Compose:
    """Evaluation pipeline: ``ResizeKeepRatio(size, rescale_boxes)`` → ``Normalize`` → ``PadToMultiple(32)``
    → ``ToRBoxes``. By default the ground truth stays in original pixels (official val pipeline); divide the
    predictions by ``"scale_factor"`` before comparing."""
    return v2.Compose([ResizeKeepRatio(size, rescale_boxes=rescale_boxes), Normalize(), PadToMultiple(32), ToRBoxes()])
