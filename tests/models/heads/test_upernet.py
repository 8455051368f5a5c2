"""UperNet / FCN heads: official mmseg names and shapes, structure, output resolution."""

from __future__ import annotations

import pytest
import torch

from mtp.models.heads.fcn import FCNHead
from mtp.models.heads.upernet import UPerHead
from tests.official_keys import official_keys


def official_decode_head_keys() -> list[tuple[str, tuple[int, ...]]]:
    """The 74 decode_head entries of the ViT-B LoveDA checkpoint."""
    keys = official_keys("upernet_loveda_vit_b")
    return [(k.removeprefix("decode_head."), shape) for k, shape in keys.items()]


def test_state_dict_equals_the_official_loveda_head_in_names_shapes_and_order():
    head = UPerHead([768] * 4, num_classes=7)
    ours = [(k, tuple(v.shape)) for k, v in head.state_dict().items()]
    assert ours == official_decode_head_keys()


@pytest.mark.parametrize(
    "in_channels,key,shape",
    [
        ([1024] * 4, "bottleneck.conv.weight", (512, 3072, 3, 3)),
        ([192, 384, 768, 1536], "lateral_convs.1.conv.weight", (512, 384, 1, 1)),
        ([192, 384, 768, 1536], "bottleneck.conv.weight", (512, 3584, 3, 3)),
    ],
)
def test_other_backbones_change_only_the_input_shapes(in_channels, key, shape):
    assert tuple(UPerHead(in_channels, 7).state_dict()[key].shape) == shape


def test_pretraining_width_256():
    head = UPerHead([768] * 4, num_classes=19, channels=256)
    assert tuple(head.state_dict()["fpn_bottleneck.conv.weight"].shape) == (256, 1024, 3, 3)


def test_logits_at_the_finest_resolution_and_psp_uses_all_scales():
    head = UPerHead([16] * 4, num_classes=3, channels=8).eval()
    feats = [torch.randn(2, 16, 32 // s, 48 // s) for s in (1, 2, 4, 8)]
    with torch.no_grad():
        logits = head(feats)
    assert logits.shape == (2, 3, 32, 48)
    calls = []
    for module in head.psp_modules:
        module.register_forward_hook(lambda m, i, o: calls.append(o.shape[-1]))
    with torch.no_grad():
        head(feats)
    assert calls == [1, 2, 3, 6]


def test_top_down_path_reaches_the_output():
    """Changing only the coarsest map changes the logits everywhere (PPM + top-down + fusion)."""
    head = UPerHead([8] * 4, num_classes=2, channels=8).eval()
    feats = [torch.randn(1, 8, 16 // s, 16 // s) for s in (1, 2, 4, 8)]
    with torch.no_grad():
        a = head(feats)
        feats[3] = feats[3] + 1.0
        b = head(feats)
    assert (a - b).abs().amax(dim=1).min() > 0


def test_wrong_number_of_maps_is_a_clear_error():
    with pytest.raises(ValueError, match="expects 4 feature maps"):
        UPerHead([8] * 4, 2)([torch.randn(1, 8, 4, 4)] * 3)


def test_fcn_aux_head_names_and_output():
    head = FCNHead(in_channels=32, num_classes=5)
    assert set(head.state_dict()) >= {"convs.0.conv.weight", "convs.0.bn.running_mean", "conv_seg.weight"}
    feats = [torch.randn(1, 32, 8, 8) for _ in range(4)]
    assert head.eval()(feats).shape == (1, 5, 8, 8)
