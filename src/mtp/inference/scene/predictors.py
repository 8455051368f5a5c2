"""Per-task tile predictors: what one batch of scene tiles becomes, for every task family ``mtp`` trains.

A *task* is the LightningModule of a config (``mtp.tasks.*``) or any module with a ``model`` attribute of one of
the model types below; a module can also name its family in a ``scene_family`` attribute. The family decides the
outputs (:data:`FAMILIES`). Every predictor takes normalised tiles (B, C, T, T) on the model's device (C = 3, or 6
for a change pair A‖B) and returns host (numpy / CPU tensor) results in *tile* pixels:

* segmentation / change detection: per tile logits float32 (K, T, T) at the tile size (:class:`TileLogits`), the
  official slide-window computation for one window (padding to a multiple of 16, bilinear resize, crop; as
  :func:`mtp.inference.segmentation.whole_inference`).
* rotated detection: per tile ``{"boxes": (N, 5) float64 le90 rboxes, "scores", "labels"}`` (Oriented R-CNN on
  the tile padded to a multiple of 32, its own test-time NMS / score threshold).
* horizontal detection / instance segmentation: per tile ``{"boxes": (N, 4) float64 xyxy, "scores", "labels"}``
  (0-based labels) plus ``"polygons"``: one GeoJSON-like (Multi)Polygon per box traced from the mask (> 0.5) in
  tile pixel *edges* (Mask R-CNN only).
* classification: softmax probabilities float32 (B, K); tiles are resized (bicubic) to the model's input size
  when they differ from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from affine import Affine
from torch import Tensor, nn

from mtp.inference.outputs import default_palette

__all__ = ["FAMILIES", "TaskInfo", "build_predictor", "task_info"]

FAMILIES = ("segmentation", "change_detection", "rotated_detection", "detection", "classification")


@dataclass(frozen=True)
class TaskInfo:
    """What the scene runner needs to know about a task: ``family`` (one of :data:`FAMILIES`), ``num_classes``,
    ``class_names``, ``palette`` (RGB per class), ``channels`` (3, or 6 for change pairs), default ``tile`` /
    ``overlap`` (the task's own slide settings where it has them) and the model input size ``input_size``."""

    family: str
    num_classes: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    channels: int
    tile: int
    overlap: int
    input_size: int


def _family(task: nn.Module) -> str:
    family = getattr(task, "scene_family", None)
    if family:
        if family not in FAMILIES:
            raise ValueError(f"{type(task).__name__}.scene_family must be one of {FAMILIES}, got {family!r}")
        return family
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    from mtp.models.change_detector import ChangeDetector
    from mtp.models.classifier import ImageClassifier
    from mtp.models.detectors.oriented_rcnn.model import OrientedRCNN
    from mtp.models.segmentor import Segmentor

    model = getattr(task, "model", task)
    for cls, name in ((Segmentor, "segmentation"), (ChangeDetector, "change_detection"),
                      (OrientedRCNN, "rotated_detection"), (GeneralizedRCNN, "detection"), (RetinaNet, "detection"),
                      (ImageClassifier, "classification")):  # fmt: skip
        if isinstance(model, cls):
            return name
    raise ValueError(f"{type(task).__name__} (model {type(model).__name__}) is not a task predict-scene knows: "
                     f"expected one of the mtp task families {FAMILIES}")  # fmt: skip


def _hp(task: nn.Module, key: str, default=None):
    hparams = getattr(task, "hparams", None) or {}
    return hparams.get(key, default) if hasattr(hparams, "get") else default


def task_info(task: nn.Module, class_names: list[str] | None = None) -> TaskInfo:
    """Family, classes and default tiling of ``task`` (``class_names`` overrides the task's own)."""
    family = _family(task)
    model = getattr(task, "model", task)
    num_classes = int(_hp(task, "num_classes") or getattr(model, "num_classes", 0) or 0)
    if family == "change_detection" and not num_classes:
        num_classes = 2
    names = class_names or getattr(task, "class_names", None) or _hp(task, "class_names")
    if not names and family == "change_detection" and num_classes == 2:
        names = ["unchanged", "changed"]
    names = list(names or [f"class_{i}" for i in range(num_classes)])
    if num_classes and len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for a model with {num_classes} classes")
    num_classes = num_classes or len(names)
    palette = getattr(task, "palette", None) or _hp(task, "palette")
    if family == "change_detection" and not palette:
        palette = [(0, 0, 0), (255, 255, 255)]
    palette = tuple(tuple(int(v) for v in c) for c in (palette or default_palette(max(num_classes, 1))))
    input_size = int(_hp(task, "img_size") or getattr(task, "img_size", 512) or 512)
    if family == "segmentation" or (family == "change_detection" and getattr(task, "test_mode", "") == "slide"):
        crop, stride = getattr(task, "crop_size", (input_size,)), getattr(task, "stride", (input_size,))
        tile, overlap = int(crop[0]), int(crop[0]) - int(stride[0])
    elif family == "change_detection":
        tile, overlap = 1024, 256  # the official whole-image test on 1024² LEVIR-CD images, blended
    elif family == "classification":
        tile, overlap = input_size, 0
    else:
        tile, overlap = input_size, round(input_size * 200 / 1024)  # the DOTA split: 1024 px patches, gap 200
    channels = 6 if family == "change_detection" else 3
    return TaskInfo(family, num_classes, tuple(names), palette, channels, tile, max(overlap, 0), input_size)


class TileLogits:
    """The logits of a batch of tiles, resized to the tile size one tile at a time when indexed (a batch of
    full-size logits would be B x K x T x T floats at once): ``logits[k]`` -> float32 numpy (K, T, T)."""

    def __init__(self, low: Tensor, padded_hw: tuple[int, int], hw: tuple[int, int]) -> None:
        self.low, self.padded_hw, self.hw = low, padded_hw, hw

    def __len__(self) -> int:
        return self.low.shape[0]

    def __getitem__(self, k: int) -> np.ndarray:
        full = F.interpolate(self.low[k : k + 1].float(), size=self.padded_hw, mode="bilinear", align_corners=False)
        return full[0, :, : self.hw[0], : self.hw[1]].cpu().numpy()


class DensePredictor:
    """Segmentation / change logits for a batch of full tiles: the per-window part of the official slide rule
    (pad to a multiple of ``size_divisor``, run, bilinear resize to the padded size, crop;
    :func:`mtp.inference.segmentation.whole_inference`), the resize done per tile by :class:`TileLogits`."""

    def __init__(self, model: nn.Module, size_divisor: int = 16) -> None:
        self.model, self.size_divisor = model, size_divisor

    def __call__(self, images: Tensor) -> TileLogits:
        h, w = images.shape[-2:]
        ph, pw = -h % self.size_divisor, -w % self.size_divisor
        x = F.pad(images, (0, pw, 0, ph)) if ph or pw else images
        logits = self.model(x)
        if logits.ndim != 4 or logits.shape[0] != images.shape[0]:
            raise ValueError(f"the model returned {tuple(logits.shape)} for {images.shape[0]} tiles, not (B, K, h, w)")
        return TileLogits(logits, (h + ph, w + pw), (h, w))


class RotatedPredictor:
    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, images: Tensor) -> list[dict]:
        h, w = images.shape[-2:]
        padded = F.pad(images, (0, -w % 32, 0, -h % 32))
        results = self.model(padded, [(h, w)] * images.shape[0])
        return [{"boxes": r["rboxes"].detach().double().cpu(), "scores": r["scores"].detach().float().cpu(),
                 "labels": r["labels"].detach().long().cpu()} for r in results]  # fmt: skip


