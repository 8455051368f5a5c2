"""Optimiser parameter groups: the official layer-wise learning-rate decay, per backbone family.

Both rules use L = num_layers + 2 and lr = base_lr * decay ** (L - 1 - id); frozen parameters
(``requires_grad=False``) are left out, as in the official constructors. The family is that of
the backbone found at ``prefix`` (:func:`layer_decay_param_groups` dispatches); docs/RECIPES.md#layer-wise-lr-decay.

ViT+RVSA (``LayerDecayOptimizerConstructor_ViT`` in
``RS_Tasks_Finetune/*/mmcv_custom/layer_decay_optimizer_constructor_vit.py``; num_layers = depth):

* layer id 0: ``<backbone>.cls_token``, ``.mask_token``, ``.pos_embed`` and ``.patch_embed.*``;
* layer id i + 1: ``<backbone>.blocks.i.*``;
* layer id num_layers + 1 (scale 1): everything else (fpn adapters, necks, heads);
* no weight decay for 1-D parameters, biases and anything named ``pos_embed``.

InternImage (``CustomLayerDecayOptimizerConstructor_InternImage`` / ``get_num_layer_for_swin`` in
``{Multi-Task_Pretrain,RS_Tasks_Finetune/*}/mmcv_custom/custom_layer_decay_optimizer_constructor.py``;
num_layers = sum(depths) = 39 for XL, as ``paramwise_cfg.num_layers``):

* layer id 0: ``<backbone>.patch_embed.*`` (and the Mask2Former / CBNet names the official rule lists);
* layer id j + 1 + sum(depths[:i]): ``<backbone>.levels.i.blocks.j.*``;
* layer id 1 + sum(depths[:min(i, 2) + 1]): ``<backbone>.levels.i.downsample.*`` / ``.norm.*``;
* layer id L - 1 (scale 1): everything else;
* no weight decay for 1-D parameters, biases and names containing ``norm``, ``relative_position``
  or ``sampling_offsets``.

Official quirk: every MTP copy of the InternImage constructor (pretraining and all fine-tuning
repositories) matches the prefix ``encoder.``, while the OpenMMLab fine-tuning models name their
backbone ``backbone.``; in the released InternImage fine-tuning runs every parameter therefore
got layer id L - 1, i.e. **no layer decay** (the logged first-group lr equals the base lr). Pass
``layer_decay=None`` to reproduce that (the weight-decay rule still applies), or a rate (0.94 in
the configs) for the rule as written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from mtp.models.backbones.internimage import InternImage


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


_INTERNIMAGE_LAYER_ZERO = (
    "decode_head.mask_embed",
    "decode_head.cls_embed",
    "decode_head.level_embed",
    "decode_head.query_embed",
    "decode_head.query_feat",
)


def internimage_layer_id(name: str, num_layers: int, depths: Sequence[int], prefix: str = "backbone.") -> int:
    """Layer id of ``name`` under the official InternImage rule (module docstring); ``num_layers`` = sum(depths)."""
    if name.startswith((f"{prefix}patch_embed", f"{prefix}cb_modules.0.patch_embed", *_INTERNIMAGE_LAYER_ZERO)):
        return 0
    if "level_embeds" in name:
        return 0
    level = re.match(re.escape(prefix) + r"levels\.(\d+)\.(\w+)\.", name)
    if level is None:
        return num_layers + 1
    stage = int(level[1])
    if level[2] in ("downsample", "norm"):
        return 1 + sum(depths[: min(stage, 2) + 1])
    block = int(name[len(prefix) :].split(".")[3])
    return block + 1 + sum(depths[:stage])


def _vit_no_weight_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim == 1 or name.endswith(".bias") or "pos_embed" in name


def _internimage_no_weight_decay(name: str, param: torch.Tensor) -> bool:
    keywords = ("relative_position", "norm", "sampling_offsets")
    return param.ndim == 1 or name.endswith(".bias") or any(k in name for k in keywords)


def _find_backbone(model: nn.Module, prefix: str) -> nn.Module | None:
    if not prefix:
        return model
    try:
        return model.get_submodule(prefix.rstrip("."))
    except AttributeError:
        return None


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
        model: the whole task model; the backbone (ViT+RVSA or InternImage) is the submodule at
            ``prefix`` ("" when ``model`` is the backbone itself); its type selects the rule.
        lr, weight_decay: base values.
        layer_decay: decay rate (0.9 in the official ViT, 0.94 in the InternImage fine-tuning
            configs); None -> no decay (every group gets scale 1, the no-weight-decay rule still applies).
        num_layers: ViT depth / InternImage sum(depths); defaults to ``get_num_layers()`` of the backbone.

    Returns:
        Groups with keys ``params``, ``param_names``, ``lr``, ``lr_scale``, ``weight_decay``,
        ``group_name`` (``layer_<id>_decay`` / ``layer_<id>_no_decay``), ordered by layer id.
    """
    backbone = _find_backbone(model, prefix)
    if num_layers is None:
        if backbone is None or not hasattr(backbone, "get_num_layers"):
            found = "nothing" if backbone is None else type(backbone).__name__
            raise ValueError(f"cannot infer num_layers: {found} at prefix {prefix!r} has no get_num_layers()")
        num_layers = backbone.get_num_layers()
    total = num_layers + 2
    layer_id: Callable[[str], int]
    if isinstance(backbone, InternImage):
        layer_id = partial(internimage_layer_id, num_layers=num_layers, depths=backbone.depths, prefix=prefix)
        no_weight_decay = _internimage_no_weight_decay
    else:
        layer_id = partial(vit_layer_id, num_layers=num_layers, prefix=prefix)
        no_weight_decay = _vit_no_weight_decay
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = no_weight_decay(name, param)
        layer = layer_id(name)
        group_name = f"layer_{layer}_{'no_decay' if no_decay else 'decay'}"
        if group_name not in groups:
            scale = layer_decay ** (total - 1 - layer) if layer_decay is not None else 1.0
            groups[group_name] = {
                "params": [],
                "param_names": [],
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "group_name": group_name,
                "layer_id": layer,
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
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over :func:`layer_decay_param_groups` (the official fine-tuning optimiser).

    ``fused``: PyTorch's fused AdamW kernel (one launch for all parameters, same update rule); None ->
    on when every trainable parameter is on a CUDA device (build the optimiser after moving the model,
    as Lightning does), else the default implementation.
    """
    groups = layer_decay_param_groups(model, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay, prefix=prefix)
    if fused is None:
        params = [p for g in groups for p in g["params"]]
        fused = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=betas, fused=fused)


def linear_warmup_factor(step: int, *, warmup_iters: float, warmup_ratio: float) -> float:
    """mmengine ``LinearLR(start_factor=warmup_ratio, end_factor=1, begin=0, end=warmup_iters)`` at iteration
    ``step`` (the lr used *for* that iteration): ``warmup_ratio + (1 - warmup_ratio) * step / (warmup_iters - 1)``,
    reaching exactly 1 at iteration ``warmup_iters - 1`` (mmengine's ``total_iters = end - begin - 1``; see
    ``mmengine/optim/scheduler/param_scheduler.py``, ``LinearParamScheduler``), 1 afterwards.
    (mmcv 1.x's ``warmup='linear'`` divides by ``warmup_iters`` instead; no twin uses it.)
    """
    span = warmup_iters - 1
    if step >= span or span <= 0:
        return 1.0
    return warmup_ratio + (1.0 - warmup_ratio) * step / span


def warmup_cosine_factor(step: int, *, warmup_iters: int, warmup_ratio: float, max_iters: int) -> float:
    """Learning-rate factor of the official segmentation schedule at iteration ``step``.

    mmengine ``LinearLR(start_factor=warmup_ratio, end=warmup_iters)`` (:func:`linear_warmup_factor`) then
    ``CosineAnnealingLR(T_max=max_iters - warmup_iters, eta_min=0, begin=warmup_iters)``: half a cosine from 1 at
    ``warmup_iters`` to 0 at ``max_iters`` (0 afterwards).
    """
    if step < warmup_iters:
        return linear_warmup_factor(step, warmup_iters=warmup_iters, warmup_ratio=warmup_ratio)
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


def epoch_warmup_cosine_factor(
    step: int, *, steps_per_epoch: int, warmup_epochs: float, max_epochs: int, warmup_ratio: float, by_epoch: bool
) -> float:
    """LR factor at iteration ``step`` of the epoch-based official recipes (mmpretrain classification, Open-CD
    change detection): mmengine ``LinearLR(by_epoch=True, end=warmup_epochs, convert_to_iter_based=True)`` — a
    per-iteration ramp over ``warmup_epochs * steps_per_epoch`` iterations (:func:`linear_warmup_factor`) — then
    ``CosineAnnealingLR(T_max=max_epochs - warmup_epochs, begin=warmup_epochs, by_epoch=True)``, which changes
    once per epoch: ``0.5 (1 + cos(pi (e - warmup_epochs) / (max_epochs - warmup_epochs)))`` with ``e`` the
    current epoch (integer when ``by_epoch``; fractional ``step / steps_per_epoch`` otherwise); 0 after
    ``max_epochs``."""
    warmup_iters = warmup_epochs * steps_per_epoch
    if step < warmup_iters:
        return linear_warmup_factor(step, warmup_iters=warmup_iters, warmup_ratio=warmup_ratio)
    epoch = step // steps_per_epoch if by_epoch else step / steps_per_epoch
    progress = min(max(epoch - warmup_epochs, 0) / max(max_epochs - warmup_epochs, 1e-8), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_multistep_factor(
    step: int,
    *,
    warmup_iters: int,
    warmup_ratio: float,
    steps_per_epoch: int,
    milestones: tuple[int, ...],
    gamma: float = 0.1,
) -> float:
    """Official detection schedule: ``LinearLR(start_factor=warmup_ratio, end=warmup_iters)`` per iteration
    (:func:`linear_warmup_factor`), times ``MultiStepLR(milestones, gamma)`` per epoch
    (epoch = step // steps_per_epoch)."""
    warm = linear_warmup_factor(step, warmup_iters=warmup_iters, warmup_ratio=warmup_ratio)
    epoch = step // max(steps_per_epoch, 1)
    return warm * gamma ** sum(epoch >= m for m in milestones)
