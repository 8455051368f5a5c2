"""The official MTP pretraining pipelines for SAMRS samples (docs/RECIPES.md#pretraining-augmentation), run per
sample in the DataLoader workers (the official code augments serially in the main process).

Input: the sample dict of :class:`mtp.data.datasets.samrs.SAMRSDataset` (image uint8 (3, H, W) RGB, semantic
uint8 (H, W) already +1-shifted, boxes (N, 4) xyxy, labels, ``masks`` (N, H, W) or lazy ``rles``, rboxes (M, 5)
le90, rlabels). Coordinates: pixel k covers [k, k + 1) (mmdet / mmrotate); a flip maps x → W − x.

Training (:class:`SAMRSTrainTransform`, square target ``S``), random numbers from torch's global generator:

1. flip with probability 0.75, split evenly over horizontal / vertical / diagonal (both axes): image, boxes,
   rboxes (:func:`~mtp.ops.rotated.boxes.flip_rboxes`), masks, semantic map;
2. resize: r ~ U(0.5, 2), target (int(S·r), int(S·r)), keep ratio
   (:func:`~mtp.data.transforms.segmentation.rescale_size`);
   image bilinear (OpenCV ``INTER_LINEAR`` on uint8), masks / semantic nearest (OpenCV ``INTER_NEAREST`` index
   rule ``floor(dst · src/dst)``); hboxes scaled and clipped to the image; rboxes scaled
   (:func:`~mtp.ops.rotated.boxes.rescale_rboxes`) with their centres clamped to the image (mmrotate ``clip_``);
3. crop to S×S at a uniform offset (the whole image when smaller): hboxes translated, clipped, kept when they
   still overlap the crop; masks cropped; hboxes then recomputed from the cropped masks ([xmin, ymin, xmax + 1,
   ymax + 1]); rboxes translated (not clipped) and kept when the centre is strictly inside the crop;
4. instance filter: keep w, h > 1e-5 and mask area ≥ 1; when instances overlapped the crop but none survives,
   the transform returns None (the dataset then draws another random image);
5. :class:`~mtp.data.transforms.photometric.PhotoMetricDistortion` on the uint8 crop;
6. normalise (mean 123.675, 116.28, 103.53; std 58.395, 57.12, 57.375; RGB) and pad bottom/right to exactly
   S×S: image 0, masks 0, semantic 255.

Steps 2–3 are computed as one plan: the image is resized whole and cropped; masks and the semantic map are
gathered directly at the crop's source indices (identical to resize-then-crop with nearest neighbour), and only
the instances whose box overlaps the crop are decoded.

Training output: ``"image"`` float32 (3, S, S); ``"semantic"`` int64 (S, S) (0 background, c + 1 class c,
255 padding); ``"boxes"`` float32 (K, 4) xyxy crop pixels; ``"labels"`` int64 (K,); ``"masks"`` uint8 (K, S, S);
``"rboxes"`` float32 (M, 5) le90 crop pixels; ``"rlabels"`` int64 (M,); ``"scale_factor"`` (sx, sy) of the
resize; ``"img_hw"`` the crop size before padding; ``"flip"`` the direction or None; ``"crop_offset"`` (top,
left) of the crop in the resized image; ``image_id``,
``image_path``, ``ori_hw`` pass through.

Evaluation (:class:`SAMRSEvalTransform`): keep-ratio resize of the image to S (bilinear), normalise, pad to a
multiple of 32; every target stays at the ORIGINAL resolution (``"semantic"`` int64 (H, W), ``"masks"`` uint8
(N, H, W), boxes / rboxes in original pixels): divide predictions by ``"scale_factor"`` before comparing.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torchvision import tv_tensors

from mtp.data.datasets.samrs import coded_rle, decode_rle_columns, decode_rles
from mtp.data.transforms.photometric import PhotoMetricDistortion
from mtp.data.transforms.segmentation import IMAGENET_MEAN, IMAGENET_STD, rescale_size
from mtp.ops.rotated.boxes import flip_rboxes, norm_angle, rescale_rboxes

__all__ = [
    "FLIP_DIRECTIONS",
    "SAMRSEvalTransform",
    "SAMRSTrainTransform",
    "crop_instances",
    "masks_to_boxes",
    "normalize_image",
]

FLIP_DIRECTIONS = ("horizontal", "vertical", "diagonal")


def _plain(x: Any) -> Any:
    return x.as_subclass(torch.Tensor) if isinstance(x, torch.Tensor) else x


def normalize_image(hwc: np.ndarray, pad_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 (h, w, 3) RGB → float32 (3, Hp, Wp) ``(x - mean) / std``, zero-padded bottom/right to ``pad_hw``."""
    h, w = hwc.shape[:2]
    ph, pw = pad_hw or (h, w)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    out = torch.zeros((3, ph, pw), dtype=torch.float32)
    out[:, :h, :w] = (torch.from_numpy(hwc).permute(2, 0, 1).to(torch.float32) - mean) / std
    return out


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """(K, h, w) {0, 1} → float32 (K, 4) [xmin, ymin, xmax + 1, ymax + 1]; zeros for empty masks (mmdet
    ``BitmapMasks.get_bboxes``)."""
    k, h, w = masks.shape
    cols, rows = masks.any(1), masks.any(2)
    boxes = np.zeros((k, 4), np.float32)
    nonempty = cols.any(1)
    boxes[:, 0] = cols.argmax(1)
    boxes[:, 2] = w - cols[:, ::-1].argmax(1)
    boxes[:, 1] = rows.argmax(1)
    boxes[:, 3] = h - rows[:, ::-1].argmax(1)
    boxes[~nonempty] = 0
    return boxes


