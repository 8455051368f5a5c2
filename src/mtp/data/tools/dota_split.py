"""Split large DOTA images into overlapping patches like mmrotate's splitter (docs/EVALUATION.md#dota-splitting).

Written from the rules, not from the OpenMMLab code:

* scales: for every rate r and every (size, gap) pair the window is ``int(size / r)`` pixels with gap
  ``int(gap / r)``, step = window − gap; the image itself is never resized (patches keep native pixels);
* windows per axis of extent L: one if L ≤ window, else ``ceil((L − window) / step + 1)`` starting at
  0, step, 2·step …, the last one moved to ``L − window`` when it overruns; the windows are the product of
  the x and y starts, for all scales together;
* a window is kept when (its area inside the image) / (its area) > ``img_rate_thr``; if none is, the
  windows within 0.01 of the best ratio are kept;
* an object goes to a window when iof = area(polygon ∩ window) / area(polygon) ≥ ``iof_thr`` (shapely on
  the unclipped polygon after an HBB prefilter; an object whose HBB lies inside the window has iof 1);
  its polygon is translated by (−x, −y), never clipped; objects with iof < 1 get difficult ``2``;
* patches are padded bottom/right to the full window with ``padding_value`` (RGB; mmrotate's BGR
  (104, 116, 124)) and written as ``out/images/<id>__<window>__<x>___<y>.png`` with the DOTA txt
  ``out/annfiles/<same>.txt`` (no annfiles without ``src_ann``, e.g. the test set).

Presets: ``ss`` sizes (1024,), gaps (200,), rates (1.0,); ``ms`` sizes (1024,), gaps (500,), rates
(0.5, 1.0, 1.5) → windows/gaps 2048/1000, 1024/500, 682/333. Self-intersecting polygons are replaced by
their convex hull for the area computations. Annotation errors raise ``AnnotationError`` naming file and line.
"""

from __future__ import annotations

import logging
import math
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtp.data.datasets.rasters import RasterRule, read_rgb_array
from mtp.data.datasets.rotated_formats import parse_dota_line

