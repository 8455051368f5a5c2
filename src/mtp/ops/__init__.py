"""Tensor operations, ``torchvision.ops`` style: plain functions (and a module where one is useful).

Rotated boxes are ``(..., 5)`` float tensors ``(cx, cy, w, h, theta)``: centre and sides in pixels, ``theta`` in
radians, image frame (x right, y down), positive ``theta`` clockwise on screen, regularised to the official
'le90' range (w >= h, theta in [-pi/2, pi/2)) unless stated; DOTA polygons are ``(..., 8)``
``(x1, y1, ..., x4, y4)``; horizontal boxes are xyxy pixels (torchvision). See docs/CONVENTIONS.md.

>>> from mtp.ops import rotated_iou, batched_rotated_nms, poly2rbox
>>> rboxes = poly2rbox(polygons)                       # (N, 8) -> (N, 5), le90
>>> iou = rotated_iou(rboxes, rboxes)                  # (N, N)
>>> keep = batched_rotated_nms(rboxes, scores, labels, 0.1)

Rotated boxes: :func:`rotated_iou` (IoU / IoF, pairwise or aligned), :func:`rotated_nms`,
:func:`batched_rotated_nms`, :func:`roi_align_rotated` / :class:`RoIAlignRotated`, conversions
(:func:`poly2rbox`, :func:`rbox2poly`, :func:`rbox2hbox`, :func:`hbox2rbox`, :func:`rbox2corners`,
torchvision's ``CXCYWHR`` format), :func:`regularize_rboxes` and geometric transforms. ViT+RVSA helpers:
decomposed relative positions (:mod:`mtp.ops.rel_pos`) and RVSA windows (:mod:`mtp.ops.windows`).
InternImage: the DCNv3 deformable sampling :func:`dcnv3_core` (channels-last; :mod:`mtp.ops.dcnv3`) and its
:class:`DCNv3Geometry`.
"""

from mtp.ops.dcnv3 import DCNv3Geometry, dcnv3_core
from mtp.ops.rel_pos import decomposed_rel_pos, resize_pos_embed, resize_rel_pos_table
from mtp.ops.rotated.boxes import (
    flip_rboxes,
    hbox2rbox,
    norm_angle,
    poly2rbox,
    rbox2corners,
    rbox2hbox,
    rbox2poly,
    rbox2tv_cxcywhr,
    rbox_areas,
    regularize_rboxes,
    rescale_rboxes,
    translate_rboxes,
    tv_cxcywhr2rbox,
)
from mtp.ops.rotated.iou import rbox_overlaps_for_assigner, rotated_iou
from mtp.ops.rotated.nms import batched_rotated_nms, rotated_nms
from mtp.ops.rotated.roi_align import RoIAlignRotated, RotatedRoIExtractor, roi_align_rotated
from mtp.ops.windows import window_partition, window_unpartition

__all__ = [
    "DCNv3Geometry",
    "RoIAlignRotated",
    "RotatedRoIExtractor",
    "batched_rotated_nms",
    "dcnv3_core",
    "decomposed_rel_pos",
    "flip_rboxes",
    "hbox2rbox",
    "norm_angle",
    "poly2rbox",
    "rbox2corners",
    "rbox2hbox",
    "rbox2poly",
    "rbox2tv_cxcywhr",
    "rbox_areas",
    "rbox_overlaps_for_assigner",
    "regularize_rboxes",
    "rescale_rboxes",
    "resize_pos_embed",
    "resize_rel_pos_table",
    "roi_align_rotated",
    "rotated_iou",
    "rotated_nms",
    "translate_rboxes",
    "tv_cxcywhr2rbox",
    "window_partition",
    "window_unpartition",
]
