"""Writers for the (rotated) detection formats: DOTA v1.0 labelTxt, DIOR / DIOR-R VOC xml, FAIR1M-2.0 xml.

Polygons are written clockwise on screen starting at the 'top-left' corner
(:func:`~mtp.data.synthetic.geometry.clockwise_from_top_left`); they are the corners of the le90 rbox of each
object, so ``minAreaRect`` of a written polygon gives back the object's rbox. Generator objects are mapped onto
each official class list with ``class_maps.to_dota`` / ``to_dior`` / ``to_fair1m``; objects without a
counterpart (e.g. buildings) are not written. The scene index is the running image number.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mtp.data.synthetic.class_maps import to_dior, to_dota, to_fair1m
from mtp.data.synthetic.geometry import clockwise_from_top_left
from mtp.data.synthetic.scenes import Scene, SceneGenerator
from mtp.data.synthetic.writers_common import (
    OBJECT_SCENES,
    DatasetSummary,
    fmt_points,
    prepare,
    save_image,
    save_xml,
    splits,
    sub,
)

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


def dota_lines(scene: Scene, mapping: Callable = to_dota, *, header: bool = False, gsd: float = 0.5) -> list[str]:
    """DOTA txt lines ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult`` (1 decimal), optionally preceded by the
    release header lines ``imagesource:GoogleEarth`` and ``gsd:<gsd>``."""
    lines = ["imagesource:GoogleEarth", f"gsd:{gsd}"] if header else []
    for obj in scene.objects:
        name = mapping(obj)
        if name is not None:
            coords = " ".join(fmt_points(clockwise_from_top_left(obj.polygon)))
            lines.append(f"{coords} {name} {int(obj.difficult)}")
    return lines


def write_dota(
    root: str | Path,
    *,
    seed: int = 0,
    n: int = 8,
    size: int | tuple[int, int] = 256,
    header: bool = True,
    object_scale: float = 1.0,
) -> DatasetSummary:
    """DOTA v1.0 release style: ``root/images/P<NNNN>.png`` and ``root/labelTxt/P<NNNN>.txt`` (NNNN from 0000),
    txt lines as :func:`dota_lines` with the ``imagesource``/``gsd`` header when ``header``; classes from
    ``DOTA_V1_CLASSES`` (small-vehicle, large-vehicle, ship, plane, storage-tank occur). Scenes: the
    object-rich scene classes. ``object_scale`` multiplies every object size (1.0 ~ 0.5 m/px, DOTA-like)."""
    root = Path(root)
    gen = SceneGenerator(seed, size, scene_classes=OBJECT_SCENES, object_scale=object_scale)
    summary = DatasetSummary("dota", root)
    for k in range(n):
        scene = gen.scene(k)
        save_image(summary.add(root / "images" / f"P{k:04d}.png"), scene.image)
        lines = dota_lines(scene, header=header)
        prepare(summary.add(root / "labelTxt" / f"P{k:04d}.txt")).write_text("".join(f"{x}\n" for x in lines))
        summary.num_images += 1
        summary.num_objects += len(lines) - 2 * header
    return summary.finish()


def _voc_header(filename: str, h: int, w: int) -> ET.Element:
    ann = ET.Element("annotation")
    sub(ann, "filename", filename)
    sub(sub(ann, "source"), "database", "DIOR")
    size = sub(ann, "size")
    sub(size, "width", w)
    sub(size, "height", h)
    sub(size, "depth", 3)
    sub(ann, "segmented", 0)
    return ann


def dior_xml(scene: Scene, filename: str, *, oriented: bool, mapping: Callable = to_dior) -> tuple[ET.Element, int]:
    """DIOR VOC xml (``bndbox`` xmin ymin xmax ymax) or DIOR-R xml (``robndbox`` with the eight
    ``ROBNDBOX_FIELDS``), integer pixel coordinates; returns (root element, number of objects)."""
    h, w = scene.semantic.shape
    ann = _voc_header(filename, h, w)
    count = 0
    for obj in scene.objects:
        name = mapping(obj)
        if name is None:
            continue
        el = sub(ann, "object")
        sub(el, "name", name)
        sub(el, "pose", "Unspecified")
        sub(el, "truncated", 0)
        sub(el, "difficult", int(obj.difficult))
        if oriented:
            box = sub(el, "robndbox")
            pts = np.rint(clockwise_from_top_left(obj.polygon)).astype(int).reshape(-1)
            for tag, v in zip(ROBNDBOX_FIELDS, pts, strict=True):
                sub(box, tag, int(v))
        else:
            box = sub(el, "bndbox")
            x1, y1, x2, y2 = np.rint(obj.hbox).astype(int)
            clipped = (max(x1, 0), max(y1, 0), min(x2, w), min(y2, h))
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), clipped, strict=True):
                sub(box, tag, int(v))
        count += 1
    return ann, count


def write_dior(
    root: str | Path,
    *,
    seed: int = 0,
    n_train: int = 4,
    n_val: int = 2,
    n_test: int = 2,
    size: int | tuple[int, int] = 256,
    object_scale: float = 1.0,
) -> DatasetSummary:
    """DIOR + DIOR-R release layout (ids ``00001``.. in train, val, test order; official images are 800 x 800):
    ``root/JPEGImages-trainval/<id>.jpg`` (train + val), ``root/JPEGImages-test/<id>.jpg``,
    ``root/Annotations/Horizontal Bounding Boxes/<id>.xml`` (VOC ``bndbox``),
    ``root/Annotations/Oriented Bounding Boxes/<id>.xml`` (DIOR-R ``robndbox``) and
    ``root/ImageSets/Main/{train,val,test,trainval}.txt`` (one id per line). Classes: ``DIOR_CLASSES``."""
    root = Path(root)
    gen = SceneGenerator(seed, size, scene_classes=OBJECT_SCENES, object_scale=object_scale)
    summary = DatasetSummary("dior", root)
    ids: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for split, _, k in splits({"train": n_train, "val": n_val, "test": n_test}):
        scene, image_id = gen.scene(k), f"{k + 1:05d}"
        ids[split].append(image_id)
        folder = "JPEGImages-test" if split == "test" else "JPEGImages-trainval"
        save_image(summary.add(root / folder / f"{image_id}.jpg"), scene.image)
        for oriented, sub_dir in ((False, "Horizontal Bounding Boxes"), (True, "Oriented Bounding Boxes")):
            ann, count = dior_xml(scene, f"{image_id}.jpg", oriented=oriented)
            save_xml(summary.add(root / "Annotations" / sub_dir / f"{image_id}.xml"), ann)
        summary.num_images += 1
        summary.num_objects += count
    ids["trainval"] = ids["train"] + ids["val"]
    for split, names in ids.items():
        path = summary.add(root / "ImageSets" / "Main" / f"{split}.txt")
        prepare(path).write_text("".join(f"{x}\n" for x in names))
    return summary.finish()


def fair1m_xml(scene: Scene, filename: str) -> tuple[ET.Element, int]:
    """FAIR1M-2.0 release annotation xml: ``source`` (filename, origin), ``research``, ``size``, and
    ``objects/object`` with ``coordinate``=pixel, ``type``=rectangle, ``description``=None,
    ``possibleresult/name`` and ``points`` = five ``point`` "x,y" (6 decimals, first corner repeated)."""
    h, w = scene.semantic.shape
    ann = ET.Element("annotation")
    source = sub(ann, "source")
    sub(source, "filename", filename)
    sub(source, "origin", "GF2/GF3")
    research = sub(ann, "research")
    for tag, text in (("version", "2.0"), ("provider", "mtp.synthetic"), ("author", "mtp"), ("pluginname", "FAIR1M"),
                      ("pluginclass", "object detection"), ("time", "2024-01")):  # fmt: skip
        sub(research, tag, text)
    size = sub(ann, "size")
    sub(size, "width", w)
    sub(size, "height", h)
    sub(size, "depth", 3)
    objects = sub(ann, "objects")
    count = 0
    for obj in scene.objects:
        name = to_fair1m(obj)
        if name is None:
            continue
        el = sub(objects, "object")
        sub(el, "coordinate", "pixel")
        sub(el, "type", "rectangle")
        sub(el, "description", "None")
        sub(sub(el, "possibleresult"), "name", name)
        points = sub(el, "points")
        pts = clockwise_from_top_left(obj.polygon)
        for x, y in np.concatenate([pts, pts[:1]]):
            sub(points, "point", f"{x:.6f},{y:.6f}")
        count += 1
    return ann, count


def write_fair1m(
    root: str | Path, *, seed: int = 0, n_train: int = 4, n_val: int = 2, size: int | tuple[int, int] = 256
) -> DatasetSummary:
    """FAIR1M-2.0 release layout: ``root/{train,validation}/images/<k>.tif`` (RGB TIFF) and
    ``root/{train,validation}/labelXml/<k>.xml`` (:func:`fair1m_xml`), k = running number from 0. Class names in
    the release spelling (``FAIR1M_CLASSES``: "Small Car", "Cargo Truck", "Motorboat", "Dry Cargo Ship",
    "Boeing737", "Boeing747"); FAIR1M has no building or storage-tank class. Scenes: airport, highway,
    industrial, water."""
    root = Path(root)
    gen = SceneGenerator(seed, size, scene_classes=("airport", "highway", "industrial", "water"))
    summary = DatasetSummary("fair1m", root)
    for split, _, k in splits({"train": n_train, "validation": n_val}):
        scene = gen.scene(k)
        save_image(summary.add(root / split / "images" / f"{k}.tif"), scene.image)
        ann, count = fair1m_xml(scene, f"{k}.tif")
        save_xml(summary.add(root / split / "labelXml" / f"{k}.xml"), ann)
        summary.num_images += 1
        summary.num_objects += count
    return summary.finish()
