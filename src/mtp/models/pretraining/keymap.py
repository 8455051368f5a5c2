"""Official MTP whole-model checkpoint names <-> ours (docs/CHECKPOINTS.md#mtp-pretraining-files), loading and export.

Only the backbone-less decoders built from torchvision parts and the FPNs are named differently:

* ``{inssegdecoder,rotdetdecoder}.neck.lateral_convs.i.conv.*`` <-> ``….neck.fpn.inner_blocks.i.0.*``,
  ``fpn_convs.i.conv`` <-> ``fpn.layer_blocks.i.0``;
* ``inssegdecoder.rpn_head.{rpn_conv, rpn_cls, rpn_reg}`` <-> ``inssegdecoder.rpn.head.{conv.0.0, cls_logits,
  bbox_pred}``; ``inssegdecoder.roi_head.bbox_head.shared_fcs.{0,1}`` <-> ``….roi_heads.box_head.{fc6, fc7}``;
  ``….roi_head.mask_head.convs.i.conv`` <-> ``….roi_heads.mask_head.i.0``; ``….mask_head.upsample`` <->
  ``….roi_heads.mask_head.upsample``.

Everything else (``encoder.*``, ``semsegdecoder.*``, ``semseghead_k.*``, every per-dataset layer,
``rotdetdecoder.{rpn_head, roi_head}.*``) has the official name and layout already. The official ViT+RVSA encoder
carries an unused final ``norm`` (never in the forward pass, docs/CHECKPOINTS.md#vitrvsa-copies): it is ignored on
load and written as an identity LayerNorm (weight 1, bias 0) on export, so exported files have the official key
set. An InternImage encoder has exactly the official names (``patch_embed``, ``levels``; 875 tensors for XL).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from mtp.models.backbones.vit_rvsa import ViTRVSA
from mtp.models.checkpoints import LoadReport, load_composite_checkpoint
from mtp.models.pretraining.framework import MultiTaskPretrainModel

_DECODERS = r"(inssegdecoder|rotdetdecoder)"
_TO_OURS: list[tuple[str, str]] = [
    (rf"^{_DECODERS}\.neck\.lateral_convs\.(\d+)\.conv\.", r"\1.neck.fpn.inner_blocks.\2.0."),
    (rf"^{_DECODERS}\.neck\.fpn_convs\.(\d+)\.conv\.", r"\1.neck.fpn.layer_blocks.\2.0."),
    (r"^inssegdecoder\.rpn_head\.rpn_conv\.", "inssegdecoder.rpn.head.conv.0.0."),
    (r"^inssegdecoder\.rpn_head\.rpn_cls\.", "inssegdecoder.rpn.head.cls_logits."),
    (r"^inssegdecoder\.rpn_head\.rpn_reg\.", "inssegdecoder.rpn.head.bbox_pred."),
    (r"^inssegdecoder\.roi_head\.bbox_head\.shared_fcs\.0\.", "inssegdecoder.roi_heads.box_head.fc6."),
    (r"^inssegdecoder\.roi_head\.bbox_head\.shared_fcs\.1\.", "inssegdecoder.roi_heads.box_head.fc7."),
    (r"^inssegdecoder\.roi_head\.mask_head\.convs\.(\d+)\.conv\.", r"inssegdecoder.roi_heads.mask_head.\1.0."),
    (r"^inssegdecoder\.roi_head\.mask_head\.upsample\.", "inssegdecoder.roi_heads.mask_head.upsample."),
]
_TO_OFFICIAL: list[tuple[str, str]] = [
    (rf"^{_DECODERS}\.neck\.fpn\.inner_blocks\.(\d+)\.0\.", r"\1.neck.lateral_convs.\2.conv."),
    (rf"^{_DECODERS}\.neck\.fpn\.layer_blocks\.(\d+)\.0\.", r"\1.neck.fpn_convs.\2.conv."),
    (r"^inssegdecoder\.rpn\.head\.conv\.0\.0\.", "inssegdecoder.rpn_head.rpn_conv."),
    (r"^inssegdecoder\.rpn\.head\.cls_logits\.", "inssegdecoder.rpn_head.rpn_cls."),
    (r"^inssegdecoder\.rpn\.head\.bbox_pred\.", "inssegdecoder.rpn_head.rpn_reg."),
    (r"^inssegdecoder\.roi_heads\.box_head\.fc6\.", "inssegdecoder.roi_head.bbox_head.shared_fcs.0."),
    (r"^inssegdecoder\.roi_heads\.box_head\.fc7\.", "inssegdecoder.roi_head.bbox_head.shared_fcs.1."),
    (r"^inssegdecoder\.roi_heads\.mask_head\.upsample\.", "inssegdecoder.roi_head.mask_head.upsample."),
    (r"^inssegdecoder\.roi_heads\.mask_head\.(\d+)\.0\.", r"inssegdecoder.roi_head.mask_head.convs.\1.conv."),
]


def _rename(rules: list[tuple[str, str]], key: str) -> str:
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return key


def official_to_ours(key: str) -> str:
    """Official whole-model key -> ours (keys that are already ours pass unchanged)."""
    return _rename(_TO_OURS, key)


def ours_to_official(key: str) -> str:
    """Our key -> the official whole-model key."""
    return _rename(_TO_OFFICIAL, key)


def official_state_dict(model: MultiTaskPretrainModel) -> dict[str, Tensor]:
    """Whole-model state dict with official names and the official key set (ViT+RVSA: the unused ``encoder.norm``
    added; InternImage: its own names, nothing added)."""
    state = {ours_to_official(k): v.detach().cpu() for k, v in model.state_dict().items()}
    if not isinstance(model.encoder, ViTRVSA):
        return state
    dim = model.encoder.embed_dim
    encoder = {k: v for k, v in state.items() if k.startswith("encoder.")}
    encoder["encoder.norm.weight"], encoder["encoder.norm.bias"] = torch.ones(dim), torch.zeros(dim)
    return {**encoder, **{k: v for k, v in state.items() if not k.startswith("encoder.")}}


def encoder_state_dict(model: MultiTaskPretrainModel) -> dict[str, Tensor]:
    """Encoder-only file content (``*_encoder.pth``): official backbone names without prefix."""
    return {k[len("encoder.") :]: v for k, v in official_state_dict(model).items() if k.startswith("encoder.")}


def load_mtp_checkpoint(
    model: MultiTaskPretrainModel,
    path: str | Path,
    *,
    strict: bool = True,
    optional: Callable[[str], bool] | None = None,
) -> LoadReport:
    """Load an official MTP whole-model file (``Iter_*_pretrn_model.pth``) or an mtp checkpoint of this model.

    The encoder is adapted like any backbone file (pos_embed / global tables resized to this image size).
    Per-dataset layers of datasets or tasks this model does not have are reported as unexpected (an error
    with ``strict=True``; ``strict=False`` loads the rest, e.g. to continue on a subset).
    """

    def is_optional(key: str) -> bool:
        return optional is not None and optional(key)

    decoder = {"ss": "semsegdecoder.", "is": "inssegdecoder.", "rd": "rotdetdecoder."}[model.tasks[0]]
    return load_composite_checkpoint(
        model, path, required_prefix=decoder, key_map=official_to_ours, optional=is_optional,
        backbone_prefix="encoder.", strict=strict,
    )  # fmt: skip
