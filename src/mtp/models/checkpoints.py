"""Loading official and mtp checkpoints into backbones.

Accepted layouts (docs/CHECKPOINTS.md#official-file-layouts, docs/CHECKPOINTS.md#vitrvsa-copies):

* MAE pretraining files: weights under ``model``, ``cls_token`` + a (1, 1 + 14*14, D)
  ``pos_embed``, MAE decoder, ``norm``; the position grid is resized (bicubic) to the model's;
* MTP encoder-only files: ``state_dict`` with backbone names (``norm.*`` unused), optional
  ``module.`` prefix;
* MTP whole-model pretraining files: ``encoder.*`` is extracted, the decoders are ignored;
* fine-tuned OpenMMLab files (mmseg / mmdet / mmrotate / mmpretrain / open-cd): ``backbone.*``;
* plain backbone state dicts (what ``model.state_dict()`` gives), ``.pth`` or ``.safetensors``;
* InternImage: the ImageNet classification file the official pretraining starts from
  (``internimage_xl_22kto1k_384.pth``: weights under ``model``; its classifier ``conv_head.*`` /
  ``head.*`` is dropped), and the MTP encoder / whole-model / fine-tuned layouts above.

Global-attention relative-position tables are resized to the model's (2S-1) length (official
bicubic rule). Files are read without executing pickled code (:mod:`checkpoint_reader`).

Errors name the file and the first offending keys and shapes: a file that is not a
checkpoint, has no parameter of the model, or belongs to another architecture or size.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from mtp.models.backbones.internimage import InternImage
from mtp.models.backbones.vit_rvsa import ViTRVSA
from mtp.models.checkpoint_reader import CheckpointError, extract_state_dict, read_checkpoint
from mtp.ops.rel_pos import resize_pos_embed, resize_rel_pos_table
from mtp.weights import resolve_checkpoint

log = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "LoadReport",
    "adapt_backbone_state",
    "apply_state_dict",
    "backbone_state_dict",
    "is_optional_backbone_key",
    "load_checkpoint",
]

# Keys a ViT+RVSA checkpoint may carry that no ViT+RVSA backbone uses (MAE extras, heads, the
# unused final norm of the pretraining / classification copies).
_VIT_IGNORED = re.compile(r"^(cls_token|mask_token|dist_token|decoder.*|norm\..*|fc_norm\..*|head\..*)$")
# Parameters a valid ViT+RVSA source may lack: RVSA-only parameters (absent from MAE files),
# global tables (absent from detection copies) and the pyramid adapters.
_VIT_OPTIONAL = re.compile(
    r"^(blocks\.\d+\.attn\.(rel_pos_[hw]|relative_position_bias_table|relative_position_index"
    r"|sampling_(offsets|scales|angles)\..*|full_attn_rel_pos_[hw])|fpn[1-4]\..*)$"
)

# Keys of InternImage classification files (official InternImage ``classification/models/intern_image.py``:
# conv_head + head for T..XL; the H/G CLIP projector heads) that are not part of the backbone.
_INTERNIMAGE_IGNORED = re.compile(r"^(conv_head|head|fc_norm|clip_projector|dcnv3_head_x[34])\..*$")


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did. ``missing_keys``/``unexpected_keys`` as in torch."""

    path: Path
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)
    resized_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[str] = field(default_factory=list)


def backbone_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Backbone parameters of a checkpoint state dict, with container prefixes removed.

    ``module.`` (DDP) is stripped; then the ``encoder.`` namespace (MTP whole-model files) or
    the ``backbone.`` namespace (fine-tuned OpenMMLab files) is selected when present.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for namespace in ("encoder.", "backbone."):
        if any(k.startswith(namespace) for k in state):
            return {k[len(namespace) :]: v for k, v in state.items() if k.startswith(namespace)}
    return state


def _vit_ignorable(model: ViTRVSA, key: str) -> bool:
    """Keys of valid ViT+RVSA sources that this particular copy does not use."""
    if _VIT_IGNORED.match(key):
        return True
    if key.startswith(("fpn1.", "fpn2.")) and not model.pyramid:
        return True  # classification / change-detection copies keep unused fpn weights
    table = re.match(r"blocks\.(\d+)\.attn\.full_attn_rel_pos_[hw]$", key)
    return bool(table and not model.global_rel_pos and model.is_global_block(int(table[1])))


