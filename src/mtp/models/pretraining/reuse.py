"""Decoder reuse: a pretraining checkpoint -> a fine-tuning checkpoint (``mtp tool reuse-decoder``).

Input: an official whole-model file (``Iter_*_pretrn_model.pth`` / ``last_*``), one written by
:class:`mtp.tasks.pretraining_checkpoints.OfficialPretrainCheckpoints`, or a Lightning checkpoint of
:class:`mtp.tasks.pretraining.MultiTaskPretrainingTask` (``model.*`` names). Output ``{"state_dict": ...}``
in the official fine-tuning names, which the matching ``load_from`` of our tasks (and the official configs)
accept:

* ``rd`` -> Oriented R-CNN (mmrotate 1.x): ``backbone.*``, ``neck.*``, ``rpn_head.*``,
  ``roi_head.bbox_head.shared_fcs.*``. ``official=True`` reproduces ``scripts/change_ckpt.py`` exactly
  (every ``encoder`` substring -> ``backbone``, ``rotdetdecoder.`` removed, all other keys kept; that file
  only loads non-strictly, as mmengine does). docs/CHECKPOINTS.md#decoder-reuse.
* ``is`` -> Mask R-CNN (mmdet): ``backbone``, ``neck``, ``rpn_head``, ``roi_head.bbox_head.shared_fcs``,
  ``roi_head.mask_head.{convs, upsample}``; ``hd`` -> the same without the mask head (Faster R-CNN, DIOR).
* ``ss`` -> UperNet (mmseg): ``backbone.*`` and ``decode_head.*`` (the 256-channel pretraining trunk: set
  ``decode_channels: 256`` in the fine-tuning config; the official 512-channel configs cannot take it).

``dataset`` (``sota``/``sior``/``fast``) also copies that dataset's final layers into the fine-tuning
classifier (``fc_cls``/``fc_reg``/``conv_logits``/``conv_seg``), e.g. SIOR -> DIOR-R or DIOR, which share the
class order (docs/CHECKPOINTS.md#mtp-pretraining-files). Without it the final layers are absent and the
fine-tuning loaders keep their fresh initialisation (logged).
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from mtp.models.checkpoint_reader import CheckpointError, extract_state_dict, read_checkpoint
from mtp.models.pretraining.framework import DATASET_INDEX
from mtp.models.pretraining.keymap import ours_to_official
from mtp.weights import resolve_checkpoint

REUSE_TASKS = ("rd", "is", "hd", "ss")


def official_pretrain_state(path: str | Path) -> dict[str, Tensor]:
    """Any supported pretraining checkpoint -> whole-model state dict with official names."""
    path = resolve_checkpoint(path)
    state = extract_state_dict(read_checkpoint(path), path)
    state = {ours_to_official(k.removeprefix("module.").removeprefix("model.")): v for k, v in state.items()}
    if not any(k.startswith("encoder.") for k in state) or not any(
        k.startswith(("semsegdecoder.", "inssegdecoder.", "rotdetdecoder.")) for k in state
    ):
        raise CheckpointError(f"{path}: not an MTP pretraining checkpoint (needs encoder.* and a task decoder)")
    return state


def change_ckpt(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The official ``scripts/change_ckpt.py`` renaming (docs/CHECKPOINTS.md#decoder-reuse), key for key."""
    out = {}
    for key, value in state.items():
        if "encoder" in key:
            key = key.replace("encoder", "backbone")
        elif "rotdetdecoder" in key:
            key = key.replace("rotdetdecoder.", "")
        out[key] = value
    return out


def _take(state: dict[str, Tensor], prefix: str, new_prefix: str, skip: str | None = None) -> dict[str, Tensor]:
    return {
        new_prefix + k[len(prefix) :]: v
        for k, v in state.items()
        if k.startswith(prefix) and not (skip and re.search(skip, k))
    }


def reuse_decoder(
    path: str | Path, task: str, *, dataset: str | None = None, official: bool = False
) -> dict[str, Tensor]:
    """Fine-tuning state dict for ``task`` (see the module docstring)."""
    if task not in REUSE_TASKS:
        raise ValueError(f"task must be one of {REUSE_TASKS}, got {task!r}")
    if dataset is not None and dataset not in DATASET_INDEX:
        raise ValueError(f"dataset must be one of {tuple(DATASET_INDEX)}, got {dataset!r}")
    state = official_pretrain_state(path)
    if official:
        if task != "rd" or dataset is not None:
            raise ValueError("official=True is the change_ckpt.py conversion: task 'rd' only, no dataset")
        return change_ckpt(state)
    decoder = {"rd": "rotdetdecoder.", "is": "inssegdecoder.", "hd": "inssegdecoder.", "ss": "semsegdecoder."}[task]
    if not any(k.startswith(decoder) for k in state):
        raise CheckpointError(f"{path}: has no {decoder}* tensors (was '{task}' among the pretraining tasks?)")
    out = _take(state, "encoder.", "backbone.", skip=r"^encoder\.norm\.")
    k = DATASET_INDEX.get(dataset or "", 0)
    if task == "ss":
        out.update(_take(state, "semsegdecoder.decode_head.", "decode_head.", skip=r"\.conv_seg\."))
        heads = {"decode_head.conv_seg.": f"semseghead_{k}.1."}
    else:
        skip = r"\.mask_head\." if task == "hd" else None
        out.update(_take(state, decoder, "", skip=skip))
        prefix = "rotdet" if task == "rd" else "insseg"
        heads = {"roi_head.bbox_head.fc_cls.": f"{prefix}roiboxhead_fc_cls{k}.",
                 "roi_head.bbox_head.fc_reg.": f"{prefix}roiboxhead_fc_reg{k}."}  # fmt: skip
        if task == "is":
            heads["roi_head.mask_head.conv_logits."] = f"inssegroimaskhead_conv{k}."
    if dataset is not None:
        for target, source in heads.items():
            taken = _take(state, source, target)
            if not taken:
                raise CheckpointError(f"{path}: no {source}* tensors for dataset {dataset!r}")
            out.update(taken)
    return out
