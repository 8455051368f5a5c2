"""Layer-wise lr decay for InternImage: the official CustomLayerDecayOptimizerConstructor_InternImage rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtp.models import create_backbone
from mtp.tasks.optim import build_adamw, internimage_layer_id, layer_decay_param_groups

TINY = dict(channels=16, depths=(1, 1, 2, 1), groups=(1, 2, 4, 8))

# depths (1, 1, 2, 1): num_layers 5, L = 7; computed by hand from get_num_layer_for_swin.
HAND_LAYER_IDS = {
    "patch_embed": 0,
    "levels.0.blocks.0": 1,
    "levels.0.downsample": 2,  # 1 + d0
    "levels.1.blocks.0": 2,  # 0 + 1 + d0
    "levels.1.downsample": 3,  # 1 + d0 + d1
    "levels.2.blocks.0": 3,
    "levels.2.blocks.1": 4,
    "levels.2.downsample": 5,  # 1 + d0 + d1 + d2
    "levels.3.blocks.0": 5,  # 0 + 1 + d0 + d1 + d2
}


class Segmentor(nn.Module):
    """``<prefix>`` backbone + a head whose names the official rule treats specially."""

    def __init__(self, backbone_name: str = "backbone") -> None:
        super().__init__()
        self.add_module(backbone_name, create_backbone("internimage_xl", **TINY))
        self.decode_head = nn.ModuleDict({"conv_seg": nn.Conv2d(16, 4, 1), "norm_proj": nn.Linear(4, 4)})


def hand_layer_id(name: str, prefix: str) -> int:
    inner = name[len(prefix) :]
    for stem, layer in HAND_LAYER_IDS.items():
        if name.startswith(prefix) and inner.startswith(stem + "."):
            return layer
    return 6


@pytest.mark.parametrize("prefix", ["backbone.", "encoder."])
def test_every_parameter_gets_the_hand_computed_lr_and_weight_decay(prefix):
    model = Segmentor(prefix.rstrip("."))
    groups = layer_decay_param_groups(model, lr=2e-5, weight_decay=0.05, layer_decay=0.94, prefix=prefix)
    seen = {}
    for group in groups:
        for name, param in zip(group["param_names"], group["params"], strict=True):
            seen[name] = (group["lr"], group["weight_decay"], group["layer_id"])
            assert param is model.get_parameter(name)
    assert set(seen) == {n for n, _ in model.named_parameters()}
    for name, param in model.named_parameters():
        layer = hand_layer_id(name, prefix)
        no_wd = param.ndim == 1 or name.endswith(".bias") or "norm" in name
        assert seen[name][2] == layer, name
        assert seen[name][0] == pytest.approx(2e-5 * 0.94 ** (6 - layer), rel=1e-12), name
        assert seen[name][1] == (0.0 if no_wd else 0.05), name
    assert seen["decode_head.norm_proj.weight"][1] == 0.0  # 2-D, but named 'norm': official no-decay rule
    assert seen[f"{prefix}levels.0.blocks.0.dcn.offset.weight"][1] == 0.05


def test_xl_layer_ids_and_first_group_scale():
    depths = (5, 5, 24, 5)
    assert internimage_layer_id("backbone.patch_embed.conv1.weight", 39, depths) == 0
    assert internimage_layer_id("backbone.levels.0.blocks.4.mlp.fc1.weight", 39, depths) == 5
    assert internimage_layer_id("backbone.levels.1.blocks.0.gamma1", 39, depths) == 6
    assert internimage_layer_id("backbone.levels.2.blocks.23.dcn.offset.weight", 39, depths) == 34
    assert internimage_layer_id("backbone.levels.2.downsample.conv.weight", 39, depths) == 35
    assert internimage_layer_id("backbone.levels.3.blocks.4.norm2.0.bias", 39, depths) == 39
    assert internimage_layer_id("backbone.levels.3.norm.0.weight", 39, depths) == 35  # official: stage 3 like 2
    assert internimage_layer_id("neck.lateral_convs.0.conv.weight", 39, depths) == 40
    assert internimage_layer_id("encoder.patch_embed.conv1.weight", 39, depths) == 40  # other prefix: head
    with torch.device("meta"):
        model = nn.Module()
        model.backbone = create_backbone("internimage_xl")
    groups = layer_decay_param_groups(model, lr=1.0, weight_decay=0.05, layer_decay=0.94)
    assert groups[0]["layer_id"] == 0 and groups[0]["lr"] == pytest.approx(0.94**40)
    assert groups[-1]["layer_id"] == 39 and groups[-1]["lr"] == pytest.approx(0.94)


def test_no_decay_reproduces_the_released_fine_tuning_runs():
    """The released configs matched 'encoder.' against 'backbone.' names: every lr = base lr."""
    model = Segmentor()
    groups = layer_decay_param_groups(model, lr=1e-4, weight_decay=0.05, layer_decay=None)
    assert {g["lr"] for g in groups} == {1e-4}
    names = {n for g in groups if g["weight_decay"] == 0.0 for n in g["param_names"]}
    assert "decode_head.norm_proj.weight" in names and "backbone.levels.0.blocks.0.gamma1" in names


def test_adamw_over_the_backbone_alone_takes_a_step():
    backbone = create_backbone("internimage_xl", **TINY)
    optimizer = build_adamw(backbone, lr=1e-3, weight_decay=0.05, layer_decay=0.5, prefix="")
    lrs = {g["group_name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["layer_0_decay"] == pytest.approx(1e-3 * 0.5**6)
    assert lrs["layer_5_no_decay"] == pytest.approx(1e-3 * 0.5)
    before = backbone.levels[0].blocks[0].mlp.fc1.weight.detach().clone()
    sum(f.sum() for f in backbone(torch.randn(1, 3, 32, 32))).backward()
    optimizer.step()
    assert not torch.equal(before, backbone.levels[0].blocks[0].mlp.fc1.weight)
