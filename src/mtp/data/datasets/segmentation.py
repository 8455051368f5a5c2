"""Semantic-segmentation readers: image folders with PNG label maps, LoveDA and SpaceNet v1.

Sample dict returned by ``dataset[i]`` (before ``transform``):

* ``"image"``: ``tv_tensors.Image`` uint8 (3, H, W) RGB, read under the raster rule ``raster``
  (:mod:`mtp.data.datasets.rasters`: grey / RGBA / 16-bit / float / multi-band files);
* ``"mask"``: ``tv_tensors.Mask`` int64 (H, W), class indices 0..num_classes-1, 255 = ignore (after
  ``reduce_zero_label`` when set); absent for unlabelled (test) images;
* ``"image_path"``: str; ``"mask_path"``: str or None;
* ``"ori_size"``: (H, W) ints of the image on disk (to resize predictions back after an eval resize).

Masks are single-channel PNGs read as stored (palette PNGs give their indices, as mmseg's pillow loader).
``reduce_zero_label`` (docs/CONVENTIONS.md#masks-and-ignore-index): ``out = v - 1; out[v == 0] = 255;
out[out == 254] = 255``.
Bad inputs raise ``FileNotFoundError`` / ``ValueError`` naming the file(s). The value check runs lazily in
``__getitem__``; :meth:`SegmentationDataset.check_item` checks one sample at the levels of
:mod:`mtp.data.datasets.checks` (what ``mtp tool check-data`` and the datamodules' ``check`` run), and
:meth:`SegmentationDataset.validate` scans every mask eagerly and returns class statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mtp.data.datasets.files import image_size, mask_header, mask_values, pair_files, read_mask, read_rgb
from mtp.data.datasets.rasters import DEFAULT_RULE, RasterRule, check_raster

__all__ = [
    "LOVEDA_CLASSES",
    "LOVEDA_PALETTE",
    "SPACENET_CLASSES",
    "SPACENET_PALETTE",
    "ImageMaskFolder",
    "LoveDA",
    "SegmentationDataset",
    "SpaceNetV1",
    "loveda_submission_array",
    "reduce_zero_label",
]


Palette = Sequence[Sequence[int]]
LOVEDA_CLASSES = ("background", "building", "road", "water", "barren", "forest", "agricultural")
LOVEDA_PALETTE = (
    (255, 255, 255),
    (255, 0, 0),
    (255, 255, 0),
    (0, 0, 255),
    (159, 129, 183),
    (0, 255, 0),
    (255, 195, 128),
)
SPACENET_CLASSES = ("background", "building")
SPACENET_PALETTE = ((0, 0, 0), (255, 255, 255))


def reduce_zero_label(mask: torch.Tensor) -> torch.Tensor:
    """0 → 255 (ignore), v → v - 1, and 254 (a raw 255) → 255. int64 in, int64 out."""
    out = mask - 1
    out[mask == 0] = 255
    out[out == 254] = 255
    return out


def _default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    g = torch.Generator().manual_seed(n)
    return tuple(tuple(int(v) for v in c) for c in torch.randint(0, 256, (n, 3), generator=g))


class SegmentationDataset(Dataset):
    """Base class: a list of (image, mask-or-None) files, class metadata and a settable ``transform``.

    Subclasses fill ``self.files`` and the metadata; ``transform`` (a callable on the sample dict, e.g. a
    ``v2.Compose``) is applied last. ``ignore_index`` is 255. ``raster``: how images become uint8 RGB
    (:class:`~mtp.data.datasets.rasters.RasterRule`; default: the documented rule).
    """

    ignore_index: int = 255

    def __init__(
        self,
        files: Sequence[tuple[Path, Path | None]],
        classes: Sequence[str],
        palette: Palette | None = None,
        reduce_zero_label: bool = False,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        raster: RasterRule | None = None,
    ) -> None:
        self.files = list(files)
        self.raster = raster or DEFAULT_RULE
        self.classes = tuple(classes)
        self.palette = tuple(tuple(c) for c in palette) if palette is not None else _default_palette(len(classes))
        if len(self.palette) != len(self.classes):
            raise ValueError(f"{len(self.classes)} classes but {len(self.palette)} palette colours")
        self.reduce_zero_label = reduce_zero_label
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def load_mask(self, path: Path) -> torch.Tensor:
        """int64 (H, W) class indices: the stored values, checked by :meth:`check_mask`, after
        ``reduce_zero_label`` when set."""
        mask = read_mask(path)
        self.check_mask(mask, path)
        return reduce_zero_label(mask) if self.reduce_zero_label else mask

    def check_mask(self, mask: torch.Tensor, path: Path) -> None:
        """Stored values must be class labels: 0..C-1 and 255 (ignore), or with ``reduce_zero_label`` 1..C (classes)
        and 0 / 255 (ignore); the error names the file and the values found."""
        values = mask_values(mask)
        lo, hi = (1, self.num_classes) if self.reduce_zero_label else (0, self.num_classes - 1)
        bad = values[((values < lo) | (values > hi)) & (values != self.ignore_index) & (values != (0 if lo else -1))]
        if bad.numel():
            shown = bad[:10].tolist()
            ignore = (
                f"0 and {self.ignore_index} = ignore (reduce_zero_label)" if lo else f"{self.ignore_index} = ignore"
            )
            rule = f"{lo}..{hi} = the {self.num_classes} classes, {ignore}"
            raise ValueError(f"{path}: mask has values {shown}{' ...' if bad.numel() > 10 else ''} that are not labels "
                             f"(stored values must be {rule})")  # fmt: skip

    @staticmethod
    def _size_mismatch(image_path: Path, hw: tuple[int, ...], mask_path: Path, mask_hw: tuple[int, ...]) -> ValueError:
        return ValueError(f"{mask_path}: mask is {mask_hw[0]}x{mask_hw[1]} (HxW) but its image {image_path} is "
                          f"{hw[0]}x{hw[1]}")  # fmt: skip

    def load_sample(self, index: int) -> dict[str, Any]:
        """The sample dict before ``transform`` (see the module docstring)."""
        image_path, mask_path = self.files[index]
        image = read_rgb(image_path, self.raster)
        sample: dict[str, Any] = {"image": tv_tensors.Image(image)}
        if mask_path is not None:
            mask = self.load_mask(mask_path)
            if tuple(mask.shape) != tuple(image.shape[-2:]):
                raise self._size_mismatch(image_path, tuple(image.shape[-2:]), mask_path, tuple(mask.shape))
            sample["mask"] = tv_tensors.Mask(mask)
        sample["image_path"] = str(image_path)
        sample["mask_path"] = None if mask_path is None else str(mask_path)
        sample["ori_size"] = (int(image.shape[-2]), int(image.shape[-1]))
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_sample(index)
        return self.transform(sample) if self.transform is not None else sample

    def check_item(self, index: int, level: str = "quick") -> None:
        """Raise (``ValueError`` / ``FileNotFoundError`` naming the file) at the first problem of sample ``index``:
        'quick' reads headers (the image under the raster rule, not truncated; the mask single-channel and of the
        image's size), 'full' decodes both and checks the mask values."""
        if level == "full":
            self.load_sample(index)
            return
        image_path, mask_path = self.files[index]
        hw = check_raster(image_path, self.raster).hw
        if mask_path is not None:
            mask_hw = mask_header(mask_path)
            if mask_hw != hw:
                raise self._size_mismatch(image_path, hw, mask_path, mask_hw)

    def validate(self, max_errors: int = 20) -> dict[str, Any]:
        """Eagerly scan every mask (values, size vs the image header); raise one ``ValueError`` listing up to
        ``max_errors`` problems. Returns ``{"num_samples": n, "class_pixels": [count per class],
        "ignored_pixels": count}`` when everything is fine."""
        errors: list[str] = []
        counts = torch.zeros(self.num_classes + 1, dtype=torch.int64)
        for image_path, mask_path in self.files:
            try:
                hw = image_size(image_path)
                if mask_path is None:
                    continue
                mask = self.load_mask(mask_path)
                if tuple(mask.shape) != hw:
                    raise self._size_mismatch(image_path, hw, mask_path, tuple(mask.shape))
                flat = torch.where(mask == self.ignore_index, self.num_classes, mask).flatten()
                counts += torch.bincount(flat, minlength=self.num_classes + 1)
            except ValueError as e:
                errors.append(str(e))
                if len(errors) >= max_errors:
                    break
        if errors:
            raise ValueError(f"{len(errors)} problem(s) found:\n  " + "\n  ".join(errors))
        return {"num_samples": len(self), "class_pixels": counts[:-1].tolist(), "ignored_pixels": int(counts[-1])}


class ImageMaskFolder(SegmentationDataset):
    """Images in ``images_dir`` paired by file stem with label maps in ``masks_dir`` (None: unlabelled)."""

    def __init__(
        self,
        images_dir: str | Path,
        masks_dir: str | Path | None = None,
        img_suffix: str = ".png",
        mask_suffix: str = ".png",
        *,
        classes: Sequence[str],
        palette: Palette | None = None,
        reduce_zero_label: bool = False,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        raster: RasterRule | None = None,
    ) -> None:
        files = pair_files(Path(images_dir), None if masks_dir is None else Path(masks_dir), img_suffix, mask_suffix)
        super().__init__(files, classes, palette, reduce_zero_label, transform, raster)


class LoveDA(SegmentationDataset):
    """LoveDA, 7 classes (background … agricultural); raw 0 = no-data → 255, raw v → v - 1.

    ``layout='mtp'``: ``root/{split}/{images,labels}/*.png`` (MTP's ``trainval`` / ``test`` folders).
    ``layout='release'``: ``root/{Train,Val,Test}/{Urban,Rural}/{images_png,masks_png}/*.png`` with
    ``split`` 'train' | 'val' | 'trainval' | 'test'. ``split='test'`` never reads masks.
    """

    SPLITS: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": ("Train",),
        "val": ("Val",),
        "trainval": ("Train", "Val"),
        "test": ("Test",),
    }
    LAYOUTS: ClassVar[dict[str, str]] = {
        "mtp": "root/{trainval,test}/{images,labels}",
        "release": "root/{Train,Val,Test}/{Urban,Rural}/{images_png,masks_png}",
    }

    @staticmethod
    def _looks_like(root: Path, layout: str) -> bool:
        if layout == "mtp":
            return any((d / "images").is_dir() for d in root.iterdir() if d.is_dir())
        return any(
            (root / part / "Urban").is_dir() or (root / part / "Rural").is_dir() for part in ("Train", "Val", "Test")
        )

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        layout: str = "mtp",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        raster: RasterRule | None = None,
    ) -> None:
        root = Path(root)
        labelled = split != "test"
        if layout not in ("mtp", "release"):
            raise ValueError(f"layout must be 'mtp' or 'release', got {layout!r}")
        other = "release" if layout == "mtp" else "mtp"
        if root.is_dir() and not self._looks_like(root, layout) and self._looks_like(root, other):
            raise FileNotFoundError(f"{root} holds the LoveDA '{other}' layout ({self.LAYOUTS[other]}) but "
                                    f"layout={layout!r} reads {self.LAYOUTS[layout]}: set layout: {other}")  # fmt: skip
        if layout == "mtp":
            d = root / split
            files = pair_files(d / "images", d / "labels" if labelled else None, ".png", ".png")
        elif layout == "release":
            if split not in self.SPLITS:
                raise ValueError(f"split must be one of {sorted(self.SPLITS)}, got {split!r}")
            files = []
            for part in self.SPLITS[split]:
                for scene in ("Urban", "Rural"):
                    d = root / part / scene
                    files += pair_files(d / "images_png", d / "masks_png" if labelled else None, ".png", ".png")
        super().__init__(files, LOVEDA_CLASSES, LOVEDA_PALETTE, reduce_zero_label=True, transform=transform,
                         raster=raster)  # fmt: skip


