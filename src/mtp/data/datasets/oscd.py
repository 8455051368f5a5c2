"""OSCD (Onera Satellite Change Detection) from the Sentinel-2 release: band GeoTIFFs -> RGB pairs.

Release layout (images and labels are separate downloads):

* ``<images_root>/<split>.txt``: one line of comma-separated city names (``train``, ``test``);
* ``<images_root>/<city>/imgs_1_rect/B04.tif`` (and ``B03``, ``B02``, ...), ``imgs_2_rect/...``: the two dates,
  co-registered, one single-band GeoTIFF per band (``rect=False`` reads ``imgs_1/*_B04.tif`` instead);
* ``<labels_root>/<city>/cm/<city>-cm.tif`` (values 1 = unchanged, 2 = changed, mapped explicitly to 0/1) or
  ``<labels_root>/<city>/cm/cm.png`` (official ``to_binary`` rule: >= 128 -> changed).

RGB conversion (our choice; the official repo only ships the converted ``oscd_rgb_patch_dataset``): bands
B04/B03/B02 (red, green, blue, all 10 m), ``uint8 = clip(round(DN * 255 / dn_max), 0, 255)`` with the same
fixed ``dn_max`` (3000 = reflectance 0.3) for both dates, so no change is introduced by per-image stretching.

:class:`OSCDSentinel2` yields the sample dict of :mod:`mtp.data.datasets.change_detection` for whole cities;
:func:`write_oscd_patches` cuts them into the A/B/label patch layout that the official configs (and
:class:`~mtp.data.datasets.change_detection.OSCD`) read. Errors name the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mtp.data.datasets.change_detection import CD_CLASSES, CD_PALETTE, read_label, write_pair
from mtp.data.datasets.rasters import raster_info, valid_pixels

__all__ = ["OSCDSentinel2", "read_band", "write_oscd_patches"]


def read_band(path: Path) -> np.ndarray:
    """(H, W) float32 digital numbers of band 1 of a GeoTIFF; pixels equal to the declared nodata become 0;
    ``ValueError`` naming the file for unreadable files and NaN / Inf values that are not declared nodata."""
    import rasterio

    if not path.is_file():
        raise FileNotFoundError(f"{path}: band file not found")
    try:
        with rasterio.open(path) as src:
            band, nodata = src.read(1), src.nodata
    except rasterio.errors.RasterioError as e:
        cause = e.__cause__ or e
        raise ValueError(f"{path}: cannot read band: {cause}") from e
    valid = valid_pixels(band[None], nodata, path)
    band = band.astype(np.float32)
    if valid is not None:
        band[~valid[0]] = 0.0
    return band


class OSCDSentinel2(Dataset):
    """Whole-city OSCD pairs as uint8 RGB (see the module docstring).

    Args:
        images_root: folder with ``train.txt`` / ``test.txt`` and one folder per city.
        labels_root: folder with ``<city>/cm/``; None -> unlabelled.
        split: ``train`` or ``test`` (the name of the city list file).
        bands: the three bands mapped to R, G, B. dn_max: DN mapped to 255. rect: use ``imgs_*_rect``.
        transform: callable on the sample dict.
    """

    classes = CD_CLASSES
    palette = CD_PALETTE
    ignore_index = 255

    def __init__(
        self,
        images_root: str | Path,
        labels_root: str | Path | None = None,
        split: str = "train",
        bands: Sequence[str] = ("B04", "B03", "B02"),
        dn_max: float = 3000.0,
        rect: bool = True,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.images_root = Path(images_root)
        self.labels_root = Path(labels_root) if labels_root is not None else None
        self.bands, self.dn_max, self.rect, self.transform = tuple(bands), float(dn_max), rect, transform
        listing = self.images_root / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"OSCD city list not found: {listing}")
        self.cities = [c.strip() for c in listing.read_text().replace("\n", ",").split(",") if c.strip()]
        if not self.cities:
            raise ValueError(f"no city names in {listing}")
        for city in self.cities:
            if not (self.images_root / city).is_dir():
                raise FileNotFoundError(f"city folder listed in {listing} not found: {self.images_root / city}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.cities)

    def band_path(self, city: str, date: int, band: str) -> Path:
        if self.rect:
            return self.images_root / city / f"imgs_{date}_rect" / f"{band}.tif"
        matches = sorted((self.images_root / city / f"imgs_{date}").glob(f"*_{band}.tif"))
        if not matches:
            raise FileNotFoundError(f"no *_{band}.tif in {self.images_root / city / f'imgs_{date}'}")
        return matches[0]

    def read_rgb(self, city: str, date: int) -> torch.Tensor:
        """uint8 (3, H, W) RGB of one date; bands of different sizes are an error naming the file."""
        arrays, first = [], None
        for band in self.bands:
            path = self.band_path(city, date, band)
            arr = read_band(path)
            if first is not None and arr.shape != arrays[0].shape:
                raise ValueError(f"band {path} is {arr.shape} but {first} is {arrays[0].shape}")
            first = first or path
            arrays.append(arr)
        rgb = np.clip(np.rint(np.stack(arrays) * (255.0 / self.dn_max)), 0, 255).astype(np.uint8)
        return torch.from_numpy(rgb)

    def label_path(self, city: str) -> Path | None:
        if self.labels_root is None:
            return None
        for candidate in (self.labels_root / city / "cm" / f"{city}-cm.tif", self.labels_root / city / "cm" / "cm.png"):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"no change map for {city}: expected {self.labels_root / city / 'cm' / f'{city}-cm.tif'}"
        )

    @staticmethod
    def read_change_map(path: Path) -> torch.Tensor:
        """int64 (H, W) 0/1: the release tif (1 -> 0, 2 -> 1, anything else an error) or cm.png (threshold)."""
        if path.suffix.lower() != ".tif":
            return read_label(path, "threshold")
        raw = read_band(path).astype(np.int64)
        bad = sorted(set(np.unique(raw).tolist()) - {1, 2})
        if bad:
            raise ValueError(f"change map {path}: unexpected value(s) {bad[:10]}, expected 1 (unchanged) / 2 (changed)")
        return torch.from_numpy(raw - 1)

    def check_item(self, index: int, level: str = "quick") -> None:
        """Raise (naming the file) at the first problem of city ``index``: 'quick' reads the band headers of both
        dates (equal sizes) and finds the change map, 'full' decodes everything."""
        if level == "full":
            self.load_sample(index)
            return
        city, sizes = self.cities[index], {}
        for date in (1, 2):
            for band in self.bands:
                path = self.band_path(city, date, band)
                if not path.is_file():
                    raise FileNotFoundError(f"{path}: band file not found")
                sizes[path] = raster_info(path).hw
        first = next(iter(sizes))
        for path, hw in sizes.items():
            if hw != sizes[first]:
                raise ValueError(
                    f"{path}: band is {hw[0]}x{hw[1]} (HxW) but {first} is {sizes[first][0]}x{sizes[first][1]}"
                )
        self.label_path(city)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_sample(index)
        return self.transform(sample) if self.transform is not None else sample

    def load_sample(self, index: int) -> dict[str, Any]:
        """The sample dict of city ``index`` before ``transform``."""
        city = self.cities[index]
        image_a, image_b = self.read_rgb(city, 1), self.read_rgb(city, 2)
        if image_a.shape != image_b.shape:
            raise ValueError(
                f"{city}: date 1 is {tuple(image_a.shape[1:])} ({self.band_path(city, 1, self.bands[0])}), "
                f"date 2 is {tuple(image_b.shape[1:])} ({self.band_path(city, 2, self.bands[0])})"
            )
        path_label = self.label_path(city)
        sample: dict[str, Any] = {
            "image_a": tv_tensors.Image(image_a),
            "image_b": tv_tensors.Image(image_b),
            "image_path": str(self.images_root / city),
            "image_b_path": str(self.images_root / city),
            "mask_path": str(path_label) if path_label else None,
            "ori_size": (int(image_a.shape[1]), int(image_a.shape[2])),
            "city": city,
        }
        if path_label is not None:
            label = self.read_change_map(path_label)
            if tuple(label.shape) != tuple(image_a.shape[1:]):
                raise ValueError(f"change map {path_label} is {tuple(label.shape)}, images {tuple(image_a.shape[1:])}")
            sample["mask"] = tv_tensors.Mask(label)
        return sample


def _starts(size: int, patch: int) -> list[int]:
    """Non-overlapping patch starts, the last one snapped to the border (a city smaller than ``patch``: [0])."""
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, patch))
    return starts if starts[-1] + patch == size else [*starts, size - patch]


def write_oscd_patches(dataset: OSCDSentinel2, out: str | Path, patch: int = 96) -> int:
    """Cut every city of ``dataset`` into ``patch`` x ``patch`` pairs under ``out/{A,B,label}/<city>_<y>_<x>.png``
    (labels stored 0/255, read back with ``label_values='0_255'``). Returns the number of pairs written."""
    out, count = Path(out), 0
    for index in range(len(dataset)):
        sample = dataset[index]
        a = sample["image_a"].permute(1, 2, 0).numpy()
        b = sample["image_b"].permute(1, 2, 0).numpy()
        label = sample["mask"].numpy() if "mask" in sample else None
        h, w = a.shape[:2]
        for y in _starts(h, patch):
            for x in _starts(w, patch):
                crop = (slice(y, y + patch), slice(x, x + patch))
                cut = None if label is None else label[crop]
                write_pair(out, f"{sample['city']}_{y}_{x}.png", a[crop], b[crop], cut)
                count += 1
    return count
