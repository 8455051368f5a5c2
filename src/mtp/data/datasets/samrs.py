"""SAMRS multi-task pretraining sets: SOTA (18 classes), SIOR (20) and FAST (37), each image with a semantic
map, instance masks + boxes and rotated boxes (docs/RECIPES.md#samrs-data; layouts and the start-up check in
:mod:`mtp.data.datasets.samrs_formats`).

Sample dict returned by ``dataset.load_sample(i)`` (``dataset[i]`` applies ``transform`` to it):

* ``"image"``: ``tv_tensors.Image`` uint8 (3, H, W) RGB;
* ``"semantic"``: ``tv_tensors.Mask`` uint8 (H, W): the gray map + 1 in uint8 arithmetic, so 255
  (background / unlabelled) → 0 and class k → k + 1 (index into ``semantic_classes``); no 255 on disk
  survives, 255 only appears later as padding / ignore;
* ``"boxes"``: ``tv_tensors.BoundingBoxes`` float32 (N, 4) XYXY pixels (COCO bbox [x, y, x + w, y + h]);
  ``"labels"``: int64 (N,) 0-based class index;
* ``"masks"``: ``tv_tensors.Mask`` uint8 (N, H, W) {0, 1} decoded from the RLEs, or — with
  ``lazy_masks=True`` (what the training pipeline uses: it decodes only the instances inside its crop) —
  ``"rles"``: the N COCO RLE dicts instead;
* ``"rboxes"``: float32 (M, 5) le90 (cx, cy, w, h, θ rad) pixels, minAreaRect of the annotated quads
  (:func:`mtp.ops.rotated.boxes.poly2rbox`); ``"rlabels"``: int64 (M,) 0-based;
* ``"image_id"``: the json image id; ``"image_path"``: str; ``"ori_hw"``: (H, W).

A ``transform`` may return None to reject a sample (the official pipeline does when every instance of the crop
is filtered out); ``dataset[i]`` then draws another random index of the same dataset with torch's global
generator (seeded per DataLoader worker) until a sample is accepted (at most ``max_resample`` times).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mtp.data.datasets.files import mask_header
from mtp.data.datasets.rasters import RasterRule, check_raster, read_rgb_array
from mtp.data.datasets.samrs_formats import (
    FAST_CLASSES,
    SAMRS_IMAGE_COUNTS,
    SAMRS_LAYOUTS,
    SIOR_CLASSES,
    SOTA_CLASSES,
    SAMRSConsistencyError,
    SAMRSRecord,
    read_samrs,
)
from mtp.data.datasets.samrs_storage import SAMRSStore, coded_rle, decode_rle_columns, decode_rles

__all__ = [
    "FAST_CLASSES",
    "SAMRS_IMAGE_COUNTS",
    "SAMRS_LAYOUTS",
    "SIOR_CLASSES",
    "SOTA_CLASSES",
    "SAMRSConsistencyError",
    "SAMRSDataset",
    "SAMRSRecord",
    "SAMRSStore",
    "coded_rle",
    "decode_rle_columns",
    "decode_rles",
    "read_bgr_as_rgb",
]

log = logging.getLogger(__name__)


#: SAMRS images: 8-bit RGB decoded with OpenCV (the official loader's backend); other files by the common rule.
SAMRS_RASTER_RULE = RasterRule(decoder="cv2")


def read_bgr_as_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB (OpenCV for 8-bit RGB files, :mod:`mtp.data.datasets.rasters` for the others);
    ``ValueError`` naming the file."""
    return read_rgb_array(path, SAMRS_RASTER_RULE)


def read_gray(path: Path) -> np.ndarray:
    """uint8 (H, W) gray semantic map as stored; ``ValueError`` naming the file."""
    gray = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if gray is None or gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"{path}: cannot read gray semantic map (need a single-channel 8-bit PNG)")
    return gray


