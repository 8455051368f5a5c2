"""Backbone registry: typed builder functions registered by name (timm style).

>>> from mtp.models import create_backbone
>>> net = create_backbone("vit_b_rvsa", img_size=512, pretrained="vit-b-checkpoint-1599.pth")
>>> net = create_backbone("internimage_xl", pretrained="imp:internimage_xl")  # catalogue name, see mtp.weights
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from torch import nn

from mtp.models.backbones.internimage import InternImage
from mtp.models.backbones.vit_rvsa import ViTRVSA
from mtp.weights import resolve_checkpoint

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its function name."""
    if fn.__name__ in _BACKBONES:
        raise ValueError(f"backbone {fn.__name__!r} is registered twice")
    _BACKBONES[fn.__name__] = fn
    return fn


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`, sorted."""
    return sorted(_BACKBONES)


def create_backbone(
    name: str, *, img_size: int = 224, pretrained: str | Path | bool | None = None, **overrides
) -> nn.Module:
    """Build a registered backbone, optionally loading a checkpoint.

    Args:
        name: one of :func:`list_backbones`.
        img_size: training input size (ViT: fixes the stored position-embedding grid; InternImage:
            checked only, any input size works).
        pretrained: path to an official or mtp checkpoint (MAE, ImageNet, MTP encoder / full, fine-tuned), or
            a catalogue name (``"mae:vit_b_rvsa"``, ``"mtp:vit_b_rvsa"``, ``"imp:internimage_xl"``, any
            fine-tuned name: its backbone; :mod:`mtp.weights`); ``True`` = ``"mtp:<name>"``, the MAE/IMP + MTP
            encoder of the release. Loaded with :func:`mtp.models.load_checkpoint` (safe, resizing where needed).
        **overrides: constructor arguments replacing the official defaults.
    """
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}")
    if pretrained is True:
        pretrained = f"mtp:{name}"
    # A missing catalogue file fails here, before the (possibly large) model is built.
    path = resolve_checkpoint(pretrained) if pretrained not in (None, False) else None
    model = _BACKBONES[name](img_size=img_size, **overrides)
    if path is not None:
        from mtp.models.checkpoints import load_checkpoint

        load_checkpoint(model, path)
    return model


def merge_backbone_kwargs(overrides: Mapping[str, object], backbone_kwargs: Mapping[str, object] | None) -> dict:
    """The backbone overrides of a task-model builder: its ``**backbone_overrides`` plus an explicit
    ``backbone_kwargs`` mapping, for constructor arguments whose names the architecture also uses (InternImage
    ``channels`` next to UperNet's ``channels``). A name given both ways with different values is an error."""
    merged = dict(overrides)
    for key, value in (backbone_kwargs or {}).items():
        if key in merged and merged[key] != value:
            raise ValueError(f"backbone argument {key!r} given twice: {merged[key]!r} and {value!r} (backbone_kwargs)")
        merged[key] = value
    return merged


@register_backbone
def vit_b_rvsa(img_size: int = 224, **overrides) -> ViTRVSA:
    """ViT-B + RVSA: 768 dim, 12 blocks, 12 heads, global blocks 2/5/8/11, taps 3/5/7/11."""
    kwargs = dict(embed_dim=768, depth=12, num_heads=12, interval=3, out_indices=(3, 5, 7, 11), drop_path_rate=0.1)
    return ViTRVSA(img_size=img_size, **{**kwargs, **overrides})


@register_backbone
def vit_l_rvsa(img_size: int = 224, **overrides) -> ViTRVSA:
    """ViT-L + RVSA: 1024 dim, 24 blocks, 16 heads, global blocks 5/11/17/23, taps 7/11/15/23."""
    kwargs = dict(embed_dim=1024, depth=24, num_heads=16, interval=6, out_indices=(7, 11, 15, 23), drop_path_rate=0.1)
    return ViTRVSA(img_size=img_size, **{**kwargs, **overrides})


@register_backbone
def internimage_xl(img_size: int = 224, **overrides) -> InternImage:
    """InternImage-XL as in MTP (``Multi-Task_Pretrain/models.py`` and every fine-tuning config).

    channels 192, depths [5, 5, 24, 5], groups [12, 24, 48, 96], mlp_ratio 4, drop_path_rate 0.2,
    layer_scale 1e-5, offset_scale 2.0, post_norm True, out_indices (0, 1, 2, 3); outputs 192/384/
    768/1536 channels at strides 4/8/16/32. Overrides: any :class:`InternImage` argument, e.g.
    ``channels, depths, groups, mlp_ratio, layer_scale, offset_scale, post_norm, drop_path_rate,
    out_indices, use_checkpoint, dcn_impl``.
    """
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 1:
        raise ValueError(f"img_size must be a positive int, got {img_size!r}")
    kwargs = dict(
        channels=192,
        depths=(5, 5, 24, 5),
        groups=(12, 24, 48, 96),
        mlp_ratio=4.0,
        drop_path_rate=0.2,
        layer_scale=1e-5,
        offset_scale=2.0,
        post_norm=True,
        out_indices=(0, 1, 2, 3),
    )
    return InternImage(**{**kwargs, **overrides})


__all__ = [
    "InternImage",
    "ViTRVSA",
    "create_backbone",
    "internimage_xl",
    "list_backbones",
    "merge_backbone_kwargs",
    "register_backbone",
    "vit_b_rvsa",
    "vit_l_rvsa",
]
