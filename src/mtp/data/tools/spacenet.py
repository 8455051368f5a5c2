"""Convert the SpaceNet v1 release (3-band GeoTIFF + GeoJSON footprints) to 0/1 PNG label maps.

Input, searched recursively under ``src_root``: images ``3band_<id>.tif`` and footprints
``Geo_<id>.geojson``, where ``<id>`` is e.g. ``AOI_1_RIO_img123`` (matched on the whole id, so several AOIs
can live side by side). Output, the layout :class:`mtp.data.datasets.segmentation.SpaceNetV1` reads::

    out_root/{train,val}/images/<image stem>.png   RGB uint8 (bands 1, 2, 3 of the GeoTIFF)
    out_root/{train,val}/labels/<image stem>.png   L uint8, 0 = background, 1 = building
    out_root/split.json                            seed, val_fraction and the file stems of each split

Footprints are burnt with ``rasterio.features.rasterize`` on the image's affine transform with
``all_touched=False`` (a pixel is a building when its centre lies inside a polygon). GeoJSON coordinates
are in the CRS named by the file's (pre-RFC 7946) ``"crs"`` member, else lon/lat WGS84; they are
reprojected to the image CRS with ``rasterio.warp.transform_geom`` when the two differ. An empty
FeatureCollection (or only empty / null geometries) gives an all-zero mask. Images without a GeoJSON are
skipped with a warning and listed in the summary. The split is a seeded permutation of the sorted ids,
so it is reproducible. This replaces the official ``process_spacenet.py``, whose 0/255 masks the dataset
class cannot use (docs/RECIPES.md#traps-in-the-official-repository, item 14).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

__all__ = ["convert_spacenet_v1", "find_pairs", "rasterize_footprints"]

log = logging.getLogger(__name__)

_IMAGE_RE = re.compile(r"^3band_(?P<id>.*img\d+)\.tif$", re.IGNORECASE)
_GEOJSON_RE = re.compile(r"^Geo_(?P<id>.*img\d+)\.geojson$", re.IGNORECASE)


def _index(root: Path, pattern: re.Pattern[str], kind: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        m = pattern.match(p.name)
        if m and p.is_file():
            key = m["id"]
            if key in found:
                raise ValueError(f"two {kind} files for id {key}: {found[key]} and {p}")
            found[key] = p
    return found


def find_pairs(src_root: str | Path) -> tuple[dict[str, tuple[Path, Path]], list[Path]]:
    """``({id: (image, geojson)}, [images without GeoJSON])`` found recursively under ``src_root``."""
    root = Path(src_root)
    if not root.is_dir():
        raise FileNotFoundError(f"SpaceNet source folder not found: {root}")
    images = _index(root, _IMAGE_RE, "image")
    if not images:
        raise ValueError(f"no 3-band images (3band_*img<N>.tif) found under {root}")
    geojsons = _index(root, _GEOJSON_RE, "GeoJSON")
    pairs = {k: (p, geojsons[k]) for k, p in images.items() if k in geojsons}
    missing = [p for k, p in images.items() if k not in geojsons]
    return pairs, missing


def _geojson_crs(data: dict[str, Any], path: Path):
    """The CRS named by a GeoJSON ``"crs"`` member, or OGC:CRS84 (lon/lat) when there is none."""
    from rasterio.crs import CRS

    member = data.get("crs")
    try:
        if member is None:
            return CRS.from_user_input("OGC:CRS84")
        props = member.get("properties", {})
        if "name" in props:
            return CRS.from_user_input(props["name"])
        if "code" in props:
            return CRS.from_epsg(int(props["code"]))
        raise ValueError(f"unsupported crs member {member}")
    except Exception as e:
        raise ValueError(f"cannot interpret the CRS of GeoJSON {path}: {e}") from e


def rasterize_footprints(geojson_path: Path, out_shape: tuple[int, int], transform: Any, image_crs: Any) -> np.ndarray:
    """uint8 (H, W) mask, 1 inside the (Multi)Polygon footprints of ``geojson_path``, else 0."""
    from rasterio import features
    from rasterio.warp import transform_geom

    try:
        data = json.loads(Path(geojson_path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read GeoJSON {geojson_path}: {e}") from e
    if data.get("type") == "FeatureCollection":
        geoms = [f.get("geometry") for f in data.get("features", [])]
    elif data.get("type") == "Feature":
        geoms = [data.get("geometry")]
    else:
        raise ValueError(f"GeoJSON {geojson_path} is not a FeatureCollection or Feature (type {data.get('type')!r})")
    geoms = [g for g in geoms if g]  # null geometries
    skipped = [str(g.get("type")) for g in geoms if g.get("type") not in ("Polygon", "MultiPolygon")]
    if skipped:
        log.warning("%s: ignoring %d non-polygon geometries (%s)", geojson_path, len(skipped), sorted(set(skipped)))
    geoms = [g for g in geoms if g.get("type") in ("Polygon", "MultiPolygon") and g.get("coordinates")]
    if not geoms:
        return np.zeros(out_shape, dtype=np.uint8)
    src_crs = _geojson_crs(data, geojson_path)
    if image_crs is None:
        raise ValueError(f"image for {geojson_path} has no CRS: cannot place the footprints")
    if src_crs != image_crs:
        try:
            geoms = [transform_geom(src_crs, image_crs, g) for g in geoms]
        except Exception as e:
            raise ValueError(f"cannot reproject GeoJSON {geojson_path} from {src_crs} to {image_crs}: {e}") from e
    return features.rasterize(
        [(g, 1) for g in geoms], out_shape=out_shape, transform=transform, fill=0, all_touched=False, dtype="uint8"
    )


def _read_geotiff(path: Path) -> tuple[np.ndarray, Any, Any]:
    """(HWC uint8 RGB array under the raster rule of :mod:`mtp.data.datasets.rasters`, affine transform, CRS);
    ``ValueError`` naming the file on failure."""
    import rasterio

    from mtp.data.datasets.rasters import read_rgb_array

    arr = read_rgb_array(path)
    try:
        with rasterio.open(path) as src:
            transform, crs = src.transform, src.crs
    except rasterio.errors.RasterioError as e:
        raise ValueError(f"{path}: cannot read the GeoTIFF header: {e}") from e
    return arr, transform, crs


def convert_spacenet_v1(
    src_root: str | Path, out_root: str | Path, *, val_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """Convert the release under ``src_root`` into ``out_root`` (see the module docstring).

    ``round(val_fraction * n)`` of the ``n`` convertible images go to ``val``, chosen by
    ``numpy.random.default_rng(seed).permutation`` of the sorted ids. Returns ``{"train": n_train,
    "val": n_val, "empty_masks": n, "skipped_no_geojson": n, "skipped_files": [paths], "out_root": str}``.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    pairs, missing = find_pairs(src_root)
    for p in missing:
        log.warning("skipping %s: no matching Geo_*.geojson", p)
    if not pairs:
        raise ValueError(f"no image under {src_root} has a matching GeoJSON")
    ids = sorted(pairs)
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = round(val_fraction * len(ids))
    val_ids = {ids[i] for i in order[:n_val]}
    out = Path(out_root)
    for split in ("train", "val"):
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "labels").mkdir(parents=True, exist_ok=True)
    stems: dict[str, list[str]] = {"train": [], "val": []}
    empty = 0
    for key in ids:
        image_path, geojson_path = pairs[key]
        rgb, transform, crs = _read_geotiff(image_path)
        mask = rasterize_footprints(geojson_path, rgb.shape[:2], transform, crs)
        empty += int(not mask.any())
        split = "val" if key in val_ids else "train"
        stem = image_path.stem
        PILImage.fromarray(rgb).save(out / split / "images" / f"{stem}.png")
        PILImage.fromarray(mask).save(out / split / "labels" / f"{stem}.png")
        stems[split].append(stem)
    manifest = {"seed": seed, "val_fraction": val_fraction, **stems}
    (out / "split.json").write_text(json.dumps(manifest, indent=1))
    summary = {
        "train": len(stems["train"]),
        "val": len(stems["val"]),
        "empty_masks": empty,
        "skipped_no_geojson": len(missing),
        "skipped_files": [str(p) for p in missing],
        "out_root": str(out),
    }
    log.info("SpaceNet v1 → %s: %d train, %d val, %d skipped", out, summary["train"], summary["val"], len(missing))
    return summary
