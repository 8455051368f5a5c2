"""Images as uint8 RGB: the one reading and scaling rule of every dataset family (and of scene inference).

Decoders: 8-bit PNG / JPEG / BMP / WebP with Pillow (``RasterRule.decoder='cv2'``: OpenCV, the backend of the
official mm* loaders, which SAMRS keeps); 16-bit PNG with OpenCV (Pillow would truncate 48-bit RGB to 8 bits);
TIFF / GeoTIFF (any data type, any number of bands) with rasterio, and with rasterio whatever Pillow cannot
identify. The result is uint8 (H, W, 3) RGB.

Bands:

* 3 colour bands → R, G, B; 1 band → grey, repeated to 3 channels (logged once per folder); a palette image →
  its colours;
* an alpha band (PNG RGBA / LA, a TIFF band declared alpha) → dropped (logged once per folder);
* 2 or more than 3 colour bands (multispectral) → refused unless ``rgb_bands`` (1-based band numbers) names the
  three shown as R, G, B; ``rgb_bands`` is only used for such files.

Values, by data type:

* uint8 → as stored (no scaling; nodata pixels keep their stored value);
* any other type (uint16, int16, uint32, float32, ...) → ``scaling``:

  - ``'percentile'`` (default): per band and per image, the ``percentiles`` (2, 98) of the valid pixels map to 0
    and 255, linearly, clipped (a band whose two percentiles coincide uses its min and max; a constant band
    gives 0). Each image is stretched on its own: for pairs (change detection) or mosaics prefer ``'fixed'``;
  - ``'fixed'``: ``clip(value / max_value, 0, 1) * 255``, rounded; ``max_value`` defaults to the integer type's
    maximum (65535 for uint16) and to 1.0 for floats (reflectance);
  - ``'refuse'``: a ``ValueError`` naming the file (for data that must already be 8-bit);

* valid pixels: all but those equal to the band's declared nodata value (GeoTIFF ``nodata``); these become 0 and
  do not enter the percentiles;
* NaN / ±Inf: nodata when the file declares NaN as its nodata value (→ 0); otherwise the file is refused with
  the number of non-finite pixels (a NaN must never silently become a colour).

Every error is a ``ValueError`` (``FileNotFoundError`` for a missing file) whose message starts with the path.
:func:`raster_info` reads the header only; :func:`check_raster` adds the rule's acceptance and a cheap
truncation test (PNG end chunk, JPEG end marker, TIFF last block inside the file) for quick data checks.
:func:`scale_bands` applies the value rule to any (C, H, W) array (windows of a large scene: pass ``ranges``
computed once with :func:`band_ranges` so every window is scaled alike).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtp.data.datasets.raster_rule import DEFAULT_RULE, RasterRule, band_ranges, scale_bands, valid_pixels

__all__ = [
    "DEFAULT_RULE",
    "TIFF_SUFFIXES",
    "RasterInfo",
    "RasterRule",
    "band_ranges",
    "check_raster",
    "raster_info",
    "read_rgb_array",
    "read_rgb_tensor",
    "scale_bands",
    "valid_pixels",
]

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff", ".gtiff")


@dataclass(frozen=True)
class RasterInfo:
    """Header facts: ``height``, ``width``, ``bands`` (colour bands, alpha excluded), ``alpha``, ``dtype`` (numpy
    name), ``palette``, ``nodata`` (declared value or None), ``reader`` ('pil' | 'rasterio'), ``mode`` (Pillow)."""

    path: Path
    height: int
    width: int
    bands: int
    alpha: bool
    dtype: str
    palette: bool = False
    nodata: float | None = None
    reader: str = "pil"
    mode: str = ""

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width


# ------------------------------------------------------------------ headers

_PIL_MODES = {  # mode -> (colour bands, alpha, dtype)
    "1": (1, False, "uint8"), "L": (1, False, "uint8"), "LA": (1, True, "uint8"), "La": (1, True, "uint8"),
    "P": (3, False, "uint8"), "PA": (3, True, "uint8"), "RGB": (3, False, "uint8"), "RGBA": (3, True, "uint8"),
    "RGBa": (3, True, "uint8"), "RGBX": (3, False, "uint8"), "CMYK": (3, False, "uint8"),
    "YCbCr": (3, False, "uint8"), "LAB": (3, False, "uint8"), "HSV": (3, False, "uint8"),
    "I;16": (1, False, "uint16"), "I;16L": (1, False, "uint16"), "I;16B": (1, False, "uint16"),
    "I;16N": (1, False, "uint16"), "I": (1, False, "int32"), "F": (1, False, "float32"),
}  # fmt: skip


def _pil_info(path: Path) -> RasterInfo:
    from PIL import Image as PILImage

    with PILImage.open(path) as img:
        mode, (w, h) = img.mode, img.size
        rawmode = str(img.tile[0][3]) if img.tile and len(img.tile[0]) > 3 else ""
        transparency = "transparency" in img.info
    if mode not in _PIL_MODES:
        raise ValueError(f"unsupported Pillow image mode {mode!r}")
    bands, alpha, dtype = _PIL_MODES[mode]
    if mode in ("RGB", "RGBA") and ";16" in rawmode:  # 48/64-bit PNG: Pillow would keep only 8 bits
        dtype = "uint16"
    return RasterInfo(path, h, w, bands, alpha or (mode == "P" and transparency), dtype, mode in ("P", "PA"),
                      None, "pil", mode)  # fmt: skip


def _open_rasterio(path: Path):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():  # plain (non-geo) TIFFs are fine here
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def _rasterio_info(path: Path) -> RasterInfo:
    from rasterio.enums import ColorInterp

    with _open_rasterio(path) as src:
        interp = list(src.colorinterp)
        alpha = [i for i, c in enumerate(interp) if c == ColorInterp.alpha]
        colour = src.count - len(alpha)
        palette = src.count == 1 and interp[0] == ColorInterp.palette
        nodata = None if src.nodata is None else float(src.nodata)
        return RasterInfo(path, src.height, src.width, 3 if palette else colour, bool(alpha), src.dtypes[0],
                          palette, nodata, "rasterio")  # fmt: skip


def _cannot_read(path: Path, what: str, error: BaseException) -> ValueError:
    cause = error.__cause__ or error  # rasterio: "Read failed. See previous exception" -> the GDAL message
    return ValueError(f"{path}: cannot read {what}: {str(cause).strip() or type(cause).__name__}")


def _magic(head: bytes) -> str | None:
    """The image format a file's first bytes announce (None: none we know)."""
    for kind, magic in (("PNG", b"\x89PNG"), ("JPEG", b"\xff\xd8"), ("TIFF", b"II*\x00"), ("TIFF", b"MM\x00*"),
                        ("BMP", b"BM"), ("GIF", b"GIF8")):  # fmt: skip
        if head.startswith(magic):
            return kind
    return "WebP" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None


