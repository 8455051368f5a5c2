"""Scene-classification readers: class folders (generic), EuroSAT (RGB jpg or 13-band GeoTIFF), RESISC-45.

Sample dict returned by ``dataset[i]``:

* ``"image"``: ``transform(pil_image)`` when a transform is set (the datamodule sets timm's: a float
  (3, 224, 224) normalised tensor), else a uint8 (3, H, W) RGB tensor;
* ``"label"``: int64 scalar tensor, the index of the class in ``dataset.classes`` (-1 for
  :class:`UnlabelledImages`, the predict input);
* ``"image_path"``: str.

Class order: ``classes`` as given, else the **sorted** names of the class sub-folders (the official
mmpretrain ``CustomDataset`` rule; EuroSAT: AnnualCrop, Forest, HerbaceousVegetation, Highway,
Industrial, Pasture, PermanentCrop, Residential, River, SeaLake). The task stores this list with its
checkpoint and refuses test data whose class order differs.

Images are read under the raster rule of :mod:`mtp.data.datasets.rasters` (8-bit files as stored, grey
and RGBA converted, GeoTIFFs with rasterio). The classification default is the EuroSAT-MS one: files with
more than three bands (the EuroSAT-MS release, 13 bands B01..B12 with B8A) show bands ``rgb_bands`` (1-based;
default (4, 3, 2) = B04, B03, B02), and non-8-bit pixels are scaled ``'fixed'``:
``round(clip(DN / tif_scale, 0, 1) * 255)`` with ``tif_scale`` 3000 (reflectance 0.3 -> 255, a common
true-colour stretch for L1C digital numbers = reflectance x 10000). ``raster`` replaces this rule.

Bad input raises ``FileNotFoundError`` / ``ValueError`` naming the file or folder: a missing root, a
class folder without images, an unreadable image (when it is read), a split-file line with an unknown
class, a bad index or a missing image.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils.data import Dataset

from mtp.data.datasets.files import content_hint, folder_hint
from mtp.data.datasets.rasters import RasterRule, check_raster, read_rgb_array

__all__ = [
    "EUROSAT_CLASSES",
    "IMAGE_EXTENSIONS",
    "RESISC45",
    "RESISC45_CLASSES",
    "ClassFolder",
    "ClassificationDataset",
    "EuroSAT",
    "UnlabelledImages",
    "classification_rule",
    "read_classification_image",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: The EuroSAT release folder names, sorted (= the official label order).
EUROSAT_CLASSES = tuple(
    "AnnualCrop Forest HerbaceousVegetation Highway Industrial Pasture PermanentCrop Residential River SeaLake".split()  # noqa: SIM905
)

#: The NWPU-RESISC45 release folder names, sorted (used when ``root`` has no class folders).
RESISC45_CLASSES = tuple(
    (  # noqa: SIM905
        "airplane airport baseball_diamond basketball_court beach bridge chaparral church circular_farmland "
        "cloud commercial_area dense_residential desert forest freeway golf_course ground_track_field harbor "
        "industrial_area intersection island lake meadow medium_residential mobile_home_park mountain "
        "overpass palace parking_lot railway railway_station rectangular_farmland river roundabout runway "
        "sea_ice ship snowberg sparse_residential stadium storage_tank tennis_court terrace "
        "thermal_power_station wetland"
    ).split()
)


def classification_rule(rgb_bands: Sequence[int] = (4, 3, 2), tif_scale: float = 3000.0) -> RasterRule:
    """The classification raster rule (module docstring): ``rgb_bands`` for multi-band files, 'fixed' scaling with
    ``max_value=tif_scale``."""
    return RasterRule(scaling="fixed", max_value=float(tif_scale), rgb_bands=tuple(rgb_bands))


def read_classification_image(
    path: str | Path,
    *,
    rgb_bands: Sequence[int] = (4, 3, 2),
    tif_scale: float = 3000.0,
    raster: RasterRule | None = None,
) -> PILImage.Image:
    """An RGB PIL image of any image file under ``raster`` (default: :func:`classification_rule`).

    Raises ``ValueError`` naming the file when it cannot be read.
    """
    rule = raster or classification_rule(rgb_bands, tif_scale)
    return PILImage.fromarray(read_rgb_array(path, rule), mode="RGB")


def _images_in(folder: Path, extensions: Sequence[str]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def scan_class_folders(
    root: Path, classes: Sequence[str] | None, extensions: Sequence[str]
) -> tuple[list[str], list[tuple[Path, int]]]:
    """(classes, [(image, label)]) from ``root/<class>/<image>``; errors name the empty / missing folder."""
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}{folder_hint(root)}")
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise ValueError(f"no class sub-folders in {root} (expected {root}/<class_name>/<images>)")
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(f"class folder not found: {folder}{folder_hint(folder)}")
        images = _images_in(folder, extensions)
        if not images:
            raise ValueError(f"class folder {folder} has no images ({', '.join(extensions)}){content_hint(folder)}")
        samples += [(p, label) for p in images]
    return list(classes), samples


class ClassificationDataset(Dataset):
    """Base class: ``samples`` [(path, label)], ``classes``, a settable ``transform`` (on the PIL image)."""

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        classes: Sequence[str],
        transform: Callable | None = None,
        rgb_bands: Sequence[int] = (4, 3, 2),
        tif_scale: float = 3000.0,
        raster: RasterRule | None = None,
    ) -> None:
        if len(set(classes)) != len(classes):
            raise ValueError(f"duplicate class names in {list(classes)}")
        self.samples, self.classes, self.transform = samples, list(classes), transform
        self.rgb_bands, self.tif_scale = tuple(rgb_bands), tif_scale
        self.raster = raster or classification_rule(rgb_bands, tif_scale)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, label = self.samples[index]
        image = read_classification_image(path, raster=self.raster)
        if self.transform is not None:
            out = self.transform(image)
        else:
            out = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()
        return {"image": out, "label": torch.tensor(label, dtype=torch.int64), "image_path": str(path)}

    def check_item(self, index: int, level: str = "quick") -> None:
        """Raise (naming the file) when image ``index`` is unreadable, truncated or refused by the raster rule;
        'quick' reads the header, 'full' decodes the pixels."""
        path = self.samples[index][0]
        if level == "full":
            read_rgb_array(path, self.raster)
        else:
            check_raster(path, self.raster)


class ClassFolder(ClassificationDataset):
    """Generic ``root/<class_name>/<image>`` folder (torchvision ``ImageFolder`` / mmpretrain ``CustomDataset``).

    Args:
        root: the folder holding one sub-folder per class.
        classes: class names in label order; default: the sorted sub-folder names.
        extensions: accepted image suffixes (lower case).
        rgb_bands, tif_scale: GeoTIFF rule (module docstring); raster: a whole raster rule instead.
    """

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        transform: Callable | None = None,
        rgb_bands: Sequence[int] = (4, 3, 2),
        tif_scale: float = 3000.0,
        raster: RasterRule | None = None,
    ) -> None:
        self.root = Path(root)
        names, samples = scan_class_folders(self.root, classes, tuple(e.lower() for e in extensions))
        super().__init__(samples, names, transform, rgb_bands, tif_scale, raster)


class EuroSAT(ClassFolder):
    """EuroSAT: ``layout='mtp'`` = ``root/{train,val}/<Class>/*`` (the official configs), ``'release'`` =
    ``root/<Class>/*`` (EuroSAT-RGB jpgs, or EuroSAT-MS 13-band tifs read as RGB B04/B03/B02) with an
    optional seeded stratified split (``split`` 'train' / 'val' / 'all', ``val_fraction``, ``seed``).
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "val", "all"] = "train",
        layout: Literal["mtp", "release"] = "mtp",
        classes: Sequence[str] | None = None,
        val_fraction: float = 0.25,
        seed: int = 0,
        transform: Callable | None = None,
        rgb_bands: Sequence[int] = (4, 3, 2),
        tif_scale: float = 3000.0,
        raster: RasterRule | None = None,
    ) -> None:
        if layout not in ("mtp", "release"):
            raise ValueError(f"layout must be 'mtp' or 'release', got {layout!r}")
        root = Path(root)
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        if layout == "release" and {"train", "val"} <= set(found) and classes is None:
            raise ValueError(f"{root} holds train/ and val/ folders (the 'mtp' layout) but layout='release' would read "
                             "them as two classes: set layout: mtp")  # fmt: skip
        if layout == "mtp" and found and "train" not in found and set(found) & set(EUROSAT_CLASSES):
            raise FileNotFoundError(f"{root} holds class folders ({', '.join(found[:3])}, ...: the 'release' layout) "
                                    f"but layout='mtp' reads {root}/{split}/<class>/: set layout: release")  # fmt: skip
        if layout == "mtp":
            if split not in ("train", "val"):
                raise ValueError(f"layout 'mtp' has splits 'train' and 'val', got {split!r}")
            super().__init__(root / split, classes, IMAGE_EXTENSIONS, transform, rgb_bands, tif_scale, raster)
        else:
            super().__init__(root, classes, IMAGE_EXTENSIONS, transform, rgb_bands, tif_scale, raster)
            self.samples = seeded_split(self.samples, split, val_fraction, seed)
        if classes is None and tuple(self.classes) != EUROSAT_CLASSES:
            extra = sorted(set(self.classes) - set(EUROSAT_CLASSES))
            missing = sorted(set(EUROSAT_CLASSES) - set(self.classes))
            log.warning("EuroSAT %s: the class folders differ from the 10 EuroSAT classes (not EuroSAT: %s; "
                        "absent: %s); labels follow the sorted folder names", root, extra or "none",
                        missing or "none")  # fmt: skip
        self.split, self.layout = split, layout


def seeded_split(samples: list[tuple[Path, int]], split: str, val_fraction: float, seed: int) -> list[tuple[Path, int]]:
    """Stratified split: per class, a ``random.Random(seed)`` shuffle of the sorted files; the first
    ``round(val_fraction * n)`` (at least 1 when n >= 2) go to 'val', the rest to 'train'; 'all' keeps all."""
    if split == "all":
        return samples
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    by_class: dict[int, list[Path]] = {}
    for path, label in samples:
        by_class.setdefault(label, []).append(path)
    out: list[tuple[Path, int]] = []
    for label in sorted(by_class):
        files = sorted(by_class[label])
        random.Random(f"{seed}-{label}").shuffle(files)
        n_val = min(len(files) - 1, max(1, round(val_fraction * len(files)))) if len(files) >= 2 else 0
        chosen = files[:n_val] if split == "val" else files[n_val:]
        out += [(p, label) for p in sorted(chosen)]
    return out


class RESISC45(ClassificationDataset):
    """NWPU-RESISC45: images under ``root`` (``root/<class_name>/<class_name>_NNN.jpg`` in the release).

    With ``split_file`` (MTP's ``train_labels_28_mtp.txt`` / ``valid_labels_28_mtp.txt``): one image per
    line, ``<path relative to root> <label>``; the label is a class index or a class name; a line with
    only a path takes the class from the image's parent folder. Class order: ``classes``, else the sorted
    class folders of ``root``, else :data:`RESISC45_CLASSES` (the release folder names, sorted; the
    official repo does not record its order). Blank lines and ``#`` comments are skipped; ``split`` is
    not used. Without ``split_file``: the class folders with a seeded stratified split (``split``
    'train' / 'val' / 'all'; ``train_fraction`` 0.2 = the paper's 20 % training split).
    """

    def __init__(
        self,
        root: str | Path,
        split_file: str | Path | None = None,
        classes: Sequence[str] | None = None,
        split: Literal["train", "val", "all"] = "train",
        train_fraction: float = 0.2,
        seed: int = 0,
        transform: Callable | None = None,
        raster: RasterRule | None = None,
    ) -> None:
        self.root = Path(root)
        if split_file is None:
            names, samples = scan_class_folders(self.root, classes, IMAGE_EXTENSIONS)
            samples = seeded_split(samples, split, 1.0 - train_fraction, seed)
        else:
            if classes is None:
                if not self.root.is_dir():
                    raise FileNotFoundError(f"dataset folder not found: {self.root}")
                names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
            else:
                names = list(classes)
            names = names or list(RESISC45_CLASSES)
            samples = self._read_split_file(Path(split_file), names)
        super().__init__(samples, names, transform, raster=raster)

    def _read_split_file(self, split_file: Path, classes: list[str]) -> list[tuple[Path, int]]:
        if not split_file.is_file():
            raise FileNotFoundError(f"split file not found: {split_file}")
        index = {name: i for i, name in enumerate(classes)}
        samples = []
        for n, line in enumerate(split_file.read_text().splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=1)
            rel, token = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], None)
            path = self.root / rel
            if token is None:
                token = path.parent.name
            if token.lstrip("-").isdigit():
                label = int(token)
                if not 0 <= label < len(classes):
                    raise ValueError(f"{split_file}:{n}: class index {label} outside 0..{len(classes) - 1}")
            elif token in index:
                label = index[token]
            else:
                raise ValueError(f"{split_file}:{n}: unknown class {token!r} (known: {', '.join(classes[:5])}, ...)")
            if not path.is_file():
                raise FileNotFoundError(f"{split_file}:{n}: image not found: {path}")
            samples.append((path, label))
        if not samples:
            raise ValueError(f"split file {split_file} lists no images")
        return samples


class UnlabelledImages(ClassificationDataset):
    """Every image directly in ``root`` (sorted; for ``predict``): label -1, no class list."""

    def __init__(
        self,
        root: str | Path,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        transform: Callable | None = None,
        rgb_bands: Sequence[int] = (4, 3, 2),
        tif_scale: float = 3000.0,
        raster: RasterRule | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}{folder_hint(self.root)}")
        images = _images_in(self.root, tuple(e.lower() for e in extensions))
        if not images:
            raise ValueError(f"no images ({', '.join(extensions)}) in {self.root}{content_hint(self.root)}")
        super().__init__([(p, -1) for p in images], [], transform, rgb_bands, tif_scale, raster)
