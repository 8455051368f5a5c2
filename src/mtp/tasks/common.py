"""Pieces shared by the detection tasks (horizontal and rotated): class-name resolution and the official
mmdet/mmrotate schedule (AdamW with layer decay, linear warmup, step decay at epoch milestones)."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch

from mtp.tasks.optim import build_adamw, warmup_multistep_factor


def resolve_class_names(task: L.LightningModule, num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """Check every attached dataset has ``num_classes`` classes and return the class names: ``class_names``,
    else the first dataset's ``classes``, else ``class_0 ...``."""
    datamodule = getattr(task.trainer, "datamodule", None) if task._trainer is not None else None
    names = list(class_names) if class_names else None
    for split in ("train", "val", "test", "predict"):
        dataset = getattr(datamodule, f"{split}_dataset", None)
        if dataset is None:
            continue
        if getattr(dataset, "num_classes", num_classes) != num_classes:
            raise ValueError(f"{split} dataset has {dataset.num_classes} classes, the model {num_classes}")
        names = names or list(getattr(dataset, "classes", []) or []) or None
    return names or [f"class_{i}" for i in range(num_classes)]


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
