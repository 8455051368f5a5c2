"""Change-detection readers: A/B/label folders (LEVIR-CD, WHU-CD, CDD/SVCD, OSCD RGB patches) and the raw
OSCD Sentinel-2 release.

Folder layout (Open-CD ``_BaseCDDataset``, ``RS_Tasks_Finetune/Change_Detection/opencd/datasets/``):
``<root>/<split>/{A,B,label}/`` with
identical file names in ``A`` (time 1), ``B`` (time 2) and ``label``. Official suffixes: LEVIR ``.png``,
OSCD-RGB ``.png``, CDD/SVCD ``.jpg`` (images and labels), WHU none (every file). A split without a ``label``
folder is read as unlabelled (prediction).

Sample dict returned by ``dataset[i]`` (before ``transform``):

* ``"image_a"``, ``"image_b"``: ``tv_tensors.Image`` uint8 (3, H, W) RGB under the raster rule ``raster``
  (:mod:`mtp.data.datasets.rasters`; for 16-bit / float pairs prefer ``scaling: fixed``, so that both dates are
  scaled alike);
* ``"mask"``: ``tv_tensors.Mask`` int64 (H, W), 0 = unchanged, 1 = changed, 255 = ignore (absent when
  unlabelled);
* ``"image_path"`` (A file, str), ``"image_b_path"``, ``"mask_path"`` (str or None), ``"ori_size"`` (H, W).

Label values (``label_values``), mapped explicitly:

* ``"0_255"`` (LEVIR, WHU, OSCD patches): 0 -> 0, 255 -> 1; any other value is an error (a 0/1 label names
  ``'0_1'`` in its message);
* ``"0_1"``: 0, 1 kept, 255 = ignore; any other value is an error;
* ``"threshold"``: the official ``to_binary`` rule (< 128 -> 0, >= 128 -> 1), needed for JPEG labels (CDD),
  whose compression noise gives values other than 0/255; RGB labels are converted to grey first. A label whose
  maximum is 1 is refused (the threshold would turn every changed pixel into 'unchanged': use ``'0_1'``).

Bad inputs raise ``FileNotFoundError`` / ``ValueError`` naming the file: missing folder, an A image without
its B / label partner, unreadable files, A/B/label sizes that differ, unexpected label values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mtp.data.datasets.files import content_hint, folder_hint, mask_header, mask_values, read_mask, read_rgb
from mtp.data.datasets.rasters import DEFAULT_RULE, RasterRule, check_raster

__all__ = ["CDD", "CD_CLASSES", "CD_PALETTE", "LABEL_VALUES", "LEVIRCD", "OSCD", "WHUCD", "ChangeDetectionFolder"]

log = logging.getLogger(__name__)

CD_CLASSES = ("unchanged", "changed")
CD_PALETTE = ((0, 0, 0), (255, 255, 255))
LABEL_VALUES = ("0_255", "0_1", "threshold")
IGNORE_INDEX = 255


def map_label(raw: torch.Tensor, mode: str, path: Path) -> torch.Tensor:
    """Raw label values (int64 (H, W)) -> 0/1/255 under ``mode`` (see the module docstring)."""
    values = mask_values(raw).tolist()
    if mode == "threshold":
        if values and values[-1] == 1:
            raise ValueError(
                f"{path}: label holds only 0/1 values, but label_values='threshold' maps values below 128 to "
                "'unchanged' (every changed pixel would be lost); use label_values='0_1'"
            )
        return (raw >= 128).long()
    allowed = (0, 255) if mode == "0_255" else (0, 1, IGNORE_INDEX)
    bad = [v for v in values if v not in allowed]
    if bad:
        if set(values) <= {0, 1}:
            hint = "the label holds 0/1 values: use label_values='0_1'"
        elif mode == "0_1" and set(values) <= {0, 255}:
            hint = "the label holds 0/255 values: use label_values='0_255'"
        else:
            hint = "labels with values between 0 and 255 (JPEG noise) need label_values='threshold' (>= 128 = changed)"
        raise ValueError(
            f"{path}: label has value(s) {bad[:10]} not allowed with label_values={mode!r} (allowed {list(allowed)}); "
            + hint
        )
    return (raw == 255).long() if mode == "0_255" else raw


def read_label(path: Path, mode: str) -> torch.Tensor:
    """int64 (H, W) change map 0/1/255 from a label image (see :func:`map_label`)."""
    if mode not in LABEL_VALUES:
        raise ValueError(f"label_values must be one of {LABEL_VALUES}, got {mode!r}")
    if mode == "threshold":
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: label file not found")
        try:
            with PILImage.open(path) as img:
                img.load()
                raw = torch.from_numpy(np.asarray(img.convert("L")).astype(np.int64))
        except Exception as e:  # Pillow raises many types for broken files
            raise ValueError(f"{path}: cannot read label: {str(e).strip() or type(e).__name__}") from e
    else:
        raw = read_mask(path)
    return map_label(raw, mode, path)


def label_header(path: Path, mode: str) -> tuple[int, int]:
    """(H, W) of a change label from its header (any Pillow mode for 'threshold', single-channel otherwise)."""
    if mode != "threshold":
        return mask_header(path)
    try:
        with PILImage.open(path) as img:
            return img.height, img.width
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: label file not found") from None
    except Exception as e:  # Pillow raises many types for broken files
        raise ValueError(f"{path}: cannot read label: {str(e).strip() or type(e).__name__}") from e


class ChangeDetectionFolder(Dataset):
    """Image pairs (+ labels) from ``<root>/<split>/{A,B,label}`` (see the module docstring).

    Args:
        root: dataset root; ``split``: sub-folder (``train``, ``val``, ``test``; ``None`` -> ``root`` itself).
        img_suffix / label_suffix: file-name endings ('' = every file); the label defaults to the image's.
        label_values: ``'0_255'``, ``'0_1'`` or ``'threshold'``.
        a_dir, b_dir, label_dir: folder names.
        transform: callable on the sample dict (set by the datamodule).
        raster: how images become uint8 RGB (:class:`~mtp.data.datasets.rasters.RasterRule`).
    """

    classes: tuple[str, ...] = CD_CLASSES
    palette: tuple[tuple[int, int, int], ...] = CD_PALETTE
    ignore_index: int = IGNORE_INDEX

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        img_suffix: str = ".png",
        label_suffix: str | None = None,
        label_values: str = "0_255",
        a_dir: str = "A",
        b_dir: str = "B",
        label_dir: str = "label",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        raster: RasterRule | None = None,
    ) -> None:
        if label_values not in LABEL_VALUES:
            raise ValueError(f"label_values must be one of {LABEL_VALUES}, got {label_values!r}")
        self.root = Path(root)
        base = self.root / split if split else self.root
        self.label_values, self.transform, self.raster = label_values, transform, raster or DEFAULT_RULE
        label_suffix = img_suffix if label_suffix is None else label_suffix
        dir_a, dir_b, dir_label = base / a_dir, base / b_dir, base / label_dir
        if not dir_a.is_dir():
            raise FileNotFoundError(f"image folder A not found: {dir_a}{folder_hint(dir_a)}")
        if not dir_b.is_dir():
            raise FileNotFoundError(f"image folder B not found: {dir_b}{folder_hint(dir_b)}")
        files_a = sorted(p for p in dir_a.iterdir() if p.is_file() and p.name.endswith(img_suffix))
        if not files_a:
            raise ValueError(f"no '*{img_suffix}' images in {dir_a}{content_hint(dir_a)}")
        stems = [p.name[: len(p.name) - len(img_suffix)] for p in files_a]
        files_b = [dir_b / p.name for p in files_a]
        missing = [str(p) for p in files_b if not p.is_file()]
        labelled = dir_label.is_dir()
        files_label: list[Path | None] = [dir_label / (s + label_suffix) for s in stems] if labelled else []
        if labelled:
            missing += [str(p) for p in files_label if not p.is_file()]
        else:
            files_label = [None] * len(files_a)
            log.info("%s has no %s folder: unlabelled pairs", base, label_dir)
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} partner file(s) missing for the images in {dir_a}, e.g. {', '.join(missing[:5])}"
            )
        self.files: list[tuple[Path, Path, Path | None]] = list(zip(files_a, files_b, files_label, strict=True))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def load_images(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (3, H, W) RGB images A and B of pair ``index``."""
        path_a, path_b, _ = self.files[index]
        return read_rgb(path_a, self.raster), read_rgb(path_b, self.raster)

    def load_label(self, path: Path) -> torch.Tensor:
        return read_label(path, self.label_values)

    def load_sample(self, index: int) -> dict[str, Any]:
        path_a, path_b, path_label = self.files[index]
        image_a, image_b = self.load_images(index)
        if image_a.shape != image_b.shape:
            raise self._size_error(path_b, "image B", tuple(image_b.shape[1:]), path_a, tuple(image_a.shape[1:]))
        sample: dict[str, Any] = {
            "image_a": tv_tensors.Image(image_a),
            "image_b": tv_tensors.Image(image_b),
            "image_path": str(path_a),
            "image_b_path": str(path_b),
            "mask_path": str(path_label) if path_label else None,
            "ori_size": (int(image_a.shape[1]), int(image_a.shape[2])),
        }
        if path_label is not None:
            label = self.load_label(path_label)
            if tuple(label.shape) != tuple(image_a.shape[1:]):
                raise self._size_error(path_label, "label", tuple(label.shape), path_a, tuple(image_a.shape[1:]))
            sample["mask"] = tv_tensors.Mask(label)
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_sample(index)
        return self.transform(sample) if self.transform is not None else sample

    @staticmethod
    def _size_error(path: Path, what: str, hw: tuple[int, ...], path_a: Path, hw_a: tuple[int, ...]) -> ValueError:
        return ValueError(f"{path}: {what} is {hw[0]}x{hw[1]} (HxW) but image A {path_a} is {hw_a[0]}x{hw_a[1]}")

    def check_item(self, index: int, level: str = "quick") -> None:
        """Raise (naming the file) at the first problem of pair ``index``: 'quick' reads the headers of A, B and
        the label (readable, not truncated, equal sizes, single-channel label), 'full' decodes all three and
        checks the label values against ``label_values``."""
        if level == "full":
            self.load_sample(index)
            return
        path_a, path_b, path_label = self.files[index]
        hw = check_raster(path_a, self.raster).hw
        hw_b = check_raster(path_b, self.raster).hw
        if hw_b != hw:
            raise self._size_error(path_b, "image B", hw_b, path_a, hw)
        if path_label is not None:
            hw_label = label_header(path_label, self.label_values)
            if hw_label != hw:
                raise self._size_error(path_label, "label", hw_label, path_a, hw)


