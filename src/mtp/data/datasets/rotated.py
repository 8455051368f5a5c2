"""Oriented-object detection readers: DOTA (v1.0 / v1.5 / v2.0), DIOR-R and FAIR1M-2.0.

Sample dict returned by ``dataset[i]`` (before ``transform``):

* ``"image"``: ``tv_tensors.Image`` uint8 (3, H, W) RGB (raster rule ``raster``, :mod:`mtp.data.datasets.rasters`);
* ``"boxes"``: ``tv_tensors.BoundingBoxes`` float32 (N, 8), format ``XYXYXYXY``, ``canvas_size=(H, W)``,
  ``clamping_mode=None`` (polygons are never clipped): the annotated quadrilaterals x1 y1 … x4 y4 in pixels
  as written in the file (no minAreaRect here; :class:`mtp.data.transforms.rotated.ToRBoxes` converts);
* ``"labels"``: int64 (N,), 0-based index in ``classes`` (the official order, docs/CONVENTIONS.md#class-orders);
* ``"difficult"``: bool (N,) (DOTA difficult 1, and 2 = truncated by the splitter; always False for DIOR-R
  and FAIR1M). Like mmrotate (``diff_thr`` 100), difficult objects are ordinary ground truth;
* ``"image_path"``: str; ``"image_id"``: str, the file stem (split patches: ``P0000__1024__0___824``);
* ``"ori_hw"``: (H, W) of the image on disk.

All annotation files are parsed when the dataset is built (like mmrotate's ``load_data_list``), so bad
files fail early with :class:`~mtp.data.datasets.rotated_formats.AnnotationError` naming the file and the
line (txt) or object index (xml) — or, when several files are bad, one
:class:`~mtp.data.datasets.files.DatasetProblemsError` listing all of them; missing images, folders or split
lists raise ``FileNotFoundError`` naming the path(s). Objects that are not training targets are dropped,
counted in ``num_skipped`` and logged with their files: ``"degenerate"`` polygons (two consecutive equal
vertices, MTP's rule; or zero area) and ``"outside"`` objects, whose bounding box has no area inside the image
(the rule of every reader; the image size comes from its header). Self-crossing quadrilaterals are reordered
(``num_reordered``, logged; :mod:`~mtp.data.datasets.rotated_formats`). Polygons that only reach past the border
are kept unclipped. ``filter_empty=True`` (training, mmrotate's ``filter_empty_gt``) hides images without
objects; the number hidden is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtp.data.datasets.files import folder_hint
from mtp.data.datasets.rasters import RasterRule
from mtp.data.datasets.rotated_base import (
    DIOR_R_CLASSES,
    DOTA_CLASSES,
    DOTA_V10_CLASSES,
    DOTA_V15_CLASSES,
    DOTA_V20_CLASSES,
    FAIR1M_CLASSES,
    RotatedDetectionDataset,
    fair1m_release_name,
)
from mtp.data.datasets.rotated_formats import (
    IMAGE_SUFFIXES,
    find_image,
    list_files,
    pair_by_annotation,
    parse_dior_xml,
    parse_dota_txt,
    parse_fair1m_xml,
    require_dir,
    txt_layout_items,
)

__all__ = [
    "DIORR",
    "DIOR_R_CLASSES",
    "DOTA",
    "DOTA_CLASSES",
    "DOTA_V10_CLASSES",
    "DOTA_V15_CLASSES",
    "DOTA_V20_CLASSES",
    "FAIR1M",
    "FAIR1M_CLASSES",
    "RotatedDetectionDataset",
    "fair1m_release_name",
]

log = logging.getLogger(__name__)


class DOTA(RotatedDetectionDataset):
    """DOTA labelTxt layouts; ``version`` '1.0' (15 classes) | '1.5' (16) | '2.0' (18).

    * release: ``root/{images_dir}/*.png`` + ``root/{ann_dir}/*.txt`` (``split=None``);
    * mmrotate split output (``mtp tool dota-split``): ``root/{split}/{images,annfiles}`` with ``split``
      'trainval' | 'train' | 'val' | 'test'.

    ``ann_dir=None`` picks ``annfiles`` or ``labelTxt``, whichever exists. Annotation files drive the list
    (an image per txt is required, extra images are logged and ignored, like mmrotate). Without any
    annotation folder, ``split='test'`` (or ``annotations=False``) lists the images with no objects.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        version: str = "1.0",
        images_dir: str = "images",
        ann_dir: str | None = None,
        *,
        annotations: bool | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        filter_empty: bool = False,
        palette: Sequence[Sequence[int]] | None = None,
        raster: RasterRule | None = None,
    ) -> None:
        if version not in DOTA_CLASSES:
            raise ValueError(f"version must be one of {sorted(DOTA_CLASSES)}, got {version!r}")
        base = require_dir(Path(root), "dataset root")
        if split is not None:
            base = require_dir(base / split, f"split '{split}'")
        items = txt_layout_items(base, images_dir, ann_dir, annotations, split == "test")
        super().__init__(items, DOTA_CLASSES[version], parse_dota_txt, palette=palette, transform=transform,
                         filter_empty=filter_empty, raster=raster)  # fmt: skip
        self.version = version


class DIORR(RotatedDetectionDataset):
    """DIOR-R: ``root/ImageSets/Main/{train,val,test}.txt`` (ids), ``root/JPEGImages-trainval/<id>.jpg`` /
    ``root/JPEGImages-test/<id>.jpg`` and ``root/Annotations/Oriented Bounding Boxes/<id>.xml``; 20 classes.

    ``split='trainval'`` reads ``train.txt`` + ``val.txt`` (MTP concatenates them) or ``trainval.txt`` when
    those are absent. Names are lower-cased; the xml ``difficult`` tag is ignored.
    """

    SPLITS = ("trainval", "train", "val", "test")

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        *,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        filter_empty: bool = False,
        palette: Sequence[Sequence[int]] | None = None,
        raster: RasterRule | None = None,
    ) -> None:
        if split not in self.SPLITS:
            raise ValueError(f"split must be one of {self.SPLITS}, got {split!r}")
        root = require_dir(Path(root), "dataset root")
        sets = root / "ImageSets" / "Main"
        lists = ["train", "val"] if split == "trainval" else [split]
        if split == "trainval" and not all((sets / f"{s}.txt").is_file() for s in lists):
            lists = ["trainval"]
        ids: list[str] = []
        for name in lists:
            path = sets / f"{name}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"split list not found: {path}")
            ids += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not ids:
            raise ValueError(f"no image ids in {', '.join(str(sets / f'{s}.txt') for s in lists)}")
        images_dir = require_dir(root / ("JPEGImages-test" if split == "test" else "JPEGImages-trainval"), "image")
        ann_dir = require_dir(root / "Annotations" / "Oriented Bounding Boxes", "annotation")
        items, missing = [], []
        for image_id in ids:
            ann = ann_dir / f"{image_id}.xml"
            if not ann.is_file():
                missing.append(f"annotation file not found: {ann}")
                continue
            try:
                items.append((find_image(images_dir, image_id, (".jpg", ".png", ".tif")), ann))
            except FileNotFoundError as e:
                missing.append(str(e))
        if missing:
            listed = ", ".join(str(sets / f"{s}.txt") for s in lists)
            raise FileNotFoundError(f"{len(missing)} file(s) of the ids listed in {listed} not found:\n  "
                                    + "\n  ".join(missing[:10]) + ("\n  ..." if len(missing) > 10 else ""))  # fmt: skip
        super().__init__(items, DIOR_R_CLASSES, parse_dior_xml, palette=palette, transform=transform,
                         filter_empty=filter_empty, raster=raster)  # fmt: skip


class FAIR1M(RotatedDetectionDataset):
    """FAIR1M-2.0, 37 classes with MTP's hyphenated names (``FAIR1M_CLASSES``).

    * ``format='xml'`` (the release): ``root/{split}/images/*.tif`` + ``root/{split}/labelXml/*.xml``
      (``split`` e.g. 'train' | 'validation' | 'test'), or the release's part folders
      ``root/{split}/part*/{images,labelXml}`` (every ``part*`` folder is read, in name order; the older form
      ``root='…/train', split='part1'`` reads one part). Release names ("Small Car", "other-airplane") are mapped
      to MTP's; a ``test`` split without ``labelXml`` lists the images only;
    * ``format='dota'`` (MTP's clipped patches): ``root/{split}/{images,annfiles}`` DOTA txt with the
      hyphenated names (``split`` 'trainval' | 'test').
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        format: str = "xml",
        *,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        filter_empty: bool = False,
        palette: Sequence[Sequence[int]] | None = None,
        raster: RasterRule | None = None,
    ) -> None:
        if format not in ("xml", "dota"):
            raise ValueError(f"format must be 'xml' or 'dota', got {format!r}")
        class_map = {n: i for i, n in enumerate(FAIR1M_CLASSES)}
        class_map.update({fair1m_release_name(n): i for i, n in enumerate(FAIR1M_CLASSES)})
        base = require_dir(require_dir(Path(root), "dataset root") / split, f"split '{split}'")
        if format == "xml":
            items = []
            for folder in self.part_folders(base):
                xml_dir = folder / "labelXml"
                if not xml_dir.is_dir() and split == "test":
                    items += [(p, None) for p in list_files(folder / "images", IMAGE_SUFFIXES, "image")]
                else:
                    ann_files = list_files(xml_dir, (".xml",), "annotation")
                    items += pair_by_annotation(folder / "images", ann_files, IMAGE_SUFFIXES)
            parser = parse_fair1m_xml
        else:
            if not (base / "annfiles").is_dir() and (base / "labelXml").is_dir():
                raise FileNotFoundError(f"{base} holds labelXml/ (the release xml) but format='dota' reads "
                                        f"{base}/annfiles/*.txt: set format: xml")  # fmt: skip
            items = txt_layout_items(base, "images", None, None, split == "test")
            parser = parse_dota_txt
        super().__init__(items, FAIR1M_CLASSES, parser, class_map=class_map, palette=palette, transform=transform,
                         filter_empty=filter_empty, raster=raster)  # fmt: skip
        self.format = format

    @staticmethod
    def part_folders(base: Path) -> list[Path]:
        """``[base]`` when it holds ``images/``, else its ``part*`` folders that do (the release layout)."""
        if (base / "images").is_dir():
            return [base]
        parts = sorted(d for d in base.iterdir() if d.is_dir() and d.name.lower().startswith("part"))
        parts = [d for d in parts if (d / "images").is_dir()]
        if not parts:
            if (base / "annfiles").is_dir():
                raise FileNotFoundError(f"{base} holds annfiles/ (DOTA txt patches) but format='xml' reads "
                                        f"{base}/images + labelXml: set format: dota")  # fmt: skip
            raise FileNotFoundError(f"image folder not found: {base / 'images'} (nor {base}/part*/images, the "
                                    f"release's part folders){folder_hint(base / 'images')}")  # fmt: skip
        log.info("FAIR1M %s: reading %d part folder(s): %s", base, len(parts), ", ".join(d.name for d in parts))
        return parts
