"""Parsers of the oriented-object annotation formats (DOTA labelTxt, DIOR-R VOC xml, FAIR1M-2.0 xml) and the
folder-layout helpers shared by the readers of :mod:`mtp.data.datasets.rotated`.

Every parser returns an :class:`Annotations` (polygons (N, 8) float32 in pixels, x1 y1 … x4 y4, the class
names as written, the difficult flags, and the labels when a ``class_map`` name → label is given; unknown
names are then errors). Bad input raises :class:`AnnotationError` (a ``ValueError``) whose
message starts with ``<file>:<line>:`` for txt files and ``<file>: object <k>:`` (0-based object index) for
xml files. Degenerate polygons (two consecutive equal vertices, as MTP's DIOR-R / FAIR1M loaders check, or a
zero area) are not errors: they are dropped and reported in ``Annotations.skipped`` (the line numbers / object
indices), so the caller can count and log them. Self-crossing quadrilaterals (a "bow tie": the four corners of a
box written in the wrong order) are reordered around their centre (clockwise on screen, from the first point)
and reported in ``Annotations.reordered``: their rotated box (the minimum-area rectangle of the four points) is
unchanged, and the polygon used for evaluation and plotting becomes a valid one.

DOTA txt rules (docs/CONVENTIONS.md#dota-labeltxt): fields ``x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]``,
separated by white space; a line without the difficult field has difficult 0; difficult may be 0, 1 or 2
(2 = truncated by the splitter). Release header lines (``imagesource:GoogleEarth``, ``gsd:0.146``: a single
``key:value`` token) and blank lines are skipped. Unlike the devkit, which silently skips *any* line with
fewer than 9 tokens, a line with a wrong number of coordinates is an error here.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtp.data.datasets.files import content_hint, folder_hint
from mtp.data.datasets.polygons import accept_polygon, is_degenerate, is_self_crossing, outside_image, untangle

__all__ = [
    "IMAGE_SUFFIXES",
    "AnnotationError",
    "Annotations",
    "find_image",
    "is_degenerate",
    "is_self_crossing",
    "list_files",
    "outside_image",
    "pair_by_annotation",
    "parse_dior_xml",
    "parse_dota_line",
    "parse_dota_txt",
    "parse_fair1m_xml",
    "require_dir",
    "txt_layout_items",
    "untangle",
]

log = logging.getLogger(__name__)

ROBNDBOX_FIELDS = (
    "x_left_top",
    "y_left_top",
    "x_right_top",
    "y_right_top",
    "x_right_bottom",
    "y_right_bottom",
    "x_left_bottom",
    "y_left_bottom",
)


class AnnotationError(ValueError):
    """Malformed annotation; the message names the file and the line (txt) or object index (xml)."""


@dataclass
class Annotations:
    """Objects of one annotation file. ``polys`` (N, 8) float32, ``names`` N class names as written,
    ``difficult`` (N,) int64 as written (0/1/2), ``labels`` (N,) int64 (-1 when no ``class_map`` was given);
    ``skipped``: line numbers (txt, 1-based) or object indices (xml, 0-based) of the dropped degenerate
    polygons; ``reordered``: those of the self-crossing polygons that were reordered (kept)."""

    polys: np.ndarray = field(default_factory=lambda: np.zeros((0, 8), np.float32))
    names: list[str] = field(default_factory=list)
    difficult: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    skipped: list[int] = field(default_factory=list)
    reordered: list[int] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        polys: list,
        names: list[str],
        difficult: list[int],
        labels: list[int],
        skipped: list[int],
        reordered: list[int] | None = None,
    ) -> Annotations:
        return cls(
            np.asarray(polys, np.float32).reshape(-1, 8),
            names,
            np.asarray(difficult, np.int64).reshape(-1),
            np.asarray(labels, np.int64).reshape(-1),
            skipped,
            list(reordered or []),
        )


def _label(name: str, class_map: Mapping[str, int] | None, where: str) -> int:
    if class_map is None:
        return -1
    if name not in class_map:
        known = sorted({n for n in class_map if " " not in n})
        shown = ", ".join(known[:40]) + (" ..." if len(known) > 40 else "")
        raise AnnotationError(f"{where}: unknown class name {name!r}; known: {shown}")
    return class_map[name]


def _float(token: str) -> float | None:
    try:
        v = float(token)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _is_header(tokens: list[str]) -> bool:
    return len(tokens) <= 2 and ":" in tokens[0] and _float(tokens[0].split(":", 1)[0]) is None


def parse_dota_line(line: str, where: str) -> tuple[list[float], str, int] | None:
    """One DOTA line → (8 coordinates, class name, difficult), or None for blank / header lines.

    ``where`` (``"<file>:<line>"``) prefixes the :class:`AnnotationError` messages.
    """
    tokens = line.split()
    if not tokens or _is_header(tokens):
        return None
    values = [_float(t) for t in tokens]
    first_text = next((i for i, v in enumerate(values) if v is None), None)
    shown = line.strip()
    if first_text is None:
        raise AnnotationError(f"{where}: no class name in {shown!r} (expected 'x1 y1 ... x4 y4 class [difficult]')")
    if first_text < 8 and len(tokens) in (9, 10) and values[8] is None:
        bad = [t for t, v in zip(tokens[:8], values[:8], strict=True) if v is None]
        raise AnnotationError(f"{where}: non-numeric or non-finite coordinate(s) {bad} in {shown!r}")
    if first_text != 8:
        raise AnnotationError(f"{where}: expected 8 coordinates before the class name, found {first_text} in {shown!r}")
    rest = tokens[9:]
    if len(rest) > 1:
        raise AnnotationError(f"{where}: unexpected extra fields {rest[1:]} in {shown!r}")
    difficult = 0
    if rest:
        try:
            difficult = int(rest[0])
        except ValueError:
            raise AnnotationError(f"{where}: difficult must be an integer, got {rest[0]!r} in {shown!r}") from None
    return [float(v) for v in values[:8]], tokens[8], difficult


def parse_dota_txt(path: Path, class_map: Mapping[str, int] | None = None) -> Annotations:
    """A DOTA labelTxt / annfiles txt file (see the module docstring); ``class_map`` (name → label) makes
    unknown names an error naming the line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(f"cannot read annotation file {path}: {e}") from e
    polys, names, difficult, labels, skipped, reordered = [], [], [], [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        parsed = parse_dota_line(line, f"{path}:{number}")
        if parsed is None:
            continue
        coords, name, diff = parsed
        label = _label(name, class_map, f"{path}:{number}")
        kept = accept_polygon(coords, number, skipped, reordered)
        if kept is None:
            continue
        polys.append(kept)
        names.append(name)
        difficult.append(diff)
        labels.append(label)
    return Annotations.build(polys, names, difficult, labels, skipped, reordered)


def _xml_root(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        raise AnnotationError(f"{path}: malformed xml: {e}") from e
    except OSError as e:
        raise AnnotationError(f"cannot read annotation file {path}: {e}") from e


def _text(el: ET.Element | None) -> str | None:
    return None if el is None or el.text is None else el.text.strip()


def voc_objects(
    root: ET.Element, path: Path, box_tag: str, fields: Sequence[str], class_map: Mapping[str, int] | None, hint: str
) -> Iterator[tuple[int, str, str, int, list[float]]]:
    """Every VOC-style ``object`` of ``root`` (DIOR / DIOR-R xml) as ``(index, where, name, label, coords)``:
    ``name`` stripped and lower-cased, ``coords`` the float values of ``box_tag``'s ``fields`` in order. Errors name
    the file and object index: missing name / box (``hint`` says which file kind was expected) / field, non-numeric
    value, unknown class (when ``class_map`` is given)."""
    for k, obj in enumerate(root.iter("object")):
        where = f"{path}: object {k}"
        name = (_text(obj.find("name")) or "").lower()
        if not name:
            raise AnnotationError(f"{where}: missing <name>")
        label = _label(name, class_map, where)
        box = obj.find(box_tag)
        if box is None:
            raise AnnotationError(f"{where}: missing <{box_tag}> ({hint})")
        coords = []
        for tag in fields:
            raw = _text(box.find(tag))
            if raw is None:
                raise AnnotationError(
                    f"{where}: <{box_tag}> has no <{tag}>" + (" (expected 8 coordinates)" if len(fields) == 8 else "")
                )
            v = _float(raw)
            if v is None:
                raise AnnotationError(f"{where}: non-numeric <{tag}> {raw!r}")
            coords.append(v)
        yield k, where, name, label, coords


def parse_dior_xml(path: Path, class_map: Mapping[str, int] | None = None) -> Annotations:
    """DIOR-R xml: ``object/name`` (lower-cased) and ``object/robndbox`` with the eight fields x_left_top …
    y_left_bottom (docs/CONVENTIONS.md#dior-r-xml). The xml ``difficult`` tag is ignored (all 0)."""
    root = _xml_root(path)
    polys, names, labels, skipped, reordered = [], [], [], [], []
    hint = "is this an Oriented Bounding Boxes file?"
    for k, _, name, label, coords in voc_objects(root, path, "robndbox", ROBNDBOX_FIELDS, class_map, hint):
        kept = accept_polygon(coords, k, skipped, reordered)
        if kept is None:
            continue
        polys.append(kept)
        names.append(name)
        labels.append(label)
    return Annotations.build(polys, names, [0] * len(names), labels, skipped, reordered)


def parse_fair1m_xml(path: Path, class_map: Mapping[str, int] | None = None) -> Annotations:
    """FAIR1M-2.0 release xml: ``objects/object`` with ``possibleresult/name`` and ``points/point`` "x,y";
    4 points, or 5 with the last equal to the first (the release closes the ring). Names as written."""
    root = _xml_root(path)
    polys, names, labels, skipped, reordered = [], [], [], [], []
    for k, obj in enumerate(root.iter("object")):
        where = f"{path}: object {k}"
        name = _text(obj.find("possibleresult/name"))
        if not name:
            raise AnnotationError(f"{where}: missing <possibleresult><name>")
        label = _label(name, class_map, where)
        if obj.find("points") is None:
            raise AnnotationError(f"{where}: missing <points> (expected <points><point>x,y</point> x 4 or 5)")
        points = obj.findall("points/point")
        xy = []
        for raw in (_text(p) or "" for p in points):
            parts = raw.split(",")
            vals = [_float(t) for t in parts]
            if len(parts) != 2 or None in vals:
                raise AnnotationError(f"{where}: bad <point> {raw!r} (expected 'x,y' numbers)")
            xy.append(vals)
        if len(xy) == 5 and xy[4] == xy[0]:
            xy = xy[:4]
        if len(xy) != 4:
            raise AnnotationError(
                f"{where}: expected 4 points (or 5 with the first repeated), got {len(points)} "
                f"i.e. {2 * len(points)} coordinates"
            )
        coords = [v for p in xy for v in p]
        kept = accept_polygon(coords, k, skipped, reordered)
        if kept is None:
            continue
        polys.append(kept)
        names.append(name)
        labels.append(label)
    return Annotations.build(polys, names, [0] * len(names), labels, skipped, reordered)


# ------------------------------------------------------------------ folder layouts

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def find_image(images_dir: Path, stem: str, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> Path:
    """``images_dir/<stem><suffix>`` for the first suffix that exists; ``FileNotFoundError`` naming the path."""
    for suffix in suffixes:
        path = images_dir / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"image for '{stem}' not found: {images_dir / stem}{{{','.join(suffixes)}}}")


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a folder, else ``FileNotFoundError`` naming it (and what its parent holds)."""
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {path}{folder_hint(path)}")
    return path


def list_files(folder: Path, suffixes: Sequence[str], what: str) -> list[Path]:
    """Sorted files of ``folder`` with one of ``suffixes``; errors for a missing or empty folder."""
    files = sorted(p for p in require_dir(folder, what).iterdir() if p.suffix.lower() in suffixes and p.is_file())
    if not files:
        raise ValueError(f"no {what} files ({', '.join(suffixes)}) in {folder}{content_hint(folder)}")
    return files


def pair_by_annotation(
    images_dir: Path, ann_files: Sequence[Path], suffixes: Sequence[str]
) -> list[tuple[Path, Path | None]]:
    """Every annotation file needs its image (one error naming all the missing paths); images without one are
    logged."""
    require_dir(images_dir, "image")
    pairs, missing = [], []
    for a in ann_files:
        try:
            pairs.append((find_image(images_dir, a.stem, suffixes), a))
        except FileNotFoundError as e:
            missing.append(f"{e} (for {a.name})")
    if missing:
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        listing = "\n  ".join(missing[:10])
        raise FileNotFoundError(f"{len(missing)} annotation file(s) without their image:\n  {listing}{more}")
    n_images = sum(1 for p in images_dir.iterdir() if p.suffix.lower() in suffixes)
    if n_images > len(pairs):
        log.warning("%d image(s) in %s have no annotation file and are not used", n_images - len(pairs), images_dir)
    return pairs


def txt_layout_items(
    base: Path, images_dir: str, ann_dir: str | None, annotations: bool | None, is_test: bool
) -> list[tuple[Path, Path | None]]:
    """(image, txt) pairs of a DOTA-txt folder ``base/{images_dir, annfiles|labelTxt}``; images only when
    ``annotations`` is False, or when no annotation folder exists and ``is_test``."""
    candidates = [ann_dir] if ann_dir is not None else ["annfiles", "labelTxt"]
    found = next((base / c for c in candidates if (base / c).is_dir()), None)
    if annotations is False or (found is None and annotations is None and is_test):
        return [(p, None) for p in list_files(base / images_dir, IMAGE_SUFFIXES, "image")]
    if found is None:
        raise FileNotFoundError(f"annotation folder not found: {base}/{{{','.join(candidates)}}}")
    return pair_by_annotation(base / images_dir, list_files(found, (".txt",), "annotation"), IMAGE_SUFFIXES)
