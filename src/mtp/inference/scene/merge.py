"""Merging tile detections across tile borders while streaming: class-wise (rotated) NMS, the DOTA merge rule.

The DOTA rule (mmrotate ``merge_results``, :func:`mtp.metrics.dota.submission.merge_patch_detections`) translates
every patch's detections to image pixels and runs one class-wise rotated NMS (IoU > 0.1 suppresses) over the
whole image. :class:`RollingMerge` gives the same result without holding the whole scene: after each tile row it
runs the NMS on the *pending* detections and finalises every group of them that no later tile can touch.

Why this is exact: greedy NMS decides a box from the boxes it overlaps, so the result inside a connected group of
the "boxes of one class whose bounding rectangles intersect" graph depends on that group only. A box is *open*
when its bounding rectangle reaches within ``margin`` pixels of a region still to be processed (below ``limit_low``,
the first row of the next tile row; above ``limit_high``, the last row handled by another process); a group with
no open box can never gain a member, so its NMS outcome is final: kept boxes are emitted, suppressed ones dropped.
Open groups stay pending. ``margin`` covers boxes that a detector predicts partly outside its tile.

Boxes: rotated ``(N, 5)`` (cx, cy, w, h, θ) or horizontal ``(N, 4)`` xyxy, float64 scene pixels (pixel centres at
integer coordinates); ``payload`` is an optional per-box Python object (mask polygons) carried along.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from mtp.ops import batched_rotated_nms, rbox2hbox

__all__ = ["Detections", "RollingMerge"]

_CHUNK = 1 << 22  # pair-mask entries per chunk


@dataclass
class Detections:
    """A set of scene detections: ``boxes`` float64 (N, 5 | 4), ``scores`` float32 (N,), ``labels`` int64 (N,),
    ``payload`` list of N objects (or empty when unused)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    payload: list = field(default_factory=list)

    @classmethod
    def empty(cls, box_dim: int) -> Detections:
        return cls(torch.zeros(0, box_dim, dtype=torch.float64), torch.zeros(0), torch.zeros(0, dtype=torch.long))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, mask_or_index: Tensor) -> Detections:
        index = mask_or_index.nonzero().flatten() if mask_or_index.dtype == torch.bool else mask_or_index
        payload = [self.payload[i] for i in index.tolist()] if self.payload else []
        return Detections(self.boxes[index], self.scores[index], self.labels[index], payload)

    @staticmethod
    def cat(parts: Sequence[Detections], box_dim: int) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Detections.empty(box_dim)
        payload = [x for p in parts for x in p.payload] if all(p.payload for p in parts) else []
        return Detections(torch.cat([p.boxes for p in parts]), torch.cat([p.scores for p in parts]),
                          torch.cat([p.labels for p in parts]), payload)  # fmt: skip

    def hboxes(self) -> Tensor:
        return rbox2hbox(self.boxes) if self.boxes.shape[1] == 5 else self.boxes

    def to_json(self) -> dict:
        return {"boxes": self.boxes.tolist(), "scores": self.scores.tolist(), "labels": self.labels.tolist(),
                "payload": self.payload}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict, box_dim: int) -> Detections:
        boxes = torch.tensor(data["boxes"], dtype=torch.float64).reshape(-1, box_dim)
        return cls(boxes, torch.tensor(data["scores"], dtype=torch.float32), torch.tensor(data["labels"],
                   dtype=torch.long), list(data.get("payload") or []))  # fmt: skip


def nms_keep(dets: Detections, iou: float) -> Tensor:
    """Indices kept by class-wise NMS (rotated for 5-d boxes; IoU > ``iou`` suppresses), by descending score."""
    if not len(dets):
        return torch.zeros(0, dtype=torch.long)
    if dets.boxes.shape[1] == 5:
        return batched_rotated_nms(dets.boxes, dets.scores.double(), dets.labels, iou)
    return batched_nms(dets.boxes, dets.scores.double(), dets.labels, iou)


def _components(hboxes: Tensor, labels: Tensor) -> Tensor:
    """Component id per box of the graph "same label and intersecting bounding rectangles"."""
    n = hboxes.shape[0]
    parent = torch.arange(n)
    srcs, dsts = [], []
    for value in labels.unique().tolist():
        members = (labels == value).nonzero().flatten()
        boxes = hboxes[members]
        rows = max(1, _CHUNK // max(len(members), 1))
        for r0 in range(0, len(members), rows):
            a, b = boxes[r0 : r0 + rows, None], boxes[None]
            hit = (a[..., 0] <= b[..., 2]) & (b[..., 0] <= a[..., 2])
            hit &= (a[..., 1] <= b[..., 3]) & (b[..., 1] <= a[..., 3])
            i, j = hit.nonzero(as_tuple=True)
            srcs.append(members[i + r0])
            dsts.append(members[j])
    if not srcs:
        return parent
    src, dst = torch.cat(srcs), torch.cat(dsts)
    while True:  # min-label propagation with pointer jumping
        new = parent.clone()
        new.scatter_reduce_(0, src, parent[dst], reduce="amin")
        new = new[new]
        if torch.equal(new, parent):
            return parent
        parent = new


class RollingMerge:
    """Streaming class-wise NMS over the tile rows of a scene (see the module docstring).

    Args:
        iou: NMS threshold (0.1: the DOTA merge rule). margin: pixels by which detections may leave their tile.
        limit_high: scene row above which another process detected (boxes reaching it stay open); None: none.
    """

    def __init__(self, box_dim: int, iou: float = 0.1, margin: float = 64.0, limit_high: float | None = None) -> None:
        self.box_dim, self.iou, self.margin, self.limit_high = box_dim, iou, margin, limit_high
        self.pending = Detections.empty(box_dim)
        self._new: list[Detections] = []

    def add(self, dets: Detections) -> None:
        if len(dets):
            self._new.append(dets)

    def close(self, limit_low: float | None) -> Detections:
        """Finalise the groups that cannot change any more (``limit_low``: first scene row still to be processed
        below, None: none); returns their kept detections (descending score) and keeps the rest pending."""
        pending = Detections.cat([self.pending, *self._new], self.box_dim)
        self._new = []
        if not len(pending):
            self.pending = pending
            return pending
        hb = pending.hboxes()
        open_ = torch.zeros(len(pending), dtype=torch.bool)
        if limit_low is not None:
            open_ |= hb[:, 3] >= limit_low - self.margin
        if self.limit_high is not None:
            open_ |= hb[:, 1] <= self.limit_high + self.margin
        keep = torch.zeros(len(pending), dtype=torch.bool)
        keep[nms_keep(pending, self.iou)] = True
        if open_.any():
            comp = _components(hb, pending.labels)
            open_comp = torch.zeros(len(pending), dtype=torch.bool)
            open_comp[comp[open_]] = True
            open_ = open_comp[comp]
        self.pending = pending.select(open_)
        final = pending.select(keep & ~open_)
        return final.select(torch.sort(final.scores, descending=True, stable=True).indices)
