"""Pieces shared by several tasks: the official pixel cross-entropy (segmentation, change detection) and the
official mmdet/mmrotate schedule (AdamW with layer decay, linear warmup, step decay at epoch milestones)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from mtp.tasks.optim import build_adamw, warmup_multistep_factor


def adamw_warmup_multistep(task: L.LightningModule, prefix: str = "backbone.") -> dict:
    """``configure_optimizers`` result for the detection recipes: AdamW (``lr``, ``weight_decay``,
    ``layer_decay``, ``betas`` from the task's hparams; ViT under ``prefix``) with a per-iteration LambdaLR of
    linear warmup (``warmup_iters``, ``warmup_ratio``) and ×``gamma`` at each epoch in ``milestones``."""
    hp = task.hparams
    optimizer = build_adamw(
        task.model, lr=hp.lr, weight_decay=hp.weight_decay, layer_decay=hp.layer_decay, betas=tuple(hp.betas),
        prefix=prefix,
    )  # fmt: skip
    steps_per_epoch = max(task.trainer.estimated_stepping_batches // max(task.trainer.max_epochs or 1, 1), 1)

    def factor(step: int) -> float:
        return warmup_multistep_factor(
            step,
            warmup_iters=hp.warmup_iters,
            warmup_ratio=hp.warmup_ratio,
            steps_per_epoch=steps_per_epoch,
            milestones=tuple(hp.milestones),
            gamma=hp.gamma,
        )

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def pixel_cross_entropy(
    logits: Tensor, labels: Tensor, ignore_index: int = 255, avg_non_ignore: bool = False
) -> Tensor:
    """Mean pixel cross-entropy of (B, K, H, W) logits against (B, H, W) int64 labels, computed in float32.

    Pixels labelled ``ignore_index`` contribute 0. ``avg_non_ignore=False`` (mmseg's default, the official MTP
    configs) divides the sum by all B·H·W pixels; ``True`` by the labelled pixels only (torch's
    ``ignore_index`` mean). A batch without labelled pixels gives 0 either way (not NaN).
    """
    summed = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    count = (labels != ignore_index).sum() if avg_non_ignore else labels.new_tensor(labels.numel())
    return summed / count.clamp(min=1)
