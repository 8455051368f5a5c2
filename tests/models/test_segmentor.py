"""Segmentor: mmseg names, whole-model checkpoints (official mmseg layout and mtp's own)."""

from __future__ import annotations

import pytest
import torch

from mtp.models.checkpoint_reader import CheckpointError
from mtp.models.segmentor import build_upernet, load_segmentor_checkpoint

TINY = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=(0, 1, 2, 3), drop_path_rate=0.0)


def tiny(num_classes=7, **kw):
    return build_upernet("vit_b_rvsa", num_classes=num_classes, img_size=64, channels=16, **{**TINY, **kw})


def randomised(model):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.eval()


def test_keys_are_backbone_and_decode_head():
    keys = tiny().state_dict().keys()
    assert {k.split(".")[0] for k in keys} == {"backbone", "decode_head"}
    assert "decode_head.psp_modules.0.1.bn.running_var" in keys
    assert {k.split(".")[0] for k in tiny(aux_head=True).state_dict()} == {"backbone", "decode_head", "auxiliary_head"}


def test_logits_at_stride_four():
    with torch.no_grad():
        assert tiny().eval()(torch.randn(1, 3, 64, 96)).shape == (1, 7, 16, 24)


def test_official_mmseg_file_loads_and_reproduces_outputs(tmp_path):
    source = randomised(tiny())
    file = {
        "meta": {"iter": 80000, "dataset_meta": {"classes": list("abcdefg")}},
        "state_dict": source.state_dict(),
        "optimizer": {"state": {}, "param_groups": []},
    }
    torch.save(file, tmp_path / "iter_80000.pth")
    target = tiny().eval()
    report = load_segmentor_checkpoint(target, tmp_path / "iter_80000.pth")
    assert report.missing_keys == [] and report.unexpected_keys == []
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(source(x), target(x))


def test_lightning_checkpoint_with_model_prefix_and_other_img_size(tmp_path):
    source = randomised(tiny())
    torch.save({"state_dict": {"model." + k: v for k, v in source.state_dict().items()}}, tmp_path / "last.ckpt")
    target = build_upernet("vit_b_rvsa", num_classes=7, img_size=96, channels=16, **TINY)
    report = load_segmentor_checkpoint(target, tmp_path / "last.ckpt")
    assert "backbone.pos_embed" in report.resized_keys


def test_checkpoint_for_another_number_of_classes_fails_clearly(tmp_path):
    torch.save({"state_dict": tiny(num_classes=7).state_dict()}, tmp_path / "loveda.pth")
    with pytest.raises(CheckpointError, match=r"loveda\.pth.*checkpoint for 7 classes, model has 2"):
        load_segmentor_checkpoint(tiny(num_classes=2), tmp_path / "loveda.pth")


def test_backbone_only_file_is_redirected(tmp_path):
    torch.save({"state_dict": tiny().backbone.state_dict()}, tmp_path / "encoder.pth")
    with pytest.raises(CheckpointError, match="no decode_head"):
        load_segmentor_checkpoint(tiny(), tmp_path / "encoder.pth")