__all__ = ["PRESETS", "make_windows", "parse_patch_id", "patch_id", "split_dota", "window_starts"]

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, tuple]] = {
    "ss": {"sizes": (1024,), "gaps": (200,), "rates": (1.0,)},
    "ms": {"sizes": (1024,), "gaps": (500,), "rates": (0.5, 1.0, 1.5)},
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_PATCH_RE = re.compile(r"__(\d+)___(\d+)")


def window_starts(length: int, size: int, gap: int) -> list[int]:
    """Window starts along one axis of extent ``length`` (see the module docstring)."""
    step = size - gap
    if step <= 0:
        raise ValueError(f"window size {size} must exceed the gap {gap}")
    n = 1 if length <= size else math.ceil((length - size) / step + 1)
    starts = [step * i for i in range(n)]
    if len(starts) > 1 and starts[-1] + size > length:
        starts[-1] = length - size
    return starts


def scales(sizes: tuple[int, ...], gaps: tuple[int, ...], rates: tuple[float, ...]) -> list[tuple[int, int]]:
    """(window, gap) per rate and (size, gap) pair: ``(int(size / r), int(gap / r))``."""
    if len(sizes) != len(gaps):
        raise ValueError(f"sizes {sizes} and gaps {gaps} must have the same length")
    return [(int(s / r), int(g / r)) for r in rates for s, g in zip(sizes, gaps, strict=True)]


def make_windows(h: int, w: int, sizes=(1024,), gaps=(200,), rates=(1.0,), img_rate_thr: float = 0.6) -> np.ndarray:
    """Kept windows (K, 4) int64 x1 y1 x2 y2 (x2 = x1 + window, may pass the image) for an (h, w) image."""
    windows = []
    for size, gap in scales(tuple(sizes), tuple(gaps), tuple(rates)):
        for x, y in product(window_starts(w, size, gap), window_starts(h, size, gap)):
            windows.append((x, y, x + size, y + size))
    win = np.asarray(windows, np.int64).reshape(-1, 4)
    inside = (np.minimum(win[:, 2], w) - win[:, 0]) * (np.minimum(win[:, 3], h) - win[:, 1])
    rate = inside / ((win[:, 2] - win[:, 0]) * (win[:, 3] - win[:, 1]))
    keep = rate > img_rate_thr
    if not keep.any():
        keep = np.abs(rate - rate.max()) < 0.01
    return win[keep]


def patch_id(image_id: str, window: np.ndarray | tuple[int, int, int, int]) -> str:
    """``<id>__<window size>__<x>___<y>`` (x, y in original-image pixels)."""
    x1, y1, x2, _ = (int(v) for v in window)
    return f"{image_id}__{x2 - x1}__{x1}___{y1}"


def parse_patch_id(name: str) -> tuple[str, int, int]:
    """``'P0000__1024__824___0[.png]'`` → ``('P0000', 824, 0)``: the original id is the text before the first
    '__', (x, y) the first '__<digits>___<digits>' match (as mmrotate's merge). ``ValueError`` otherwise."""
    stem = Path(name).name
    for suffix in (*IMAGE_SUFFIXES, ".txt"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    m = _PATCH_RE.search(stem)
    if m is None or "__" not in stem:
        raise ValueError(f"not a split patch name (<id>__<size>__<x>___<y>): {name!r}")
    return stem.split("__", 1)[0], int(m[1]), int(m[2])


@dataclass
class _Objects:
    polys: np.ndarray  # (N, 8) float64
    names: list[str]
    difficult: list[int]


def read_dota_objects(path: Path) -> _Objects:
    """All objects of a DOTA txt (degenerate ones included; names unchecked)."""
    polys, names, diffs = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        parsed = parse_dota_line(line, f"{path}:{number}")
        if parsed is not None:
            polys.append(parsed[0])
            names.append(parsed[1])
            diffs.append(parsed[2])
    return _Objects(np.asarray(polys, np.float64).reshape(-1, 8), names, diffs)


def window_iof(polys: np.ndarray, window: np.ndarray) -> np.ndarray:
    """iof (N,) of polygons (N, 8) with one window x1 y1 x2 y2 (HBB prefilter, then shapely)."""
    import shapely

    iof = np.zeros(len(polys))
    if not len(polys):
        return iof
    xs, ys = polys[:, 0::2], polys[:, 1::2]
    x1, y1, x2, y2 = (float(v) for v in window)
    lo_x, hi_x, lo_y, hi_y = xs.min(1), xs.max(1), ys.min(1), ys.max(1)
    overlap = (lo_x < x2) & (hi_x > x1) & (lo_y < y2) & (hi_y > y1)
    inside = (lo_x >= x1) & (hi_x <= x2) & (lo_y >= y1) & (hi_y <= y2)
    iof[inside] = 1.0
    todo = np.flatnonzero(overlap & ~inside)
    if todo.size:
        geoms = shapely.polygons(polys[todo].reshape(-1, 4, 2))
        bad = ~shapely.is_valid(geoms)
        geoms[bad] = shapely.convex_hull(geoms[bad])
        area = shapely.area(geoms)
        inter = shapely.area(shapely.intersection(geoms, shapely.box(x1, y1, x2, y2)))
        iof[todo] = np.where(area > 0, inter / np.maximum(area, 1e-12), 0.0)
    return iof


def _fmt(v: float) -> str:
    text = f"{v:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _split_one(job: tuple[Path, Path | None, bool, Path, dict[str, Any]]) -> dict[str, int]:
    image_path, ann_path, labelled, out_root, cfg = job
    # the raster rule (OpenCV for 8-bit RGB, as mmrotate's splitter; 16-bit / float / grey by the documented rule)
    image = np.ascontiguousarray(read_rgb_array(image_path, RasterRule(decoder="cv2"))[..., ::-1])  # BGR
    h, w = image.shape[:2]
    objects = None
    if labelled:
        objects = read_dota_objects(ann_path) if ann_path is not None else _Objects(np.zeros((0, 8)), [], [])
    windows = make_windows(h, w, cfg["sizes"], cfg["gaps"], cfg["rates"], cfg["img_rate_thr"])
    pad_bgr = np.asarray(cfg["padding_value"][::-1], np.uint8)
    stats = {"num_patches": 0, "num_patch_objects": 0, "num_truncated": 0}
    for window in windows:
        x1, y1, x2, y2 = (int(v) for v in window)
        name = patch_id(image_path.stem, window)
        patch = np.empty((y2 - y1, x2 - x1, 3), np.uint8)
        patch[...] = pad_bgr
        crop = image[y1:y2, x1:x2]
        patch[: crop.shape[0], : crop.shape[1]] = crop
        if not cv2.imwrite(str(out_root / "images" / f"{name}.png"), patch):
            raise OSError(f"could not write {out_root / 'images' / name}.png")
        stats["num_patches"] += 1
        if objects is None:
            continue
        iof = window_iof(objects.polys, window)
        lines = []
        for k in np.flatnonzero(iof >= cfg["iof_thr"]):
            coords = objects.polys[k] - np.array([x1, y1] * 4, np.float64)
            difficult = objects.difficult[k] if iof[k] >= 1.0 else 2
            stats["num_truncated"] += int(iof[k] < 1.0)
            lines.append(" ".join(_fmt(v) for v in coords) + f" {objects.names[k]} {difficult}\n")
        stats["num_patch_objects"] += len(lines)
        (out_root / "annfiles" / f"{name}.txt").write_text("".join(lines))
    stats["num_objects"] = 0 if objects is None else len(objects.names)
    return stats


def split_dota(
    src_images: str | Path,
    src_ann: str | Path | None,
    out_root: str | Path,
    *,
    sizes: tuple[int, ...] = (1024,),
    gaps: tuple[int, ...] = (200,),
    rates: tuple[float, ...] = (1.0,),
    img_rate_thr: float = 0.6,
    iof_thr: float = 0.7,
    padding_value: tuple[int, int, int] = (124, 116, 104),
    workers: int = 0,
) -> dict[str, Any]:
    """Split every image of ``src_images`` (with ``src_ann/<stem>.txt`` DOTA labels, or None) into
    ``out_root/{images,annfiles}`` (see the module docstring). ``padding_value`` is RGB. ``workers`` > 0
    uses that many processes. Returns a summary dict (counts, scales, output folder)."""
    src_images, out_root = Path(src_images), Path(out_root)
    if not src_images.is_dir():
        raise FileNotFoundError(f"image folder not found: {src_images}")
    images = sorted(p for p in src_images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {src_images}")
    ann_dir = None if src_ann is None else Path(src_ann)
    if ann_dir is not None and not ann_dir.is_dir():
        raise FileNotFoundError(f"annotation folder not found: {ann_dir}")
    cfg = {"sizes": tuple(sizes), "gaps": tuple(gaps), "rates": tuple(rates), "img_rate_thr": img_rate_thr,
           "iof_thr": iof_thr, "padding_value": tuple(int(v) for v in padding_value)}  # fmt: skip
    scale_list = scales(cfg["sizes"], cfg["gaps"], cfg["rates"])
    (out_root / "images").mkdir(parents=True, exist_ok=True)
    jobs, unlabelled = [], []
    for p in images:
        ann = None if ann_dir is None else ann_dir / f"{p.stem}.txt"
        if ann is not None and not ann.is_file():
            unlabelled.append(p.name)
            ann = None
        jobs.append((p, ann, ann_dir is not None, out_root, cfg))
    if ann_dir is not None:
        (out_root / "annfiles").mkdir(parents=True, exist_ok=True)
        if unlabelled:
            log.warning("%d image(s) have no annotation in %s (no objects): %s", len(unlabelled), ann_dir,
                        ", ".join(unlabelled[:10]))  # fmt: skip
    if workers > 0:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_split_one, jobs))
    else:
        results = [_split_one(job) for job in jobs]
    summary: dict[str, Any] = {"num_images": len(images), "num_unlabelled_images": len(unlabelled)}
    for key in ("num_patches", "num_objects", "num_patch_objects", "num_truncated"):
        summary[key] = sum(r[key] for r in results)
    summary.update(out_root=str(out_root), windows_and_gaps=scale_list, iof_thr=iof_thr, img_rate_thr=img_rate_thr)
    log.info("split %d image(s) into %d patch(es) under %s", len(images), summary["num_patches"], out_root)
    return summary
