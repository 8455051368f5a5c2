"""Shared by the InternImage task tests: the tiny InternImage, the official InternImage-XL configs and the key
layout of the official InternImage-XL fine-tuned / pretraining files.

The head keys of the official files are those of the ViT-B files listed in tests/data/official_keys (the heads do
not depend on the backbone) with the shapes that do: every layer reading a backbone map takes the XL channels
192 / 384 / 768 / 1536 (the official configs' ``in_channels=[192, 384, 768, 1536]``), and the class-dependent layers
the dataset's class count.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch
import yaml
from torch import nn

from mtp.models.detectors.horizontal.keymap import mmdet_rcnn_key, mmdet_retinanet_key
from mtp.models.detectors.oriented_rcnn.model import official_to_ours
from mtp.models.pretraining import ours_to_official
from tests.conftest import REPO
from tests.official_keys import official_keys

#: A 5-block InternImage with the XL layout (post-norm, layer scale, offset scale 2, 16 channels per DCNv3 group).
TINY = {"channels": 16, "depths": [1, 1, 2, 1], "groups": [1, 2, 4, 8], "drop_path_rate": 0.0}
XL_IN = (192, 384, 768, 1536)

_TF = "RS_Tasks_Finetune/"
#: Every InternImage config of the official repository (RS_Tasks_Finetune/*/configs/mtp/**/*intern*).
OFFICIAL_CONFIGS = [
    *(f"{_TF}Change_Detection/configs/mtp/{d}/intern-xl-unet-{s}-imp{m}_{d}{x}.py"
      for d, s, x in (("cdd", 256, ""), ("levir", 256, ""), ("whu", 256, ""), ("oscd", 96, "_rgb"))
      for m in ("", "-mtp")),
    *(f"{_TF}Horizontal_Detection/configs/mtp/{d}/{a}_intern_xl_{s}_imp{m}_{d}.py"
      for d, a, s in (("dior", "faster_rcnn", 800), ("xview", "retinanet", 416)) for m in ("", "_mtp")),
    *(f"{_TF}Rotated_Detection/{v}/configs/mtp/{d}/oriented_rcnn_intern_xl_{s}_imp{m}_{k}.py"
      for v, d, s, k in (("mmrotate0.3.4", "dotav1", 1024, "dota10"), ("mmrotate0.3.4", "fair1m20", 800, "fair1m20"),
                         ("mmrotate1.x", "dior-r", 800, "diorr"), ("mmrotate1.x", "dotav1", 1024, "dota10"),
                         ("mmrotate1.x", "dotav2", 1024, "dota20"), ("mmrotate1.x", "fair1m20", 800, "fair1m20"))
      for m in ("", "_mtp")),
    *(f"{_TF}Scene_Classification/configs/mtp/{d}/intern-xl-224-imp{m}_{f}.py"
      for d, f in (("eurosat", "eurosat"), ("resisc45", "nwpu28")) for m in ("", "-mtp")),
    *(f"{_TF}Semantic_Segmentation/configs/mtp/{d}/intern-xl-upernet-{s}-imp{m}-{d}.py"
      for d, s in (("loveda", 512), ("spacenetv1", 384)) for m in ("", "-mtp")),
]  # fmt: skip
#: The official with_cp per family (True only in the detection configs and pretraining).
WITH_CP = {"detection/faster": True, "detection/retinanet": False, "rotated_detection": True, "segmentation": False,
           "classification": False, "change_detection": False, "pretraining": True}  # fmt: skip


def twins() -> list[Path]:
    """The YAML twins of the official InternImage-XL runs (not the tiny CPU configs)."""
    return sorted(p for p in (REPO / "configs").rglob("*.yaml") if "intern" in p.stem and not p.stem.startswith("tiny"))


def twin_official(config: Path) -> tuple[str, list[str]]:
    """(the official config the twin cites, other official copies it names)."""
    lines = config.read_text().splitlines()
    first = re.match(r"# Twin of (RS_Tasks_Finetune/\S+\.py)$", lines[0])
    copies = [m[1] for line in lines if (m := re.search(r"copy of the same run: (\S+\.py)$", line))]
    return (first[1] if first else lines[0]), copies


def model_args(config: Path) -> tuple[type, dict]:
    """(task class, its init_args) from a config."""
    spec = yaml.safe_load(config.read_text())["model"]
    module, name = spec["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name), dict(spec["init_args"])


def build_on_meta(config: Path) -> nn.Module:
    """The task model of ``config`` at official size on the meta device (its ``pretrained`` file left out)."""
    task_cls, args = model_args(config)
    args.pop("pretrained", None)
    with torch.device("meta"):
        return task_cls(**args).model


def task_from_config(config: Path, **overrides) -> nn.Module:
    """The task of ``config`` built in Python with ``overrides`` of its init_args (e.g. ``load_from``)."""
    task_cls, args = model_args(config)
    return task_cls(**{**args, **overrides})


def assert_same_weights(model: nn.Module, expected: dict[str, torch.Tensor], skip_rows: dict[str, int] | None = None):
    """``model``'s tensors equal ``expected`` (our names); ``skip_rows``: leading rows a loader fills itself
    (torchvision's background box, absent from mmdet files)."""
    own = model.state_dict()
    assert own.keys() == expected.keys()
    for key, value in expected.items():
        rows = (skip_rows or {}).get(key.rsplit(".", 1)[0], 0)
        torch.testing.assert_close(own[key][rows:], value[rows:], rtol=0, atol=0, msg=key)


def _replace(shapes: dict, updates: dict) -> dict:
    for key, shape in updates.items():
        assert key in shapes, key
        shapes[key] = shape
    return shapes


def official_xl_layout(arch: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of the official InternImage-XL file of ``arch`` (toolbox names): backbone + heads."""
    k = num_classes
    backbone = "encoder." if arch == "mtp" else "backbone."
    shapes = {backbone + key: shape for key, shape in official_keys("internimage_xl_keys").items()}
    lateral = {f"neck.lateral_convs.{i}.conv.weight": (256, c, 1, 1) for i, c in enumerate(XL_IN)}
    if arch == "upernet":
        head = official_keys("upernet_loveda_vit_b")
        updates = {f"decode_head.psp_modules.{i}.1.conv.weight": (512, 1536, 1, 1) for i in range(4)}
        updates |= {f"decode_head.lateral_convs.{i}.conv.weight": (512, c, 1, 1) for i, c in enumerate(XL_IN[:3])}
        updates |= {"decode_head.bottleneck.conv.weight": (512, 3584, 3, 3),
                    "decode_head.conv_seg.weight": (k, 512, 1, 1), "decode_head.conv_seg.bias": (k,)}  # fmt: skip
    elif arch == "changenet":
        head = official_keys("unet_cd_vit_b")
        updates = {"decode_head.blocks.0.conv1.0.weight": (512, 2304, 3, 3),
                   "decode_head.blocks.1.conv1.0.weight": (256, 896, 3, 3),
                   "decode_head.blocks.2.conv1.0.weight": (128, 448, 3, 3)}  # fmt: skip
    elif arch == "classifier":
        head, updates = {"head.fc.weight": (k, 1536), "head.fc.bias": (k,)}, {}
    elif arch in ("faster_rcnn", "oriented_rcnn"):
        head = official_keys("faster_rcnn_dior_vit_b" if arch == "faster_rcnn" else "oriented_rcnn_diorr_vit_b")
        reg = 4 * k if arch == "faster_rcnn" else 5
        box = "roi_head.bbox_head."
        updates = lateral | {f"{box}fc_cls.weight": (k + 1, 1024), f"{box}fc_cls.bias": (k + 1,),
                             f"{box}fc_reg.weight": (reg, 1024), f"{box}fc_reg.bias": (reg,)}  # fmt: skip
    elif arch == "retinanet":  # laterals from the stride-8 map on, P6 on the raw stride-32 map
        head = official_keys("retinanet_xview_vit_b")
        updates = {f"neck.lateral_convs.{i}.conv.weight": (256, c, 1, 1) for i, c in enumerate(XL_IN[1:])}
        updates |= {"neck.fpn_convs.3.conv.weight": (256, 1536, 3, 3),
                    "bbox_head.retina_cls.weight": (9 * k, 256, 3, 3),
                    "bbox_head.retina_cls.bias": (9 * k,)}  # fmt: skip
    elif arch == "mtp":
        head = official_keys("mtp_whole_model_decoders_vit_b")
        ss = "semsegdecoder.decode_head."
        updates = {f"{ss}psp_modules.{i}.1.conv.weight": (256, 1536, 1, 1) for i in range(4)}
        updates |= {f"{ss}lateral_convs.{i}.conv.weight": (256, c, 1, 1) for i, c in enumerate(XL_IN[:3])}
        updates |= {f"{ss}bottleneck.conv.weight": (256, 2560, 3, 3)}
        updates |= {f"{d}.{key}": shape for d in ("inssegdecoder", "rotdetdecoder") for key, shape in lateral.items()}
    else:
        raise ValueError(arch)
    return shapes | _replace(dict(head), updates)


def our_layout_in_official_names(arch: str, model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Our model's ``{key: shape}`` renamed to the toolbox names (the inverse of the loaders' key maps), with
    torchvision's background rows removed (what an official file holds)."""
    ours = {key: tuple(v.shape) for key, v in model.state_dict().items()}
    if arch in ("upernet", "changenet", "classifier"):
        return ours
    if arch == "mtp":
        return {ours_to_official(key): shape for key, shape in ours.items()}
    if arch == "oriented_rcnn":
        inverse = {official_to_ours(key): key for key in official_keys("oriented_rcnn_diorr_vit_b")}
        return {inverse.get(key, key): shape for key, shape in ours.items()}
    forward = mmdet_rcnn_key if arch == "faster_rcnn" else mmdet_retinanet_key
    listed = official_keys("faster_rcnn_dior_vit_b" if arch == "faster_rcnn" else "retinanet_xview_vit_b")
    inverse = {forward(key): key for key in listed}
    out = {}
    for key, shape in ours.items():
        if key.startswith("backbone.body."):
            out["backbone." + key[len("backbone.body.") :]] = shape
            continue
        name = inverse.get(key, key)
        if name.startswith("roi_head.bbox_head.fc_reg"):  # torchvision's extra background box
            shape = (shape[0] - 4, *shape[1:])
        out[name] = shape
    return out
