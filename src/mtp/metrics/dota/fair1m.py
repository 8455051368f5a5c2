"""FAIR1M-2.0 submission xml (docs/EVALUATION.md#fair1m-submissions), one file per test image.

Layout (MTP's ``dota_submit_txt_to_fair1m_xml.py`` output): root ``annotation`` with ``source/filename``
(``<id>.tif``) and ``source/origin`` (GF2/GF3); a ``research`` block (version 2.0, provider, author, pluginname
FAIR1M, pluginclass "object detection", time); ``size/{width,height,depth}``; ``objects/object`` repeated, each
with ``coordinate`` = pixel, ``type`` = rectangle, ``description`` = None, ``possibleresult/{name,probability}``
and ``points`` = 5 ``point`` entries "x,y" (6 decimals), the first corner repeated at the end.

Class names: MTP uses hyphenated names (``Small-Car``); the release/server names use spaces (``Small Car``)
except ``other-airplane``, ``other-ship`` and ``other-vehicle``, which keep their hyphen. MTP's converter
replaces every "-" with a space and so writes "other airplane" etc. (a likely bug);
:func:`fair1m_official_name` keeps those three hyphenated.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtp.ops.rotated.boxes import rbox2poly

__all__ = ["FAIR1M_HYPHENATED", "fair1m_official_name", "write_fair1m_xml"]

#: The official FAIR1M names that keep their hyphen.
FAIR1M_HYPHENATED = frozenset({"other-airplane", "other-ship", "other-vehicle"})


def fair1m_official_name(name: str) -> str:
    """MTP (hyphenated) class name -> official FAIR1M name: "Small-Car" -> "Small Car", other-* unchanged."""
    return name if name in FAIR1M_HYPHENATED else name.replace("-", " ")


def _sub(parent: ET.Element, tag: str, text: Any = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def write_fair1m_xml(
    out_dir: str | Path,
    merged: Mapping[str, Mapping[str, Any]],
    class_names: Sequence[str],
    image_sizes: Mapping[str, tuple[int, int]],
    suffix: str = ".tif",
    *,
    origin: str = "GF2/GF3",
    provider: str = "",
    author: str = "",
    time: str | None = None,
    score_decimals: int = 6,
) -> list[Path]:
    """Write ``out_dir/<image_id>.xml`` for every image of ``merged`` and of ``image_sizes``.

    Args:
        merged: image id -> ``{"rboxes": (D, 5), "scores": (D,), "labels": (D,)}`` in original-image pixels
            (e.g. :func:`mtp.metrics.dota.submission.merge_patch_detections`).
        class_names: MTP class names (hyphenated); converted with :func:`fair1m_official_name`.
        image_sizes: image id -> (height, width); every image needs one. Images listed here without
            detections get an xml with an empty ``objects`` block.
        suffix: image file suffix for ``source/filename``.
        time: the ``research/time`` text (default: today, ISO date).

    Returns:
        The written paths (sorted by image id).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time if time is not None else datetime.date.today().isoformat()
    paths = []
    for image_id in sorted(set(merged) | set(image_sizes)):
        if image_id not in image_sizes:
            raise ValueError(f"no image size (height, width) given for {image_id!r}")
        height, width = image_sizes[image_id]
        root = ET.Element("annotation")
        source = _sub(root, "source")
        _sub(source, "filename", f"{image_id}{suffix}")
        _sub(source, "origin", origin)
        research = _sub(root, "research")
        for tag, text in (
            ("version", "2.0"),
            ("provider", provider),
            ("author", author),
            ("pluginname", "FAIR1M"),
            ("pluginclass", "object detection"),
            ("time", stamp),
        ):
            _sub(research, tag, text)
        size = _sub(root, "size")
        _sub(size, "width", int(width))
        _sub(size, "height", int(height))
        _sub(size, "depth", 3)
        objects = _sub(root, "objects")
        det = merged.get(image_id)
        if det is not None and len(det["scores"]):
            boxes = torch.as_tensor(det["rboxes"]).detach().cpu().reshape(-1, 5).double()
            corners = rbox2poly(boxes).numpy().reshape(-1, 4, 2)
            scores = np.asarray(torch.as_tensor(det["scores"]).detach().cpu()).reshape(-1)
            labels = np.asarray(torch.as_tensor(det["labels"]).detach().cpu()).reshape(-1).astype(np.int64)
            for pts, score, label in zip(corners, scores, labels, strict=True):
                obj = _sub(objects, "object")
                _sub(obj, "coordinate", "pixel")
                _sub(obj, "type", "rectangle")
                _sub(obj, "description", "None")
                result = _sub(obj, "possibleresult")
                _sub(result, "name", fair1m_official_name(class_names[int(label)]))
                _sub(result, "probability", f"{float(score):.{score_decimals}f}")
                points = _sub(obj, "points")
                for x, y in (*pts, pts[0]):
                    _sub(points, "point", f"{x:.6f},{y:.6f}")
        ET.indent(root)
        path = out / f"{image_id}.xml"
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
        paths.append(path)
    return paths