def _source_index(start: int, length: int, src: int, dst: int, flipped: bool) -> np.ndarray:
    """Source pixel of every output pixel ``start .. start + length - 1`` of a nearest resize src → dst that
    follows a flip of the source (``floor(i · src / dst)``, clamped, as OpenCV ``INTER_NEAREST``)."""
    idx = np.minimum(np.floor(np.arange(start, start + length) * (src / dst)).astype(np.int64), src - 1)
    return src - 1 - idx if flipped else idx


def _span(index: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    """[first, last + 1) of the output pixels whose (monotonic) source index lies in [lo, hi); (0, 0) if none."""
    hit = np.flatnonzero((index >= lo) & (index < hi))
    return (int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, 0)


def crop_instances(
    sample: dict[str, Any], candidates: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of the ``candidates`` (instance indices) at the source pixels ``rows`` × ``cols`` (the crop of the
    flipped, resized image): uint8 (K, len(rows), len(cols)), their boxes float32 (K, 4) [xmin, ymin, xmax + 1,
    ymax + 1] (zeros when empty) and areas int64 (K,). Lazy RLEs are decoded one by one, only over the columns of
    the RLE's bounding box that the crop uses (:func:`~mtp.data.datasets.samrs.decode_rle_columns`)."""
    from pycocotools import mask as mask_utils

    k = len(candidates)
    masks = np.zeros((k, len(rows), len(cols)), np.uint8)
    boxes, areas = np.zeros((k, 4), np.float32), np.zeros(k, np.int64)
    full = _plain(sample["masks"]).numpy() if isinstance(sample.get("masks"), torch.Tensor) else None
    for j, i in enumerate(candidates):
        if full is not None:
            (r0, r1), (c0, c1) = (0, len(rows)), (0, len(cols))
            region = full[i][np.ix_(rows, cols)]
        else:
            seg = sample["rles"][i]
            x, y, bw, bh = mask_utils.toBbox(coded_rle(seg)).tolist()
            (r0, r1), (c0, c1) = _span(rows, y, y + bh), _span(cols, x, x + bw)
            if r1 == r0 or c1 == c0:
                continue
            lo, hi = int(cols[c0:c1].min()), int(cols[c0:c1].max()) + 1
            region = decode_rle_columns(seg, lo, hi)[np.ix_(rows[r0:r1], cols[c0:c1] - lo)]
        ys, xs = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        if not ys.size:
            continue
        masks[j, r0:r1, c0:c1] = region
        boxes[j] = (c0 + xs[0], r0 + ys[0], c0 + xs[-1] + 1, r0 + ys[-1] + 1)
        areas[j] = int(region.sum(dtype=np.int64))
    return masks, boxes, areas


class SAMRSTrainTransform:
    """The official training pipeline for target size ``size`` (module docstring); returns None to reject a
    sample. ``ratio_range``, ``flip_p`` and ``photometric`` default to the official values."""

    def __init__(self, size: int = 448, ratio_range: tuple[float, float] = (0.5, 2.0), flip_p: float = 0.75,
                 photometric: bool = True) -> None:  # fmt: skip
        self.size = int(size)
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.flip_p = float(flip_p)
        self.photometric = PhotoMetricDistortion() if photometric else None

    def _draw(self, h: int, w: int) -> dict[str, Any]:
        u = torch.rand(()).item()
        direction = None if u >= self.flip_p else FLIP_DIRECTIONS[min(int(3 * u / self.flip_p), 2)]
        lo, hi = self.ratio_range
        r = lo + (hi - lo) * torch.rand(()).item()
        nh, nw = rescale_size((h, w), (int(self.size * r), int(self.size * r)))
        ch, cw = min(self.size, nh), min(self.size, nw)
        top = int(torch.randint(0, nh - ch + 1, ()).item())
        left = int(torch.randint(0, nw - cw + 1, ()).item())
        return {"direction": direction, "nh": nh, "nw": nw, "top": top, "left": left, "ch": ch, "cw": cw}

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        h, w = (int(v) for v in sample["image"].shape[-2:])
        p = self._draw(h, w)
        d, nh, nw, top, left, ch, cw = (p[k] for k in ("direction", "nh", "nw", "top", "left", "ch", "cw"))
        fx, fy = d in ("horizontal", "diagonal"), d in ("vertical", "diagonal")
        sx, sy = nw / w, nh / h
        # image: flip, bilinear resize, crop
        img = _plain(sample["image"]).permute(1, 2, 0).numpy()
        img = img[:, ::-1] if fx else img
        img = img[::-1] if fy else img
        img = cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=cv2.INTER_LINEAR)
        img = img[top : top + ch, left : left + cw]
        rows = _source_index(top, ch, h, nh, fy)
        cols = _source_index(left, cw, w, nw, fx)
        semantic = torch.full((self.size, self.size), 255, dtype=torch.int64)
        semantic[:ch, :cw] = torch.from_numpy(_plain(sample["semantic"]).numpy()[rows[:, None], cols[None, :]])
        # instances: the boxes decide which overlap the crop; the masks give the final boxes
        boxes = _plain(sample["boxes"]).numpy().astype(np.float64).reshape(-1, 4).copy()
        if fx:
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        if fy:
            boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
        boxes *= (sx, sy, sx, sy)
        boxes -= (left, top, left, top)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, cw)  # the crop lies inside the resized image: one clip suffices
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, ch)
        inside = (boxes[:, 0] < cw) & (boxes[:, 1] < ch) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        masks, new_boxes, area = crop_instances(sample, np.flatnonzero(inside), rows, cols)
        keep = (new_boxes[:, 2] - new_boxes[:, 0] > 1e-5) & (new_boxes[:, 3] - new_boxes[:, 1] > 1e-5) & (area >= 1)
        if len(keep) and not keep.any():
            return None
        labels = _plain(sample["labels"])[torch.from_numpy(np.flatnonzero(inside))][torch.from_numpy(keep)]
        out_masks = torch.zeros((int(keep.sum()), self.size, self.size), dtype=torch.uint8)
        out_masks[:, :ch, :cw] = torch.from_numpy(masks[keep])
        # rotated boxes: flip, rescale, clamp centres, translate, keep centres inside the crop
        rb = _plain(sample["rboxes"]).to(torch.float64).reshape(-1, 5)
        if d is not None:
            rb = flip_rboxes(rb, (h, w), d)
        rb = rescale_rboxes(rb, sx, sy)
        rb[:, 0] = rb[:, 0].clamp(0, nw) - left
        rb[:, 1] = rb[:, 1].clamp(0, nh) - top
        rkeep = (rb[:, 0] > 0) & (rb[:, 0] < cw) & (rb[:, 1] > 0) & (rb[:, 1] < ch)
        rb = rb[rkeep]
        rb[:, 4] = norm_angle(rb[:, 4], "le90")
        image = tv_tensors.Image(torch.from_numpy(img).permute(2, 0, 1))
        if self.photometric is not None:
            image = self.photometric(image)
        return {
            "image": normalize_image(_plain(image).permute(1, 2, 0).numpy(), (self.size, self.size)),
            "semantic": semantic,
            "boxes": torch.from_numpy(new_boxes[keep]),
            "labels": labels,
            "masks": out_masks,
            "rboxes": rb.to(torch.float32),
            "rlabels": _plain(sample["rlabels"])[rkeep],
            "image_id": sample["image_id"],
            "image_path": sample["image_path"],
            "ori_hw": tuple(sample["ori_hw"]),
            "scale_factor": (sx, sy),
            "img_hw": (ch, cw),
            "flip": d,
            "crop_offset": (top, left),
        }