def raster_info(path: str | Path) -> RasterInfo:
    """Header of an image file (no pixels decoded); ``FileNotFoundError`` / ``ValueError`` naming the file for a
    missing, empty, truncated or non-image file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes)")
    first_error: Exception | None = None
    try:
        if path.suffix.lower() not in TIFF_SUFFIXES:
            try:
                return _pil_info(path)
            except Exception as e:  # Pillow raises many types for broken files; GDAL reads more formats
                first_error = e
                return _rasterio_info(path)
        return _rasterio_info(path)
    except Exception as last_error:
        error = first_error or last_error  # the message of the reader meant for this file type
        with open(path, "rb") as f:
            kind = _magic(f.read(16))
        if kind is None:
            raise _cannot_read(path, "image (not an image file Pillow or rasterio can read)", error) from None
        problem = _truncation(RasterInfo(path, 0, 0, 0, False, "", reader="rasterio" if kind == "TIFF" else "pil"))
        raise (ValueError(f"{path}: {problem}") if problem else _cannot_read(path, f"{kind} image", error)) from None


def _accept(info: RasterInfo, rule: RasterRule) -> None:
    """The rule's refusals, from the header alone."""
    if info.bands not in (1, 3) and not info.palette:
        if rule.rgb_bands is None:
            raise ValueError(f"{info.path}: {info.bands} colour bands ({info.dtype}); choose the three shown as "
                             "R, G, B with rgb_bands=[r, g, b] (1-based band numbers)")  # fmt: skip
        total = info.bands + int(info.alpha)
        if max(rule.rgb_bands) > total:
            raise ValueError(f"{info.path}: has {total} band(s), rgb_bands={list(rule.rgb_bands)} asks for more")
    if info.dtype != "uint8" and rule.scaling == "refuse":
        raise ValueError(f"{info.path}: {info.dtype} pixels and scaling='refuse' (only 8-bit images accepted); "
                         "use scaling='percentile' or 'fixed' (with max_value) to read it")  # fmt: skip


def _truncation(info: RasterInfo) -> str | None:
    """A cheap end-of-file test: PNG IEND chunk, JPEG end marker, TIFF last block inside the file."""
    path, size = info.path, info.path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(0, size - 1024))
        tail = f.read()
    if head.startswith(b"\x89PNG") and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk at the end of the file)"
    if head.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if info.reader == "rasterio" and info.height and head[:4] in (b"II*\x00", b"MM\x00*"):
        with _open_rasterio(path) as src:
            (bh, bw) = src.block_shapes[0]
            last = f"{(src.width - 1) // bw}_{(src.height - 1) // bh}"
            for band in range(1, src.count + 1):
                offset = src.get_tag_item(f"BLOCK_OFFSET_{last}", "TIFF", bidx=band)
                nbytes = src.get_tag_item(f"BLOCK_SIZE_{last}", "TIFF", bidx=band)
                end = int(offset or 0) + int(nbytes or 0)
                if offset and nbytes and end > size:
                    return f"truncated TIFF (its last block ends at byte {end}, the file has {size})"
    return None


