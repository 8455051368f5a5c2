"""Target assignment and sampling with mmdet ``MaxIoUAssigner`` / ``RandomSampler`` semantics.

Assignment codes (per prior): -1 ignored, 0 negative, k > 0 positive matched to ground truth k-1.
Reference: docs/RECIPES.md#oriented-r-cnn-model (RPN: pos 0.7 / neg 0.3 / min_pos 0.3, low-quality matches
with ``gt_max_assign_all``; R-CNN: 0.5 / 0.5 / 0.5, no low-quality matches).
"""

from __future__ import annotations

import torch
from torch import Tensor


def max_iou_assign(
    overlaps: Tensor,
    *,
    pos_iou_thr: float,
    neg_iou_thr: float,
    min_pos_iou: float,
    match_low_quality: bool,
    gt_max_assign_all: bool = True,
) -> Tensor:
    """Assign priors to ground truths from an (G, N) IoU matrix -> (N,) long codes.

    Rules: max IoU in [0, neg) -> 0; >= pos -> argmax + 1; then, if ``match_low_quality``, every
    ground truth whose best IoU is >= ``min_pos_iou`` claims the priors reaching that best IoU
    (all of them when ``gt_max_assign_all``, else the first), later ground truths overriding.
    """
    num_gts, num_priors = overlaps.shape
    assigned = overlaps.new_full((num_priors,), -1, dtype=torch.long)
    if num_priors == 0:
        return assigned
    if num_gts == 0:
        return assigned.zero_()
    max_overlaps, argmax = overlaps.max(dim=0)
    assigned[(max_overlaps >= 0) & (max_overlaps < neg_iou_thr)] = 0
    positive = max_overlaps >= pos_iou_thr
    assigned[positive] = argmax[positive] + 1
    if match_low_quality:
        gt_max, gt_argmax = overlaps.max(dim=1)
        eligible = gt_max >= min_pos_iou  # (G,)
        if gt_max_assign_all:
            claims = (overlaps == gt_max[:, None]) & eligible[:, None]  # (G, N)
        else:
            claims = torch.zeros_like(overlaps, dtype=torch.bool)
            claims[torch.arange(num_gts, device=overlaps.device), gt_argmax] = True
            claims &= eligible[:, None]
        # The official loop runs over ground truths in order, so the last claimant wins.
        order = torch.arange(1, num_gts + 1, device=overlaps.device)[:, None]
        last = (claims.long() * order).max(dim=0).values
        assigned = torch.where(last > 0, last, assigned)
    return assigned


def random_sample(
    assigned: Tensor, *, num: int, pos_fraction: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """mmdet ``RandomSampler`` (neg_pos_ub -1): up to ``num * pos_fraction`` random positives, the
    rest of ``num`` random negatives. Returns (pos_indices, neg_indices) into the priors."""
    pos = torch.nonzero(assigned > 0).flatten()
    neg = torch.nonzero(assigned == 0).flatten()
    num_pos = int(num * pos_fraction)
    if pos.numel() > num_pos:
        pos = pos[_randperm(pos.numel(), generator, pos.device)[:num_pos]]
    num_neg = num - pos.numel()
    if neg.numel() > num_neg:
        neg = neg[_randperm(neg.numel(), generator, neg.device)[:num_neg]]
    return pos, neg


def _randperm(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    if generator is None:
        return torch.randperm(n, device=device)
    return torch.randperm(n, generator=generator, device=generator.device).to(device)