class SAMRSEvalTransform:
    """Validation pipeline: keep-ratio bilinear resize of the image to ``size``, normalise, pad to a multiple of
    ``divisor``; targets at the original resolution (module docstring)."""

    def __init__(self, size: int = 448, divisor: int = 32) -> None:
        self.size = int(size)
        self.divisor = int(divisor)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        h, w = (int(v) for v in sample["image"].shape[-2:])
        nh, nw = rescale_size((h, w), (self.size, self.size))
        img = np.ascontiguousarray(_plain(sample["image"]).permute(1, 2, 0).numpy())
        if (nh, nw) != (h, w):
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        pad = (-(-nh // self.divisor) * self.divisor, -(-nw // self.divisor) * self.divisor)
        if isinstance(sample.get("masks"), torch.Tensor):
            masks = _plain(sample["masks"])
        else:
            masks = torch.from_numpy(decode_rles(sample.get("rles", []), (h, w)))
        rb = _plain(sample["rboxes"]).clone()
        rb[:, 4] = norm_angle(rb[:, 4], "le90")
        return {
            "image": normalize_image(img, pad),
            "semantic": _plain(sample["semantic"]).to(torch.int64),
            "boxes": _plain(sample["boxes"]).to(torch.float32),
            "labels": _plain(sample["labels"]),
            "masks": masks,
            "rboxes": rb,
            "rlabels": _plain(sample["rlabels"]),
            "image_id": sample["image_id"],
            "image_path": sample["image_path"],
            "ori_hw": (h, w),
            "scale_factor": (nw / w, nh / h),
            "img_hw": (nh, nw),
        }