def check_raster(path: str | Path, rule: RasterRule = DEFAULT_RULE) -> RasterInfo:
    """Header + the rule's refusals + the truncation test, without decoding pixels; ``ValueError`` naming the file."""
    info = raster_info(path)
    _accept(info, rule)
    problem = _truncation(info)
    if problem:
        raise ValueError(f"{info.path}: {problem}")
    return info


# ------------------------------------------------------------------ values

_logged: set[tuple[str, str]] = set()


def _log_once(kind: str, path: Path, message: str) -> None:
    key = (kind, str(path.parent))
    if key not in _logged:
        _logged.add(key)
        log.info("%s: %s (logged once per folder)", path, message)


# ------------------------------------------------------------------ decoding


def _read_rasterio(info: RasterInfo, rule: RasterRule) -> np.ndarray:
    """(C, H, W) of the chosen colour bands, scaled to uint8."""
    from rasterio.enums import ColorInterp

    with _open_rasterio(info.path) as src:
        if info.palette:
            index = src.read(1)
            table = np.zeros((256, 3), np.uint8)
            for k, rgba in src.colormap(1).items():
                table[k] = rgba[:3]
            return np.moveaxis(table[index], -1, 0)
        colour = [i + 1 for i, c in enumerate(src.colorinterp) if c != ColorInterp.alpha]
        chosen = colour if len(colour) in (1, 3) else list(rule.rgb_bands)
        bands = src.read(chosen)
        nodata = src.nodata
    valid = valid_pixels(bands, nodata, info.path)
    if bands.dtype != np.uint8:
        _log_once("scaled", info.path, f"{bands.dtype} pixels scaled to 8 bits ({rule.scaling})")
    return scale_bands(bands, rule, valid=valid, path=info.path)


def _read_pil(info: RasterInfo, rule: RasterRule) -> np.ndarray:
    """(C, H, W) colour bands (alpha removed), scaled to uint8."""
    import cv2
    from PIL import Image as PILImage

    if info.mode == "RGB" and info.dtype == "uint8" and rule.decoder == "cv2":
        bgr = cv2.imread(str(info.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("OpenCV could not decode it")
        return np.moveaxis(bgr[..., ::-1], -1, 0)
    if info.dtype == "uint16" and info.bands == 3:  # 48/64-bit PNG
        arr = cv2.imread(str(info.path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError("OpenCV could not decode it")
        bands = np.moveaxis(arr[..., 2::-1], -1, 0)
    else:
        with PILImage.open(info.path) as img:
            img.load()
            if info.palette:
                img = img.convert("RGB")
            elif img.mode in ("1", "LA", "La"):
                img = img.convert("L")
            elif img.mode not in ("L", "RGB", "I", "F") and not img.mode.startswith("I;16"):
                img = img.convert("RGB")  # RGBA, CMYK, YCbCr, ...: colour channels only
            arr = np.asarray(img)
        bands = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    valid = valid_pixels(bands, None, info.path)
    if bands.dtype != np.uint8:
        _log_once("scaled", info.path, f"{bands.dtype} pixels scaled to 8 bits ({rule.scaling})")
    return scale_bands(np.ascontiguousarray(bands), rule, valid=valid, path=info.path)


def read_rgb_array(path: str | Path, rule: RasterRule = DEFAULT_RULE) -> np.ndarray:
    """uint8 (H, W, 3) RGB of an image file under ``rule`` (module docstring); errors name the file."""
    info = raster_info(path)
    _accept(info, rule)
    try:
        bands = _read_rasterio(info, rule) if info.reader == "rasterio" else _read_pil(info, rule)
    except ValueError as e:
        message = str(e)
        raise (e if message.startswith(str(info.path)) else ValueError(f"{info.path}: {message}")) from None
    except Exception as e:  # decoder errors of Pillow / OpenCV / GDAL (truncated data, corrupt blocks)
        raise _cannot_read(info.path, "image (corrupt or truncated pixel data)", e) from e
    if info.alpha:
        _log_once("alpha", info.path, "alpha band dropped")
    if bands.shape[0] == 1:
        _log_once("grey", info.path, "single-band (grey) image repeated to 3 channels")
        bands = np.repeat(bands, 3, axis=0)
    return np.ascontiguousarray(np.moveaxis(bands, 0, -1))


def read_rgb_tensor(path: str | Path, rule: RasterRule = DEFAULT_RULE) -> torch.Tensor:
    """uint8 (3, H, W) RGB tensor of :func:`read_rgb_array`."""
    return torch.from_numpy(read_rgb_array(path, rule)).permute(2, 0, 1).contiguous()
