"""The official *task copies* of a backbone: which constructor settings each task family used.

The official release carries one copy of ViT+RVSA per toolbox (docs/CHECKPOINTS.md#vitrvsa-copies): the
segmentation and pretraining copies (4-level pyramid, global relative-position tables), the detection copy
``RVSA_MTP_branches`` (no global tables) and the classification / change-detection copy (the 4 raw stride-16
taps, no pyramid). :func:`task_copy_overrides` adds those settings to a builder's overrides **only for
backbones whose builder returns a** :class:`~mtp.models.backbones.vit_rvsa.ViTRVSA` (read from the typed
builder's return annotation), so the task builders take any registered backbone name: an InternImage or any
other 4-map backbone gets the overrides it was given and nothing else.
"""

from __future__ import annotations

import typing

from mtp.models.backbones import _BACKBONES, list_backbones
from mtp.models.backbones.vit_rvsa import ViTRVSA

#: Task family -> ViT+RVSA constructor settings of its official copy (applied with ``setdefault``).
VIT_RVSA_COPIES: dict[str, dict[str, object]] = {
    "segmentation": {},  # mmseg RVSA_MTP: pyramid + global tables (the defaults)
    "pretraining": {},  # Multi-Task_Pretrain/backbone: same
    "detection": {"global_rel_pos": False},  # mmdet / mmrotate RVSA_MTP_branches
    "classification": {"pyramid": False, "global_rel_pos": True},  # mmpretrain RVSA_MTP: raw taps
    "change_detection": {"pyramid": False, "drop_path_rate": 0.3},  # Open-CD RVSA_MTP: raw taps
}
#: Settings a task's copy fixes: passing another value is an error (the head depends on them).
FIXED = {"classification": ("pyramid", "global_rel_pos")}


def backbone_class(name: str) -> type | None:
    """The class a registered backbone builder is annotated to return (None when it is not annotated)."""
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}")
    try:
        hints = typing.get_type_hints(_BACKBONES[name])
    except (NameError, TypeError):
        return None
    returned = hints.get("return")
    return returned if isinstance(returned, type) else None


def is_vit_rvsa(name: str) -> bool:
    """True for backbones built as :class:`ViTRVSA` (``vit_b_rvsa``, ``vit_l_rvsa``, ...)."""
    cls = backbone_class(name)
    return cls is not None and issubclass(cls, ViTRVSA)


def task_copy_overrides(name: str, task: str, overrides: dict) -> dict:
    """``overrides`` completed with the official ``task`` copy settings of backbone ``name`` (a new dict).

    Raises ValueError when ``overrides`` sets one of the copy's fixed settings to another value.
    """
    if task not in VIT_RVSA_COPIES:
        raise ValueError(f"unknown task family {task!r}; one of {sorted(VIT_RVSA_COPIES)}")
    if not is_vit_rvsa(name):
        return dict(overrides)
    copy = VIT_RVSA_COPIES[task]
    for key in FIXED.get(task, ()):
        if key in overrides and overrides[key] != copy[key]:
            raise ValueError(
                f"{key!r} is fixed for the {task} copy of {name} ({', '.join(f'{k}={v}' for k, v in copy.items())})"
            )
    return {**copy, **overrides}
