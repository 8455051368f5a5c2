"""Convert SAMRS instance pickles to the COCO jsons the MTP pretraining reads (official ``scripts/convert_pkl_json.py``,
docs/RECIPES.md#official-scripts; re-implemented from its described behaviour).

Inputs: the split lists ``<lists>/{train,valid}.txt`` (one image stem per line), the images
``<images>/<stem><suffix>`` (``.png``; SIOR ``.jpg``) and one pickle per image ``<pickles>/<stem>.pkl``
(``rhbox_segs_init/ins/``): a list with one dict per instance, ``label`` (0-based class index) and ``mask``
(a COCO RLE dict: ``size`` [H, W] and ``counts`` bytes / str, or an uncompressed ``counts`` list).

Output per split, ``<out>/<prefix>_<split>_ins_segmentation.json`` (prefix as :class:`~mtp.data.datasets.samrs.
SAMRSDataset` expects: ``sota_rbb``, ``sior``, ``fast``; the official script names every set ``<dataset>_rbb``):

* ``images``: {``file_name`` (image basename), ``height``, ``width`` (read from the image), ``segm_file`` (pickle
  basename), ``id`` (running from 0, split-list order)};
* ``annotations``: {``id`` (running from 0 over the split), ``image_id``, ``category_id`` = ``label``, ``bbox`` =
  the RLE's bounding box [x, y, w, h], ``area`` = the RLE's pixel count, ``iscrowd`` 0, ``segmentation`` = the RLE
  with ``counts`` as str}, in pickle order; the key is left out when a split has no annotation (as the official);
* ``categories``: [{``id`` i, ``name``}] for the 18 / 20 / 37 classes of the set.

Pickles are read with a restricted unpickler that builds only plain data (lists, dicts, str, bytes, numbers;
numpy numeric scalars become Python numbers) and refuses every other global, so no code from a pickle runs.
Unlike the official script, bad input is an error naming the file (unreadable pickle, wrong structure, label
out of range, RLE size different from the image, missing image / pickle / split list).
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtp.data.datasets.files import image_size
from mtp.data.datasets.rotated_formats import find_image, require_dir
from mtp.data.datasets.samrs_formats import SAMRS_LAYOUTS

__all__ = ["load_instance_pickle", "samrs_split_to_coco", "samrs_to_coco"]

IMAGE_SUFFIXES = {"sota": (".png",), "sior": (".jpg", ".png"), "fast": (".png",)}
_SCALAR_GLOBALS = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


def _numeric_scalar(dtype: np.dtype, data: bytes) -> int | float | bool:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or not isinstance(data, bytes):
        raise pickle.UnpicklingError(f"refusing numpy scalar of dtype {dtype!r}")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


class _DataOnlyUnpickler(pickle.Unpickler):
    """Builds lists / dicts / tuples / str / bytes / numbers only; numpy numeric scalars are allowed (as Python
    numbers); any other global (class or function) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SCALAR_GLOBALS:
            return _numeric_scalar
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to load the global {module}.{name} (pickles must hold plain data)")


def load_instance_pickle(path: str | Path, num_classes: int, hw: tuple[int, int] | None = None) -> list[dict]:
    """One SAMRS instance pickle → validated list of {label: int, mask: RLE dict}; ``ValueError`` naming the file."""
    path = Path(path)
    try:
        data = _DataOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except OSError as e:
        raise ValueError(f"cannot read instance pickle {path}: {e}") from e
    except Exception as e:  # any unpickling failure is reported with the file name
        raise ValueError(f"cannot unpickle {path}: {type(e).__name__}: {e}") from e
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{path}: expected a list of instance dicts, got {type(data).__name__}")
    for k, inst in enumerate(data):
        where = f"{path}: instance {k}"
        if not isinstance(inst, dict) or "label" not in inst or "mask" not in inst:
            raise ValueError(f"{where}: expected a dict with 'label' and 'mask', got {inst!r:.80}")
        label, mask = inst["label"], inst["mask"]
        if isinstance(label, bool) or not isinstance(label, (int, float)) or label != int(label):
            raise ValueError(f"{where}: label must be an integer, got {label!r}")
        if not 0 <= int(label) < num_classes:
            raise ValueError(f"{where}: label {int(label)} out of range 0..{num_classes - 1}")
        size = mask.get("size") if isinstance(mask, dict) else None
        if not (
            isinstance(size, (list, tuple)) and len(size) == 2 and isinstance(mask.get("counts"), (bytes, str, list))
        ):
            raise ValueError(f"{where}: 'mask' must be a COCO RLE dict with 'size' [H, W] and 'counts'")
        if hw is not None and (int(size[0]), int(size[1])) != tuple(hw):
            raise ValueError(f"{where}: mask size {list(size)} differs from the image size {list(hw)}")
    return list(data)


