"""Scene classifier: mmpretrain names, the classification copy of the backbone, whole-file loading."""

from __future__ import annotations

import pytest
import torch

from mtp.models.checkpoints import CheckpointError
from mtp.models.classifier import ImageClassifier, build_classifier, load_classifier_checkpoint, predict_topk

TINY = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=[0, 1, 2, 3])


def tiny(num_classes: int = 7, img_size: int = 64) -> ImageClassifier:
    return build_classifier("vit_b_rvsa", num_classes=num_classes, img_size=img_size, **TINY).eval()


def mmpretrain_state(model: ImageClassifier) -> dict[str, torch.Tensor]:
    """An official-layout file: ``backbone.*`` incl. the unused final norm and fpn1/fpn2 of the
    mmpretrain RVSA_MTP copy (docs/CHECKPOINTS.md#vitrvsa-copies), plus ``head.fc.*``."""
    state = dict(model.state_dict())
    d = model.backbone.embed_dim
    state["backbone.norm.weight"], state["backbone.norm.bias"] = torch.ones(d), torch.zeros(d)
    state["backbone.fpn1.0.weight"], state["backbone.fpn1.0.bias"] = torch.randn(d, d, 2, 2), torch.zeros(d)
    state["backbone.fpn1.1.ln.weight"], state["backbone.fpn1.1.ln.bias"] = torch.ones(d), torch.zeros(d)
    state["backbone.fpn1.3.weight"], state["backbone.fpn1.3.bias"] = torch.randn(d, d, 2, 2), torch.zeros(d)
    state["backbone.fpn2.0.weight"], state["backbone.fpn2.0.bias"] = torch.randn(d, d, 2, 2), torch.zeros(d)
    return state


def test_names_shapes_and_the_classification_copy():
    model = tiny()
    keys = list(model.state_dict())
    assert all(k.startswith(("backbone.", "head.fc.")) for k in keys)
    assert [k for k in keys if k.startswith("head.")] == ["head.fc.weight", "head.fc.bias"]
    assert model.state_dict()["head.fc.weight"].shape == (7, 32)
    # classification copy: global tables kept (blocks 1 and 3 with interval 2), no fpn, no final norm
    assert "backbone.blocks.1.attn.full_attn_rel_pos_h" in keys and "backbone.blocks.3.attn.full_attn_rel_pos_w" in keys
    assert not any(k.startswith(("backbone.fpn", "backbone.norm.")) for k in keys)
    x = torch.randn(2, 3, 64, 64)
    logits = model(x)
    assert logits.shape == (2, 7)
    # GAP of the LAST raw stride-16 tap, then the linear layer
    last = model.backbone(x)[-1]
    assert last.shape == (2, 32, 4, 4)
    torch.testing.assert_close(logits, model.head.fc(last.mean((2, 3))))
    scores, idx = predict_topk(model, x, k=5)
    assert scores.shape == idx.shape == (2, 5) and torch.all(scores[:, :-1] >= scores[:, 1:])
    with pytest.raises(ValueError, match="pyramid"):
        build_classifier(num_classes=3, img_size=64, pyramid=True, **TINY)


def test_mmpretrain_layout_file_loads_exactly_and_ignores_unused_copies(tmp_path):
    source = tiny()
    torch.nn.init.normal_(source.head.fc.weight)
    path = tmp_path / "epoch_100.pth"
    torch.save({"meta": {"epoch": 100}, "state_dict": mmpretrain_state(source)}, path)
    target = tiny()
    report = load_classifier_checkpoint(target, path)
    assert {"backbone.norm.weight", "backbone.fpn1.0.weight", "backbone.fpn2.0.bias"} <= set(report.ignored_keys)
    assert report.missing_keys == [] and report.unexpected_keys == [] and report.mismatched_keys == []
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, rtol=0, atol=0, msg=key)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(target(x), source(x))


def test_lightning_checkpoint_and_another_img_size_load(tmp_path):
    source = tiny(img_size=64)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)
    bigger = tiny(img_size=96)
    report = load_classifier_checkpoint(bigger, path)
    assert "backbone.pos_embed" in report.resized_keys
    assert "backbone.blocks.1.attn.full_attn_rel_pos_h" in report.resized_keys
    torch.testing.assert_close(bigger.head.fc.weight, source.head.fc.weight)


def test_wrong_class_count_and_backbone_only_files_fail_clearly(tmp_path):
    ten = tiny(num_classes=10)
    torch.save({"state_dict": ten.state_dict()}, tmp_path / "ten.pth")
    with pytest.raises(CheckpointError, match="checkpoint for 10 classes, model has 7"):
        load_classifier_checkpoint(tiny(num_classes=7), tmp_path / "ten.pth")
    torch.save({"state_dict": ten.backbone.state_dict()}, tmp_path / "encoder.pth")
    with pytest.raises(CheckpointError, match="pretrained="):
        load_classifier_checkpoint(tiny(), tmp_path / "encoder.pth")