def _adapt_vit_rvsa(model: ViTRVSA, state: dict[str, Tensor], report: LoadReport) -> dict[str, Tensor]:
    """Resize pos_embed / global tables, drop keys this copy does not use, handle in_chans != 3."""
    own = model.state_dict()
    adapted: dict[str, Tensor] = {}
    for key, value in state.items():
        if _vit_ignorable(model, key):
            report.ignored_keys.append(key)
            continue
        if key == "pos_embed" and key in own:
            value = _resize_checkpoint_pos_embed(value, model.grid_size, report.path)
            if value.shape != state[key].shape:
                report.resized_keys.append(key)
        elif _is_resizable_table(key, value, own):
            value = resize_rel_pos_table(value, own[key].shape[0])
            report.resized_keys.append(key)
        elif _differs_in_input_channels_only(key, value, own):
            log.warning(  # official rule for in_chans != 3: the patch embedding is not loaded
                "%s: patch_embed.proj has %d input channels, the model %d: not loaded",
                report.path,
                value.shape[1],
                own[key].shape[1],
            )
            report.ignored_keys += ["patch_embed.proj.weight", "patch_embed.proj.bias"]
            continue
        adapted[key] = value
    if "patch_embed.proj.weight" in report.ignored_keys:
        adapted.pop("patch_embed.proj.bias", None)
    return adapted


def _is_resizable_table(key: str, value: Tensor, own: dict[str, Tensor]) -> bool:
    """A global rel-pos table of another length (other img_size), same head dim."""
    if "full_attn_rel_pos_" not in key or key not in own or value.ndim != 2:
        return False
    return value.shape != own[key].shape and value.shape[1] == own[key].shape[1]


def _differs_in_input_channels_only(key: str, value: Tensor, own: dict[str, Tensor]) -> bool:
    if key != "patch_embed.proj.weight" or key not in own or value.ndim != 4:
        return False
    mine = own[key].shape
    return value.shape[1] != mine[1] and value.shape[0] == mine[0] and value.shape[2:] == mine[2:]


def _resize_checkpoint_pos_embed(pos: Tensor, grid: tuple[int, int], path: Path) -> Tensor:
    """(1, extra + s*s, D) -> (1, H*W, D): drop a class token, resize the square grid."""
    if pos.ndim != 3 or pos.shape[0] != 1:
        raise CheckpointError(f"{path}: pos_embed has shape {tuple(pos.shape)}, expected (1, N, D)")
    n = pos.shape[1]
    side = math.isqrt(n)
    extra = n - side * side
    if extra not in (0, 1):
        side = math.isqrt(n - 1)
        extra = n - side * side
        if extra != 1:
            raise CheckpointError(f"{path}: pos_embed with {n} tokens is neither a square grid nor 1 + square")
    return resize_pos_embed(pos[:, extra:], (side, side), grid)


def load_checkpoint(model: nn.Module, path: str | Path, *, strict: bool = True) -> LoadReport:
    """Load a checkpoint file into a backbone (see the module docstring for layouts).

    Args:
        model: the backbone (e.g. from :func:`mtp.models.create_backbone`).
        path: ``.pth`` / ``.pt`` / ``.ckpt`` / ``.safetensors`` file, or a catalogue name (``mtp:vit_b_rvsa``,
            :mod:`mtp.weights`) resolved under ``$MTP_HOME``.
        strict: if True (default), raise :class:`CheckpointError` when the file has parameters
            the model does not know, lacks core parameters, or has tensors of other shapes.
            If False, such tensors are skipped and listed in the report.

    Returns:
        A :class:`LoadReport` (``missing_keys``, ``unexpected_keys``, ``ignored_keys``,
        ``resized_keys``, ``mismatched_keys``).
    """
    path = resolve_checkpoint(path)
    report = LoadReport(path=path)
    state = backbone_state_dict(extract_state_dict(read_checkpoint(path), path))
    state = adapt_backbone_state(model, state, report)
    return apply_state_dict(model, state, report, strict=strict, optional=lambda k: is_optional_backbone_key(model, k))


def adapt_backbone_state(model: nn.Module, state: dict[str, Tensor], report: LoadReport) -> dict[str, Tensor]:
    """Backbone-specific adaptation (resizing, keys a copy does not use); identity for others."""
    if isinstance(model, ViTRVSA):
        return _adapt_vit_rvsa(model, state, report)
    if isinstance(model, InternImage):
        report.ignored_keys += [k for k in state if _INTERNIMAGE_IGNORED.match(k)]
        return {k: v for k, v in state.items() if not _INTERNIMAGE_IGNORED.match(k)}
    return state


def is_optional_backbone_key(model: nn.Module, key: str) -> bool:
    """Parameters a valid source for this backbone may lack (e.g. RVSA-only ones in MAE files)."""
    return isinstance(model, ViTRVSA) and bool(_VIT_OPTIONAL.match(key))