class SAMRSDataset(Dataset):
    """One SAMRS set (``variant`` 'sota' | 'sior' | 'fast') and split ('train' | 'valid') in the official layout
    under ``root`` (see :mod:`mtp.data.datasets.samrs_formats`).

    ``classes``: the 18 / 20 / 37 object classes (label order); ``semantic_classes``: ``('background',) +
    classes``. The json, images, gray maps and box files are cross-checked when the dataset is built
    (``check`` 'files' | 'headers' | 'full'); all mismatches are reported in one
    :class:`SAMRSConsistencyError`. ``num_skipped`` (reason → count), ``num_degenerate`` and
    ``num_rotated_outside`` report the filtered annotations. See the module docstring for the sample dict.
    """

    def __init__(
        self,
        root: str | Path,
        variant: Literal["sota", "sior", "fast"] = "sota",
        split: Literal["train", "valid"] = "train",
        transform: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        *,
        check: Literal["files", "headers", "full"] = "headers",
        lazy_masks: bool = False,
        max_resample: int = 100,
    ) -> None:
        if split not in ("train", "valid"):
            raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
        self.root = Path(root)
        self.variant = variant
        self.split = split
        self.transform = transform
        self.lazy_masks = lazy_masks
        self.max_resample = int(max_resample)
        records, stats = read_samrs(self.root, variant, split, check=check)
        self.store = SAMRSStore.pack(records)  # flat arrays: shared by forked workers without copies
        del records
        self.classes: tuple[str, ...] = SAMRS_LAYOUTS[variant].classes
        self.semantic_classes: tuple[str, ...] = ("background", *self.classes)
        self.num_skipped: dict[str, int] = stats["skipped"]
        self.num_degenerate: int = stats["degenerate"]
        self.num_rotated_outside: int = stats["rotated_outside"]

    def record(self, index: int) -> SAMRSRecord:
        """Paths, image id, size and annotations of image ``index`` (:meth:`SAMRSStore.record`)."""
        return self.store.record(index)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.store)

    def load_sample(self, index: int) -> dict[str, Any]:
        """The sample dict before ``transform`` (module docstring)."""
        st = self.store
        image_path, gray_path = st.image_paths[index], st.gray_paths[index]
        image = read_bgr_as_rgb(image_path)
        gray = read_gray(gray_path)
        hw = (int(st.hw[index, 0]), int(st.hw[index, 1]))
        if image.shape[:2] != hw or gray.shape != hw:
            raise ValueError(f"{image_path}: image is {image.shape[:2]}, its gray map {gray_path} is {gray.shape}, "
                             f"the json says {hw}")  # fmt: skip
        semantic = gray + np.uint8(1)  # uint8 wrap: 255 -> 0, k -> k + 1
        a, b = st.inst_start[index], st.inst_start[index + 1]
        rboxes, rlabels = st.rotated(index)
        sample: dict[str, Any] = {
            "image": tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous()),
            "semantic": tv_tensors.Mask(torch.from_numpy(semantic)),
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(st.boxes[a:b].copy()), format="XYXY", canvas_size=hw),
            "labels": torch.from_numpy(st.labels[a:b].copy()),
            "rboxes": torch.from_numpy(rboxes),
            "rlabels": torch.from_numpy(rlabels),
            "image_id": st.image_ids[index].item(),
            "image_path": str(image_path),
            "ori_hw": hw,
        }
        if self.lazy_masks:
            sample["rles"] = st.rles(index)
        else:
            try:
                masks = decode_rles(st.rles(index), hw)
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"{image_path}: cannot decode the instance masks: {e}") from e
            sample["masks"] = tv_tensors.Mask(torch.from_numpy(masks))
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        tried = []
        for _ in range(self.max_resample + 1):
            sample = self.load_sample(index)
            out = self.transform(sample) if self.transform is not None else sample
            if out is not None:
                return out
            tried.append(Path(self.store.image_paths[index]).name)
            index = int(torch.randint(len(self.store), ()).item())
        raise RuntimeError(f"SAMRS {self.variant}: the transform rejected {len(tried)} samples in a row "
                           f"(e.g. {tried[:5]}); are the instance masks empty?")  # fmt: skip

    def check_item(self, index: int, level: str = "quick") -> None:
        """Raise (naming the file) at the first problem of image ``index``: 'quick' reads the image and gray-map
        headers (readable, not truncated, the json size), 'full' decodes both and the instance masks and checks
        the gray values (0..C-1 and 255)."""
        st = self.store
        image_path, gray_path = Path(st.image_paths[index]), Path(st.gray_paths[index])
        hw = (int(st.hw[index, 0]), int(st.hw[index, 1]))
        if level == "full":
            lazy, self.lazy_masks = self.lazy_masks, False
            try:
                sample = self.load_sample(index)
            finally:
                self.lazy_masks = lazy
            values = np.unique(sample["semantic"].numpy())  # stored value + 1: 0 = background (255)
            bad = values[values > self.num_classes]
            if bad.size:
                shown = (bad - 1).tolist()[:10]
                raise ValueError(f"{gray_path}: gray values {shown} outside 0..{self.num_classes - 1} and 255")
            return
        image_hw = check_raster(image_path, SAMRS_RASTER_RULE).hw
        if image_hw != hw:
            raise ValueError(f"{image_path}: image is {image_hw[0]}x{image_hw[1]} (HxW), the json says {hw[0]}x{hw[1]}")
        gray_hw = mask_header(gray_path)
        if gray_hw != hw:
            raise ValueError(f"{gray_path}: gray map is {gray_hw[0]}x{gray_hw[1]} (HxW), the json says {hw[0]}x{hw[1]}")

    def label_counts(self) -> np.ndarray:
        """Instances per class (after the load filter), int64 (num_classes,)."""
        return np.bincount(self.store.labels, minlength=self.num_classes)
