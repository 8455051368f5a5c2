"""Greedy rotated NMS without a Python loop over boxes (docs/CONVENTIONS.md#rotated-iou-nms-and-roialign).

Hand-written: no maintained library offers rotated NMS for PyTorch tensors (torchvision 0.29's
``nms``/``batched_nms`` are horizontal only; mmcv's ``rotated_nms`` is a compiled extension not used here).

Semantics (mmcv's **CUDA** kernel): boxes are sorted by descending score (stable, so equal scores keep
input order); a box is suppressed when its rotated IoU with a higher-scored **kept** box is strictly
greater than ``iou_threshold``. mmcv's CPU kernel suppresses at ``IoU >= iou_threshold`` instead; the two
differ only for IoUs exactly at the threshold. Degenerate boxes (w * h < 1e-14) have IoU 0 with
everything: they never suppress and are never suppressed.

Algorithm: the strictly upper-triangular "suppresses" relation S_ij = (i < j) and IoU(i, j) > thr of
the score-sorted boxes is built in chunks as a sparse edge list (circumscribed-HBB prefilter, then exact
:func:`~mtp.ops.rotated.iou.rotated_iou` on the candidate pairs). Greedy NMS is the unique solution of
keep_j = not any_{i<j} (keep_i and S_ij); iterating that map from all-True fixes one more prefix of the
order per step, so it reaches exactly the greedy result in at most N steps and then stops changing
(convergence is checked every few steps to limit host syncs). Cost per step is O(edges).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["batched_rotated_nms", "rotated_nms"]

from mtp.ops.rotated.boxes import rbox2hbox
from mtp.ops.rotated.iou import rotated_iou

_CHECK_EVERY = 4
_PAIR_CHUNK = 1 << 20  # candidate-mask entries per chunk
_ALIGNED_CHUNK = 1 << 16  # pairs per exact-IoU evaluation (bounds temporary memory to ~100 MB)


def _suppression_edges(boxes: Tensor, iou_threshold: float, labels: Tensor | None) -> tuple[Tensor, Tensor]:
    """Score-sorted (N, 5) rboxes -> (src, dst) int64 positions with src < dst and IoU > threshold
    (and equal labels when given). With labels, candidate pairs are only formed inside each label's
    group (sum of n_c^2 instead of N^2 prefilter work)."""
    if labels is None or labels.numel() == 0:
        return _edges_in_group(boxes, iou_threshold, torch.arange(boxes.shape[0], device=boxes.device))
    by_label = torch.sort(labels, stable=True)  # keeps the score order inside each label
    counts = torch.unique_consecutive(by_label.values, return_counts=True)[1].tolist()
    srcs, dsts = [], []
    for group in torch.split(by_label.indices, counts):
        src, dst = _edges_in_group(boxes, iou_threshold, group)
        srcs.append(src)
        dsts.append(dst)
    return torch.cat(srcs), torch.cat(dsts)


def _edges_in_group(boxes: Tensor, iou_threshold: float, members: Tensor) -> tuple[Tensor, Tensor]:
    """Edges among ``members`` (increasing positions in the score order)."""
    n = members.numel()
    sub = boxes[members]
    hb = rbox2hbox(sub)
    ok = sub[:, 2] * sub[:, 3] >= 1e-14
    pos = torch.arange(n, device=boxes.device)
    rows = max(1, _PAIR_CHUNK // max(n, 1))
    srcs, dsts = [members.new_zeros(0)], [members.new_zeros(0)]
    for r0 in range(0, n, rows):
        a, b = hb[r0 : r0 + rows, None], hb[None, r0:]
        cand = (a[..., 0] <= b[..., 2]) & (b[..., 0] <= a[..., 2]) & (a[..., 1] <= b[..., 3]) & (b[..., 1] <= a[..., 3])
        cand &= pos[r0 : r0 + rows, None] < pos[None, r0:]
        cand &= ok[r0 : r0 + rows, None] & ok[None, r0:]
        ii, jj = cand.nonzero(as_tuple=True)
        ii, jj = ii + r0, jj + r0
        sel = rotated_iou(sub[ii], sub[jj], aligned=True, chunk_size=_ALIGNED_CHUNK) > iou_threshold
        srcs.append(members[ii[sel]])
        dsts.append(members[jj[sel]])
    return torch.cat(srcs), torch.cat(dsts)


def _greedy_fixed_point(n: int, src: Tensor, dst: Tensor) -> Tensor:
    """Keep mask of greedy NMS given the suppression edges of the score-sorted boxes."""
    keep = torch.ones(n, dtype=torch.bool, device=src.device)
    if src.numel() == 0:
        return keep
    for _ in range(n // _CHECK_EVERY + 2):  # converges in at most n steps
        prev = keep
        for _ in range(_CHECK_EVERY):
            hits = torch.zeros(n, dtype=torch.int32, device=src.device)
            hits.index_add_(0, dst, keep[src].to(torch.int32))
            keep = hits == 0
        if torch.equal(keep, prev):
            return keep
    raise RuntimeError("rotated NMS fixed point did not converge")  # unreachable by construction


def _nms(boxes: Tensor, scores: Tensor, iou_threshold: float, labels: Tensor | None) -> Tensor:
    if boxes.dim() != 2 or boxes.shape[-1] != 5:
        raise ValueError(f"expected (N, 5) rboxes, got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")
    if iou_threshold < 0:
        raise ValueError(f"iou_threshold must be >= 0, got {iou_threshold}")
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order] if boxes.is_floating_point() else boxes[order].float()
    sorted_labels = None if labels is None else labels[order]
    src, dst = _suppression_edges(sorted_boxes, float(iou_threshold), sorted_labels)
    keep = _greedy_fixed_point(boxes.shape[0], src, dst)
    return order[keep]


def rotated_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy rotated NMS.

    Args:
        boxes: (N, 5) rboxes (cx, cy, w, h, theta): pixels, radians, clockwise on screen.
        scores: (N,) scores.
        iou_threshold: suppress when IoU with a higher-scored kept box is > this value (>= 0).

    Returns:
        int64 (K,) indices into ``boxes`` of the kept boxes, sorted by descending score
        (ties in input order).
    """
    return _nms(boxes, scores, iou_threshold, None)


def batched_rotated_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware rotated NMS: exactly independent :func:`rotated_nms` per value of ``idxs``.

    Instead of mmcv's centre-offset trick, pairs with different ``idxs`` are simply never allowed to
    suppress each other, so there is no precision loss at large offsets and no per-class loop.

    Args:
        boxes: (N, 5) rboxes; scores: (N,); idxs: (N,) integer class (or level) ids.
        iou_threshold: strict suppression threshold (>= 0).

    Returns:
        int64 (K,) indices of kept boxes over all classes, sorted by descending score.
    """
    if idxs.shape != scores.shape:
        raise ValueError(f"idxs must have shape {tuple(scores.shape)}, got {tuple(idxs.shape)}")
    return _nms(boxes, scores, iou_threshold, idxs)
