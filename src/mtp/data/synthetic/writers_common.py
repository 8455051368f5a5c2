"""Shared helpers of the dataset writers: summary, image/xml/json output, split bookkeeping."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

# Object-rich scene classes, used by the detection / instance writers.
OBJECT_SCENES: tuple[str, ...] = ("airport", "highway", "industrial", "residential", "water")


@dataclass
class DatasetSummary:
    """What a writer produced: ``files`` maps a folder (relative to ``root``, posix) to the sorted file names
    written into it; ``num_images`` images and ``num_objects`` annotated objects (0 for non-object formats)."""

    format: str
    root: Path
    files: dict[str, list[str]] = field(default_factory=dict)
    num_images: int = 0
    num_objects: int = 0

    def add(self, path: Path) -> Path:
        folder = path.parent.relative_to(self.root).as_posix()
        self.files.setdefault(folder, []).append(path.name)
        return path

    def counts(self) -> dict[str, int]:
        """Number of files per folder."""
        return {k: len(v) for k, v in sorted(self.files.items())}

    def __str__(self) -> str:
        lines = [f"{self.format}: {self.num_images} images, {self.num_objects} objects under {self.root}"]
        lines += [f"  {folder}/: {n} files" for folder, n in self.counts().items()]
        return "\n".join(lines)

    def finish(self) -> DatasetSummary:
        for names in self.files.values():
            names.sort()
        return self


def prepare(path: Path) -> Path:
    """Create the parent folder of ``path`` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_image(path: Path, image: np.ndarray, quality: int = 95) -> None:
    """Write an (H, W, 3) RGB or (H, W) gray uint8 image; format from the suffix (png, jpg, tif via cv2)."""
    prepare(path)
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), out, params):
        raise OSError(f"could not write {path}")


def save_json(path: Path, obj) -> None:
    prepare(path).write_text(json.dumps(obj, indent=1))


def sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
    """Append a child element (with text) and return it."""
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = str(text)
    return child


def save_xml(path: Path, root: ET.Element) -> None:
    tree = ET.ElementTree(root)
    ET.indent(tree, space="\t")
    tree.write(prepare(path), encoding="utf-8", xml_declaration=False)


def splits(counts: Mapping[str, int]) -> Iterator[tuple[str, int, int]]:
    """(split, k within split, running index over all splits) for e.g. {'train': 4, 'val': 2}."""
    running = 0
    for name, n in counts.items():
        for k in range(n):
            yield name, k, running
            running += 1


def fmt_points(points: np.ndarray, fmt: str = "{:.1f}") -> list[str]:
    """Flatten (N, 2) points into formatted strings x1 y1 x2 y2 ..."""
    return [fmt.format(v) for v in np.asarray(points, float).reshape(-1)]