def mask_polygon(mask: np.ndarray, x0: int, y0: int) -> dict | None:
    """(h, w) bool mask whose top-left pixel is at (x0, y0) -> GeoJSON-like (Multi)Polygon in pixel edges."""
    from rasterio.features import shapes

    polys = [g["coordinates"] for g, v in shapes(mask.astype(np.uint8), mask=mask, connectivity=8,
                                                 transform=Affine.translation(x0, y0)) if v == 1]  # fmt: skip
    if not polys:
        return None
    return {"type": "Polygon", "coordinates": polys[0]} if len(polys) == 1 else {
        "type": "MultiPolygon", "coordinates": polys}  # fmt: skip


class HorizontalPredictor:
    """torchvision R-CNN / RetinaNet on a list of tiles; masks are traced only for detections >= ``score_thr``."""

    def __init__(self, model: nn.Module, label_offset: int, with_masks: bool, score_thr: float = 0.0) -> None:
        self.model, self.label_offset, self.with_masks, self.score_thr = model, label_offset, with_masks, score_thr

    def __call__(self, images: Tensor) -> list[dict]:
        outputs = []
        for r in self.model(list(images)):
            keep = (r["scores"] >= self.score_thr).nonzero().flatten()
            out = {"boxes": r["boxes"][keep].detach().double().cpu(),
                   "scores": r["scores"][keep].detach().float().cpu(),
                   "labels": r["labels"][keep].detach().long().cpu() - self.label_offset}  # fmt: skip
            if self.with_masks and "masks" in r:
                out["polygons"] = self._polygons(r["masks"][keep].detach(), out["boxes"], images.shape[-2:])
            outputs.append(out)
        return outputs

    @staticmethod
    def _polygons(masks: Tensor, boxes: Tensor, hw: tuple[int, int]) -> list[dict | None]:
        polygons = []
        for prob, box in zip(masks, boxes.tolist(), strict=True):
            x1, y1 = max(int(box[0]) - 1, 0), max(int(box[1]) - 1, 0)
            x2, y2 = min(int(box[2]) + 2, hw[1]), min(int(box[3]) + 2, hw[0])
            crop = (prob[0, y1:y2, x1:x2] > 0.5).cpu().numpy()
            polygons.append(mask_polygon(crop, x1, y1) if crop.any() else None)
        return polygons


class ClassificationPredictor:
    def __init__(self, model: nn.Module, input_size: int) -> None:
        self.model, self.input_size = model, input_size

    def __call__(self, images: Tensor) -> np.ndarray:
        if images.shape[-1] != self.input_size or images.shape[-2] != self.input_size:
            images = F.interpolate(images, size=(self.input_size,) * 2, mode="bicubic", align_corners=False)
        return self.model(images).float().softmax(dim=1).cpu().numpy()


def build_predictor(task: nn.Module, info: TaskInfo, score_thr: float = 0.0) -> Callable[[Tensor], object]:
    """The tile predictor of ``task``'s family (see the module docstring); call it under ``torch.no_grad``.
    ``score_thr``: horizontal detections below it are dropped before their masks are traced."""
    model = getattr(task, "model", task)
    if info.family in ("segmentation", "change_detection"):
        return DensePredictor(model)
    if info.family == "rotated_detection":
        return RotatedPredictor(model)
    if info.family == "detection":
        from torchvision.models.detection import RetinaNet

        offset = getattr(task, "label_offset", 0 if isinstance(model, RetinaNet) else 1)
        with_masks = bool(getattr(task, "with_masks", getattr(getattr(model, "roi_heads", None), "has_mask",
                                                             lambda: False)()))  # fmt: skip
        return HorizontalPredictor(model, offset, with_masks, score_thr)
    return ClassificationPredictor(model, info.input_size)