def apply_state_dict(
    model: nn.Module,
    state: dict[str, Tensor],
    report: LoadReport,
    *,
    strict: bool,
    optional: Callable[[str], bool],
) -> LoadReport:
    """Check ``state`` against ``model`` and load what fits (see :func:`load_checkpoint`)."""
    path, own = report.path, model.state_dict()
    if not any(k in own for k in state):
        sample = ", ".join(list(state)[:5])
        raise CheckpointError(f"{path}: none of its {len(state)} tensors belong to this model (first keys: {sample})")
    mismatched = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    report.mismatched_keys = mismatched
    report.unexpected_keys = [k for k in state if k not in own]
    report.missing_keys = [k for k in own if k not in state]
    core_missing = [k for k in report.missing_keys if k not in report.ignored_keys and not optional(k)]
    if strict and (mismatched or report.unexpected_keys or core_missing):
        problems = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:5]]
        problems += [f"{k}: not in the model" for k in report.unexpected_keys[:5]]
        problems += [f"{k}: missing from the file" for k in core_missing[:5]]
        hint = _class_count_hint(state, own, mismatched)
        raise CheckpointError(
            f"{path}: does not fit {type(model).__name__} ({len(mismatched)} shape mismatches, "
            f"{len(report.unexpected_keys)} unknown, {len(core_missing)} missing core tensors){hint}; first: "
            + "; ".join(problems)
        )
    loadable = {k: v for k, v in state.items() if k in own and k not in mismatched}
    with torch.no_grad():
        model.load_state_dict(loadable, strict=False)
    log.info(
        "%s: loaded %d tensors (%d resized, %d ignored, %d missing, %d unexpected, %d mismatched)",
        path,
        len(loadable),
        len(report.resized_keys),
        len(report.ignored_keys),
        len(report.missing_keys),
        len(report.unexpected_keys),
        len(mismatched),
    )
    return report


def _class_count_hint(state: dict[str, Tensor], own: dict[str, Tensor], mismatched: list[str]) -> str:
    """' (checkpoint for 7 classes, model has 2)' when a classifier layer is what differs."""
    for key in mismatched:
        if key.endswith(("conv_seg.weight", "fc_cls.weight", "cls_score.weight", "fc.weight")):
            background = 1 if key.endswith(("fc_cls.weight", "cls_score.weight")) else 0  # R-CNN: + background
            theirs, ours = state[key].shape[0] - background, own[key].shape[0] - background
            return f" (checkpoint for {theirs} classes, model has {ours}: {key})"
    return ""


def load_composite_checkpoint(
    model: nn.Module,
    path: str | Path,
    *,
    required_prefix: str,
    key_map: Callable[[str], str] | None = None,
    convert: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
    optional: Callable[[str], bool] | None = None,
    backbone_prefix: str = "backbone.",
    strict: bool = True,
) -> LoadReport:
    """Load a whole model (segmentor, detector) whose encoder sits under ``backbone_prefix`` from one file.

    ``path``: a file or a catalogue name (:mod:`mtp.weights`). Removes ``module.`` / ``model.`` prefixes (DDP,
    Lightning), applies ``key_map`` (official names ->
    ours) and then ``convert`` (whole-dict tensor rewrites, e.g. classifier row orders), requires at
    least one ``required_prefix`` key (else the file is probably backbone-only), adapts the encoder
    part like :func:`load_checkpoint`, then checks and loads everything. ``optional(key)`` marks
    non-encoder keys that may be absent from the file.
    """
    path = resolve_checkpoint(path)
    report = LoadReport(path=path)
    state = extract_state_dict(read_checkpoint(path), path)
    key_map = key_map or (lambda key: key)
    state = {key_map(k.removeprefix("module.").removeprefix("model.")): v for k, v in state.items()}
    if convert is not None:
        state = convert(state)
    if not any(k.startswith(required_prefix) for k in state):
        raise CheckpointError(
            f"{path}: has no {required_prefix}* tensors; for backbone-only files (MAE / MTP encoder) use the "
            "backbone's pretrained= / mtp.models.load_checkpoint"
        )
    prefix = backbone_prefix
    encoder = model.get_submodule(prefix.rstrip("."))
    part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    part = adapt_backbone_state(encoder, part, report)
    report.ignored_keys = [prefix + k for k in report.ignored_keys]
    report.resized_keys = [prefix + k for k in report.resized_keys]
    merged = {prefix + k: v for k, v in part.items()}
    merged.update({k: v for k, v in state.items() if not k.startswith(prefix)})

    def is_optional(key: str) -> bool:
        if key.startswith(prefix):
            return is_optional_backbone_key(encoder, key[len(prefix) :])
        return optional is not None and optional(key)

    return apply_state_dict(model, merged, report, strict=strict, optional=is_optional)
