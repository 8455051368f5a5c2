"""Change-detection readers: A/B/label folders (LEVIR-CD, WHU-CD, CDD/SVCD, OSCD RGB patches) and the raw
OSCD Sentinel-2 release.

Folder layout (Open-CD ``_BaseCDDataset``, ``RS_Tasks_Finetune/Change_Detection/opencd/datasets/``):
``<root>/<split>/{A,B,label}/`` with
identical file names in ``A`` (time 1), ``B`` (time 2) and ``label``. Official suffixes: LEVIR ``.png``,
OSCD-RGB ``.png``, CDD/SVCD ``.jpg`` (images and labels), WHU none (every file). A split without a ``label``
folder is read as unlabelled (prediction).

Sample dict returned by ``dataset[i]`` (before ``transform``):

* ``"image_a"``, ``"image_b"``: ``tv_tensors.Image`` uint8 (3, H, W) RGB;
* ``"mask"``: ``tv_tensors.Mask`` int64 (H, W), 0 = unchanged, 1 = changed, 255 = ignore (absent when
  unlabelled);
* ``"image_path"`` (A file, str), ``"image_b_path"``, ``"mask_path"`` (str or None), ``"ori_size"`` (H, W).

Label values (``label_values``), mapped explicitly:

* ``"0_255"`` (LEVIR, WHU, OSCD patches): 0 -> 0, 255 -> 1; any other value is an error;
* ``"0_1"``: 0, 1 kept, 255 = ignore; any other value is an error;
* ``"threshold"``: the official ``to_binary`` rule (< 128 -> 0, >= 128 -> 1), needed for JPEG labels (CDD),
  whose compression noise gives values other than 0/255; RGB labels are converted to grey first.

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

from mtp.data.datasets.files import read_mask, read_rgb

__all__ = ["CDD", "CD_CLASSES", "CD_PALETTE", "LABEL_VALUES", "LEVIRCD", "OSCD", "WHUCD", "ChangeDetectionFolder"]

log = logging.getLogger(__name__)

CD_CLASSES = ("unchanged", "changed")
CD_PALETTE = ((0, 0, 0), (255, 255, 255))
LABEL_VALUES = ("0_255", "0_1", "threshold")
IGNORE_INDEX = 255


def map_label(raw: torch.Tensor, mode: str, path: Path) -> torch.Tensor:
    """Raw label values (int64 (H, W)) -> 0/1/255 under ``mode`` (see the module docstring)."""
    if mode == "threshold":
        return (raw >= 128).long()
    allowed = (0, 255) if mode == "0_255" else (0, 1, IGNORE_INDEX)
    values = torch.unique(raw)
    bad = [int(v) for v in values if int(v) not in allowed]
    if bad:
        raise ValueError(
            f"label {path}: unexpected value(s) {bad[:10]} for label_values={mode!r}, allowed {list(allowed)}; "
            "JPEG labels need label_values='threshold'"
        )
    return (raw == 255).long() if mode == "0_255" else raw


def read_label(path: Path, mode: str) -> torch.Tensor:
    """int64 (H, W) change map 0/1/255 from a label image (see :func:`map_label`)."""
    if mode not in LABEL_VALUES:
        raise ValueError(f"label_values must be one of {LABEL_VALUES}, got {mode!r}")
    if mode == "threshold":
        try:
            with PILImage.open(path) as img:
                img.load()
                raw = torch.from_numpy(np.asarray(img.convert("L")).astype(np.int64))
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"cannot read label {path}: {e}") from e
    else:
        raw = read_mask(path)
    return map_label(raw, mode, path)


class ChangeDetectionFolder(Dataset):
    """Image pairs (+ labels) from ``<root>/<split>/{A,B,label}`` (see the module docstring).

    Args:
        root: dataset root; ``split``: sub-folder (``train``, ``val``, ``test``; ``None`` -> ``root`` itself).
        img_suffix / label_suffix: file-name endings ('' = every file); the label defaults to the image's.
        label_values: ``'0_255'``, ``'0_1'`` or ``'threshold'``.
        a_dir, b_dir, label_dir: folder names.
        transform: callable on the sample dict (set by the datamodule).
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
    ) -> None:
        if label_values not in LABEL_VALUES:
            raise ValueError(f"label_values must be one of {LABEL_VALUES}, got {label_values!r}")
        self.root = Path(root)
        base = self.root / split if split else self.root
        self.label_values, self.transform = label_values, transform
        label_suffix = img_suffix if label_suffix is None else label_suffix
        dir_a, dir_b, dir_label = base / a_dir, base / b_dir, base / label_dir
        if not dir_a.is_dir():
            raise FileNotFoundError(f"image folder A not found: {dir_a}")
        if not dir_b.is_dir():
            raise FileNotFoundError(f"image folder B not found: {dir_b}")
        files_a = sorted(p for p in dir_a.iterdir() if p.is_file() and p.name.endswith(img_suffix))
        if not files_a:
            raise ValueError(f"no '*{img_suffix}' images in {dir_a}")
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
        return read_rgb(path_a), read_rgb(path_b)

    def load_label(self, path: Path) -> torch.Tensor:
        return read_label(path, self.label_values)

    def load_sample(self, index: int) -> dict[str, Any]:
        path_a, path_b, path_label = self.files[index]
        image_a, image_b = self.load_images(index)
        if image_a.shape != image_b.shape:
            raise ValueError(
                f"image sizes differ: {path_a} is {tuple(image_a.shape[1:])}, {path_b} is {tuple(image_b.shape[1:])}"
            )
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
                raise ValueError(
                    f"label {path_label} is {tuple(label.shape)} but image {path_a} is {tuple(image_a.shape[1:])}"
                )
            sample["mask"] = tv_tensors.Mask(label)
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_sample(index)
        return self.transform(sample) if self.transform is not None else sample


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