def loveda_submission_array(pred: torch.Tensor | np.ndarray) -> np.ndarray:
    """uint8 (H, W) LoveDA server labels from a prediction of class indices 0..6 (H, W).

    The server takes 0..6 in our class order: mmseg's ``format_only`` writes ``pred + 1`` and MTP's
    ``change_loveda_label.py`` subtracts 1 again, so the net result is the prediction itself. Values outside
    0..6 (e.g. 255) raise ``ValueError``.
    """
    arr = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    if arr.ndim != 2:
        raise ValueError(f"expected an (H, W) prediction, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > len(LOVEDA_CLASSES) - 1):
        raise ValueError(f"LoveDA predictions must be in 0..6, got range [{arr.min()}, {arr.max()}]")
    return arr.astype(np.uint8)


class SpaceNetV1(SegmentationDataset):
    """SpaceNet v1 building masks: ``root/{train,val}/{images,labels}/*.png``; 'test' reads 'val' (as the
    official configs). Labels 0 = background, 1 = building, 255 = ignore, no zero-label reduction.

    A mask whose values are only {0, 255} with some 255 and no 1 looks like the official 0/255 export
    (``scripts/process_spacenet.py``, docs/RECIPES.md#official-scripts): every building would silently become
    "ignore", so it raises ``ValueError`` naming the file (``check_255_export=False`` turns this off).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        check_255_export: bool = True,
        raster: RasterRule | None = None,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        d = Path(root) / ("val" if split == "test" else split)
        files = pair_files(d / "images", d / "labels", ".png", ".png")
        self.check_255_export = check_255_export
        super().__init__(files, SPACENET_CLASSES, SPACENET_PALETTE, reduce_zero_label=False, transform=transform,
                         raster=raster)  # fmt: skip

    def check_mask(self, mask: torch.Tensor, path: Path) -> None:
        if self.check_255_export:
            values = set(mask_values(mask).tolist())
            if 255 in values and values <= {0, 255}:
                raise ValueError(
                    f"{path}: mask holds 0/255 values and no 1s: it looks like the official 0/255 SpaceNet export, "
                    "where every building pixel would be ignored. Convert the release with "
                    "`mtp tool spacenet-to-masks --src DIR --out DIR` (0/1 labels)."
                )
        super().check_mask(mask, path)
