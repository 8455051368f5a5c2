"""Optimiser parameter groups: the official layer-wise learning-rate decay for ViT backbones.

Official fine-tuning rule (``LayerDecayOptimizerConstructor_ViT`` in
``RS_Tasks_Finetune/*/mmcv_custom/layer_decay_optimizer_constructor_vit.py``; docs/RECIPES.md#layer-wise-lr-decay),
with L = num_layers + 2:

* layer id 0: ``<backbone>.cls_token``, ``.mask_token``, ``.pos_embed`` and ``.patch_embed.*``;
* layer id i + 1: ``<backbone>.blocks.i.*``;
* layer id num_layers + 1 (scale 1): everything else (fpn adapters, necks, heads);
* lr = base_lr * decay ** (L - 1 - id);
* no weight decay for 1-D parameters, biases and anything named ``pos_embed``.

Frozen parameters (``requires_grad=False``) are left out, as in the official constructor.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn


def vit_layer_id(name: str, num_layers: int, prefix: str = "backbone.") -> int:
    """Layer id of parameter ``name`` under the official rule (see the module docstring)."""
    if name in (f"{prefix}cls_token", f"{prefix}mask_token", f"{prefix}pos_embed"):
        return 0
    if name.startswith(f"{prefix}patch_embed"):
        return 0
    block = re.match(re.escape(prefix) + r"blocks\.(\d+)\.", name)
    if block:
        return int(block[1]) + 1
    return num_layers + 1


def layer_decay_param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    layer_decay: float | None = None,
    num_layers: int | None = None,
    prefix: str = "backbone.",
) -> list[dict]:
    """AdamW parameter groups with optional layer-wise lr decay.

    Args:
        model: the whole task model; the ViT is the submodule at ``prefix`` ("" when ``model``
            is the backbone itself).
        lr, weight_decay: base values.
        layer_decay: decay rate (0.9 in the official ViT fine-tuning configs); None -> no decay
            (every group gets scale 1, the no-weight-decay rule still applies).
        num_layers: ViT depth; defaults to ``get_num_layers()`` of the backbone.

    Returns:
        Groups with keys ``params``, ``param_names``, ``lr``, ``lr_scale``, ``weight_decay``,
        ``group_name`` (``layer_<id>_decay`` / ``layer_<id>_no_decay``), ordered by layer id.
    """
    if num_layers is None:
        backbone = model.get_submodule(prefix.rstrip(".")) if prefix else model
        if not hasattr(backbone, "get_num_layers"):
            raise ValueError(f"cannot infer num_layers: {type(backbone).__name__} has no get_num_layers()")
        num_layers = backbone.get_num_layers()
    total = num_layers + 2
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim == 1 or name.endswith(".bias") or "pos_embed" in name
        layer_id = vit_layer_id(name, num_layers, prefix)
        group_name = f"layer_{layer_id}_{'no_decay' if no_decay else 'decay'}"
        if group_name not in groups:
            scale = layer_decay ** (total - 1 - layer_id) if layer_decay is not None else 1.0
            groups[group_name] = {
                "params": [],
                "param_names": [],
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "group_name": group_name,
                "layer_id": layer_id,
            }
        groups[group_name]["params"].append(param)
        groups[group_name]["param_names"].append(name)
    return sorted(groups.values(), key=lambda g: (g["layer_id"], g["group_name"]))


def build_adamw(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    layer_decay: float | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    prefix: str = "backbone.",
) -> torch.optim.AdamW:
    """AdamW over :func:`layer_decay_param_groups` (the official fine-tuning optimiser)."""
    groups = layer_decay_param_groups(model, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay, prefix=prefix)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=betas)


def warmup_cosine_factor(step: int, *, warmup_iters: int, warmup_ratio: float, max_iters: int) -> float:
    """Learning-rate factor of the official segmentation schedule at iteration ``step``.

    mmengine ``LinearLR(start_factor=warmup_ratio, end=warmup_iters)`` then
    ``CosineAnnealingLR(T_max=max_iters - warmup_iters, eta_min=0)``: a linear ramp from
    ``warmup_ratio`` to 1 over ``warmup_iters`` iterations, then half a cosine from 1 to 0 at
    ``max_iters`` (0 afterwards).
    """
    if step < warmup_iters:
        return warmup_ratio + (1.0 - warmup_ratio) * step / warmup_iters
    span = max(max_iters - warmup_iters, 1)
    progress = min((step - warmup_iters) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup_iters: int, warmup_ratio: float, max_iters: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration :func:`warmup_cosine_factor` applied to every group (keeps layer-decay ratios)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_cosine_factor(
            step, warmup_iters=warmup_iters, warmup_ratio=warmup_ratio, max_iters=max_iters
        ),
    )


def warmup_multistep_factor(
    step: int,
    *,
    warmup_iters: int,
    warmup_ratio: float,
    steps_per_epoch: int,
    milestones: tuple[int, ...],
    gamma: float = 0.1,
) -> float:
    """Official detection schedule: ``LinearLR(start_factor=warmup_ratio, end=warmup_iters)`` per
    iteration, times ``MultiStepLR(milestones, gamma)`` per epoch (epoch = step // steps_per_epoch)."""
    warm = warmup_ratio + (1.0 - warmup_ratio) * step / warmup_iters if step < warmup_iters else 1.0
    epoch = step // max(steps_per_epoch, 1)
    return warm * gamma ** sum(epoch >= m for m in milestones)