class LEVIRCD(ChangeDetectionFolder):
    """LEVIR-CD patches (``levir_patch_dataset/{train,val,test}/{A,B,label}/*.png``, labels 0/255)."""

    def __init__(self, root: str | Path, split: str = "train", label_values: str = "0_255", **kwargs) -> None:
        super().__init__(root, split, img_suffix=".png", label_values=label_values, **kwargs)


class WHUCD(ChangeDetectionFolder):
    """WHU-CD patches (``whu_cd_patch_dataset/{train,val,test}/{A,B,label}``; every file, labels 0/255)."""

    def __init__(self, root: str | Path, split: str = "train", label_values: str = "0_255", **kwargs) -> None:
        kwargs.setdefault("img_suffix", "")
        super().__init__(root, split, label_values=label_values, **kwargs)


class CDD(ChangeDetectionFolder):
    """CDD / SVCD (``cdd_dataset/{train,val,test}/{A,B,label}/*.jpg``); JPEG labels -> official threshold 128."""

    def __init__(self, root: str | Path, split: str = "train", label_values: str = "threshold", **kwargs) -> None:
        super().__init__(root, split, img_suffix=".jpg", label_values=label_values, **kwargs)


class OSCD(ChangeDetectionFolder):
    """OSCD RGB patches as the official configs read them (``oscd_rgb_patch_dataset/{train,test}/{A,B,label}/*.png``,
    labels 0/255). Make them from the Sentinel-2 release with :class:`mtp.data.datasets.oscd.OSCDSentinel2`."""

    def __init__(self, root: str | Path, split: str = "train", label_values: str = "0_255", **kwargs) -> None:
        super().__init__(root, split, img_suffix=".png", label_values=label_values, **kwargs)


def write_pair(root: Path, name: str, image_a: np.ndarray, image_b: np.ndarray, label: np.ndarray | None) -> None:
    """Write one (H, W, 3) uint8 pair and an optional (H, W) 0/1 label (stored 0/255) in the A/B/label layout."""
    for folder, arr in (("A", image_a), ("B", image_b), ("label", None if label is None else label * 255)):
        if arr is None:
            continue
        (root / folder).mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(np.ascontiguousarray(arr).astype(np.uint8)).save(root / folder / name)