def _rle_stats(mask: dict) -> tuple[dict, list[float], float]:
    """(json-ready RLE, bbox [x, y, w, h], area) of one RLE dict."""
    from pycocotools import mask as mask_utils

    h, w = (int(v) for v in mask["size"])
    counts = mask["counts"]
    if isinstance(counts, list):
        coded = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        out = {"size": [h, w], "counts": list(counts)}
    else:
        raw = counts.encode("ascii") if isinstance(counts, str) else counts
        coded = {"size": [h, w], "counts": raw}
        out = {"size": [h, w], "counts": raw.decode("ascii")}
    bbox = [float(v) for v in mask_utils.toBbox(coded)]
    return out, bbox, float(mask_utils.area(coded))


def _split_stems(lists_dir: Path, split: str) -> list[str]:
    path = lists_dir / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def samrs_split_to_coco(
    lists_dir: str | Path, images_dir: str | Path, pickles_dir: str | Path, variant: str, split: str
) -> dict[str, Any]:
    """The COCO dict of one split (module docstring)."""
    if variant not in SAMRS_LAYOUTS:
        raise ValueError(f"dataset must be one of {sorted(SAMRS_LAYOUTS)}, got {variant!r}")
    classes = SAMRS_LAYOUTS[variant].classes
    images_dir = require_dir(Path(images_dir), "image")
    pickles_dir = require_dir(Path(pickles_dir), "instance pickle")
    images, annotations = [], []
    for image_id, stem in enumerate(_split_stems(Path(lists_dir), split)):
        path = find_image(images_dir, stem, IMAGE_SUFFIXES[variant])
        pkl = pickles_dir / f"{stem}.pkl"
        if not pkl.is_file():
            raise FileNotFoundError(f"instance pickle not found: {pkl}")
        h, w = image_size(path)
        images.append({"file_name": path.name, "height": h, "width": w, "segm_file": pkl.name, "id": image_id})
        for inst in load_instance_pickle(pkl, len(classes), (h, w)):
            rle, bbox, area = _rle_stats(inst["mask"])
            annotations.append({"id": len(annotations), "image_id": image_id, "category_id": int(inst["label"]),
                                "bbox": bbox, "area": area, "iscrowd": 0, "segmentation": rle})  # fmt: skip
    data: dict[str, Any] = {"images": images, "annotations": annotations,
                            "categories": [{"id": i, "name": n} for i, n in enumerate(classes)]}  # fmt: skip
    if not annotations:
        del data["annotations"]
    return data


def samrs_to_coco(
    lists_dir: str | Path,
    images_dir: str | Path,
    pickles_dir: str | Path,
    out_dir: str | Path,
    variant: str,
    splits: Sequence[str] = ("train", "valid"),
    prefix: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Write ``<out_dir>/<prefix>_<split>_ins_segmentation.json`` for every split; returns {split: {file, images,
    annotations}}. ``prefix`` defaults to the name :class:`~mtp.data.datasets.samrs.SAMRSDataset` reads."""
    if variant not in SAMRS_LAYOUTS:
        raise ValueError(f"dataset must be one of {sorted(SAMRS_LAYOUTS)}, got {variant!r}")
    prefix = prefix or SAMRS_LAYOUTS[variant].json_prefix
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for split in splits:
        data = samrs_split_to_coco(lists_dir, images_dir, pickles_dir, variant, split)
        path = out / f"{prefix}_{split}_ins_segmentation.json"
        path.write_text(json.dumps(data))
        summary[split] = {
            "file": str(path),
            "images": len(data["images"]),
            "annotations": len(data.get("annotations", [])),
        }
    return summary
