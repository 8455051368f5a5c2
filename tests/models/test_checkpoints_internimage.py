"""InternImage checkpoint layouts: ImageNet classifier file, MTP encoder / whole model, OpenMMLab fine-tuned."""

from __future__ import annotations

import pytest
import torch

from mtp.models import create_backbone, load_checkpoint
from mtp.models.checkpoint_reader import CheckpointError

TINY = dict(channels=16, depths=(1, 1, 2, 1), groups=(1, 2, 4, 8), drop_path_rate=0.0)


def tiny(**overrides):
    return create_backbone("internimage_xl", **{**TINY, **overrides})


def source_weights(**overrides) -> dict[str, torch.Tensor]:
    """Random, non-default InternImage weights (what a trained file would hold)."""
    torch.manual_seed(1)
    model = tiny(**overrides)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.state_dict()


def assert_loaded(model, weights):
    own = model.state_dict()
    assert own.keys() == weights.keys()
    for key, value in weights.items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0, msg=key)


def imagenet_file(weights: dict[str, torch.Tensor]) -> dict:
    """Layout of ``internimage_xl_22kto1k_384.pth`` (official InternImage classification model)."""
    state = dict(weights)
    width = 128  # num_features of the tiny model; the classifier widens it by cls_scale 1.5
    state["conv_head.0.weight"] = torch.randn(192, width, 1, 1)
    for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
        state[f"conv_head.1.0.{name}"] = torch.full((192,), value)
    state["conv_head.1.0.num_batches_tracked"] = torch.tensor(10)
    state["head.weight"], state["head.bias"] = torch.randn(1000, 192), torch.zeros(1000)
    return {"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 20, "config": "..."}


def test_imagenet_classification_file_drops_the_classifier(tmp_path):
    weights = source_weights()
    torch.save(imagenet_file(weights), tmp_path / "internimage_xl_22kto1k_384.pth")
    model = tiny()
    report = load_checkpoint(model, tmp_path / "internimage_xl_22kto1k_384.pth")
    assert_loaded(model, weights)
    assert {"conv_head.0.weight", "conv_head.1.0.running_mean", "head.weight", "head.bias"} <= set(report.ignored_keys)
    assert report.missing_keys == [] and report.unexpected_keys == []


def test_create_backbone_pretrained_loads_the_file(tmp_path):
    weights = source_weights()
    torch.save(imagenet_file(weights), tmp_path / "imagenet.pth")
    assert_loaded(create_backbone("internimage_xl", pretrained=tmp_path / "imagenet.pth", **TINY), weights)


def test_mtp_encoder_file_with_module_prefix(tmp_path):
    weights = source_weights()
    state = {"module." + k: v for k, v in weights.items()}
    torch.save({"state_dict": state, "iteration": 80000, "optimizer": {}}, tmp_path / "encoder.pth")
    model = tiny()
    report = load_checkpoint(model, tmp_path / "encoder.pth")
    assert_loaded(model, weights)
    assert report.ignored_keys == [] and report.unexpected_keys == []


def test_mtp_whole_model_file_uses_only_the_encoder(tmp_path):
    weights = source_weights()
    state = {"encoder." + k: v for k, v in weights.items()}
    state["semseghead_1.1.weight"] = torch.randn(19, 256, 1, 1)
    state["semsegdecoder.decode_head.bottleneck.conv.weight"] = torch.randn(256, 1024, 3, 3)
    state["rotdethead.roi_head.bbox_head.fc_cls.weight"] = torch.randn(19, 1024)
    torch.save({"state_dict": state}, tmp_path / "last_internimage_xl_ss_is_rd_pretrn_model.pth")
    model = tiny()
    report = load_checkpoint(model, tmp_path / "last_internimage_xl_ss_is_rd_pretrn_model.pth")
    assert_loaded(model, weights)
    assert report.unexpected_keys == [] and report.missing_keys == []


@pytest.mark.parametrize(
    "head",
    [
        {"decode_head.conv_seg.weight": torch.randn(7, 512, 1, 1)},  # mmseg UperNet
        {"neck.lateral_convs.0.conv.weight": torch.randn(256, 16, 1, 1)},  # mmdet / mmrotate
        {"head.fc.weight": torch.randn(10, 128), "head.fc.bias": torch.zeros(10)},  # mmpretrain
        {"decoder.blocks.0.conv.weight": torch.randn(8, 8, 3, 3)},  # open-cd UNet
    ],
)
def test_openmmlab_fine_tuned_files_use_the_backbone_namespace(tmp_path, head):
    weights = source_weights()
    state = {"backbone." + k: v for k, v in weights.items()} | head
    torch.save({"meta": {"iter": 80000}, "state_dict": state}, tmp_path / "iter_80000.pth")
    model = tiny()
    report = load_checkpoint(model, tmp_path / "iter_80000.pth")
    assert_loaded(model, weights)
    assert report.unexpected_keys == []


def test_wrong_size_names_the_file_and_the_first_mismatches(tmp_path):
    torch.save({"model": source_weights(channels=24, groups=(3, 6, 12, 24))}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth.*shape mismatches.*patch_embed\.conv1\.weight: file"):
        load_checkpoint(tiny(), tmp_path / "other.pth")


def test_missing_and_unknown_keys_are_errors_unless_not_strict(tmp_path):
    weights = source_weights()
    state = {k: v for k, v in weights.items() if not k.startswith("levels.3.")}
    state["levels.0.blocks.0.dcn.center_feature_scale_proj_weight"] = torch.zeros(1, 16)
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"partial\.pth.*levels\.0\.blocks\.0\.dcn\.center_feature.*not in"):
        load_checkpoint(tiny(), tmp_path / "partial.pth")
    model = tiny()
    report = load_checkpoint(model, tmp_path / "partial.pth", strict=False)
    assert report.unexpected_keys == ["levels.0.blocks.0.dcn.center_feature_scale_proj_weight"]
    assert report.missing_keys and all(k.startswith("levels.3.") for k in report.missing_keys)
    torch.testing.assert_close(model.patch_embed.conv1.weight, weights["patch_embed.conv1.weight"])


def test_a_vit_file_is_rejected_clearly(tmp_path):
    vit = create_backbone("vit_b_rvsa", img_size=64, embed_dim=32, depth=4, num_heads=2, out_indices=(0, 1, 2, 3))
    torch.save({"model": vit.state_dict()}, tmp_path / "vit.pth")
    with pytest.raises(CheckpointError, match=r"vit\.pth: none of its .* tensors belong to this model"):
        load_checkpoint(tiny(), tmp_path / "vit.pth")
