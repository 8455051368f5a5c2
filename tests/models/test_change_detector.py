"""Siamese change detector: official Open-CD key names and shapes (docs/CHECKPOINTS.md#head-layouts), the UNet head's
structure and resolution, the fusion, and loading an official-layout fine-tuned file."""

from __future__ import annotations

import pytest
import torch

from mtp.models.change_detector import (
    ChangeDetector,
    build_change_detector,
    fuse,
    load_change_detector_checkpoint,
)
from mtp.models.checkpoints import CheckpointError
from mtp.models.heads.unet import UNetHead
from tests.official_keys import official_keys

TINY = dict(embed_dim=48, depth=4, num_heads=3, interval=2, out_indices=(0, 1, 2, 3), drop_path_rate=0.0)


def official_unet_keys() -> dict[str, tuple[int, ...]]:
    """``decode_head.*`` names and shapes of the official ViT-B LEVIR/WHU/CDD/OSCD checkpoints."""
    keys = official_keys("unet_cd_vit_b")
    assert len(keys) == 50
    return keys


def test_unet_head_has_the_official_vit_b_names_and_shapes():
    head = UNetHead([768] * 4, num_classes=2)
    ours = {f"decode_head.{k}": tuple(v.shape) for k, v in head.state_dict().items()}
    assert ours == official_unet_keys()
    assert list(ours)[:2] == ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]


def test_unet_head_vit_l_and_internimage_input_channels():
    vit_l = UNetHead([1024] * 4).state_dict()
    assert [tuple(vit_l[f"blocks.{i}.conv1.0.weight"].shape[:2]) for i in range(4)] == [
        (512, 2048),
        (256, 1536),
        (128, 1280),
        (64, 128),
    ]
    intern = UNetHead([192, 384, 768, 1536]).state_dict()
    assert [intern[f"blocks.{i}.conv1.0.weight"].shape[1] for i in range(3)] == [2304, 896, 448]


def test_vit_output_is_twice_the_input_resolution_and_pairs_are_batched():
    model = build_change_detector(img_size=32, decoder_channels=(16, 8, 8, 8), **TINY).eval()
    a, b = torch.randn(2, 3, 32, 48), torch.randn(2, 3, 32, 48)
    logits = model(torch.cat([a, b], dim=1))
    assert logits.shape == (2, 2, 64, 96)
    # one 2B-batch through the shared backbone == two separate passes
    fa, fb = model.backbone(a), model.backbone(b)
    expected = model.decode_head(fuse(fa, fb, "abs_diff"))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-4)
    # |A - B| is symmetric: exchanging the dates gives the same change map
    torch.testing.assert_close(model(torch.cat([b, a], dim=1)), logits, atol=1e-5, rtol=1e-4)


def test_fusion_policies():
    a, b = [torch.tensor([1.0, -2.0])], [torch.tensor([0.0, 1.0])]
    assert fuse(a, b, "abs_diff")[0].tolist() == [1.0, 3.0]
    assert fuse(a, b, "diff")[0].tolist() == [-1.0, 3.0]  # Open-CD: B - A
    assert fuse(a, b, "sum")[0].tolist() == [1.0, -1.0]
    assert fuse([torch.ones(1, 2, 1, 1)], [torch.zeros(1, 2, 1, 1)], "concat")[0].shape == (1, 4, 1, 1)
    with pytest.raises(ValueError, match="fusion policy"):
        fuse(a, b, "max")
    concat = build_change_detector(img_size=32, policy="concat", decoder_channels=(16, 8, 8, 8), **TINY)
    assert concat.decode_head.blocks[0].conv1[0].in_channels == 2 * 48 * 2


def test_backbone_is_the_change_detection_copy():
    model = build_change_detector(img_size=32, decoder_channels=(16, 8, 8, 8), **TINY)
    assert isinstance(model, ChangeDetector) and not model.backbone.pyramid
    assert not any(k.startswith(("backbone.fpn", "backbone.norm.")) for k in model.state_dict())
    without_drop_path = {k: v for k, v in TINY.items() if k != "drop_path_rate"}
    official = build_change_detector(img_size=32, decoder_channels=(16, 8, 8, 8), **without_drop_path)
    assert official.backbone.blocks[-1].drop_path.drop_prob == pytest.approx(0.3)  # official CD fine-tuning


def official_file(model: ChangeDetector, path, num_classes: int = 2) -> None:
    """An Open-CD-style file: ``state_dict`` with ``backbone.*`` (plus the unused ``norm`` / ``fpn1`` / ``fpn2``
    weights of the official CD copy) and ``decode_head.*``, and an mmengine ``meta``."""
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()}
    dim = model.backbone.out_channels[0]
    state |= {
        "backbone.norm.weight": torch.ones(dim),
        "backbone.norm.bias": torch.zeros(dim),
        "backbone.fpn1.0.weight": torch.zeros(dim, dim, 2, 2),
        "backbone.fpn1.0.bias": torch.zeros(dim),
        "backbone.fpn1.1.ln.weight": torch.ones(dim),
        "backbone.fpn1.1.ln.bias": torch.zeros(dim),
        "backbone.fpn1.3.weight": torch.zeros(dim, dim, 2, 2),
        "backbone.fpn1.3.bias": torch.zeros(dim),
        "backbone.fpn2.0.weight": torch.zeros(dim, dim, 2, 2),
        "backbone.fpn2.0.bias": torch.zeros(dim),
    }
    if num_classes != 2:
        state["decode_head.conv_seg.weight"] = torch.zeros(num_classes, 8, 1, 1)
        state["decode_head.conv_seg.bias"] = torch.zeros(num_classes)
    torch.save({"meta": {"epoch": 150}, "state_dict": state}, path)
    return state


def test_official_fine_tuned_file_loads_strictly(tmp_path):
    model = build_change_detector(img_size=64, decoder_channels=(32, 16, 16, 8), **TINY)
    source = build_change_detector(img_size=64, decoder_channels=(32, 16, 16, 8), **TINY)
    state = official_file(source, tmp_path / "epoch_150.pth")
    report = load_change_detector_checkpoint(model, tmp_path / "epoch_150.pth")
    assert not report.missing_keys and not report.unexpected_keys
    assert {"backbone.norm.weight", "backbone.fpn1.0.weight", "backbone.fpn2.0.bias"} <= set(report.ignored_keys)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_files_of_another_head_or_backbone_only_fail_clearly(tmp_path):
    model = build_change_detector(img_size=64, decoder_channels=(32, 16, 16, 8), **TINY)
    official_file(model, tmp_path / "three.pth", num_classes=3)
    with pytest.raises(CheckpointError, match="conv_seg"):
        load_change_detector_checkpoint(model, tmp_path / "three.pth")
    torch.save({"state_dict": model.backbone.state_dict()}, tmp_path / "encoder.pth")
    with pytest.raises(CheckpointError, match="decode_head"):
        load_change_detector_checkpoint(model, tmp_path / "encoder.pth")
