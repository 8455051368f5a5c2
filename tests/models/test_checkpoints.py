"""Checkpoint loading: every official layout, safe unpickling, resizing, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mtp.models import create_backbone, load_checkpoint
from mtp.models.checkpoint_reader import CheckpointError, InertObject, read_checkpoint

TINY = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=(0, 1, 2, 3), drop_path_rate=0.0)
MARKER = Path(__file__).with_name("_code_ran.marker")


class HistoryBuffer:
    """Stands for an OpenMMLab class pickled into mmengine checkpoints (message_hub).

    If our loader ever executed code from the file, ``__setstate__`` would create MARKER.
    """

    def __init__(self):
        self.values = [1.0, 2.0]

    def __setstate__(self, state):  # pragma: no cover - must never run inside load_checkpoint
        MARKER.write_text("executed")
        self.__dict__.update(state)


def tiny(**overrides):
    return create_backbone("vit_b_rvsa", img_size=64, **{**TINY, **overrides})


def source_weights(**overrides) -> dict[str, torch.Tensor]:
    """A random, non-default ViT+RVSA state dict (what a trained file would hold)."""
    torch.manual_seed(1)
    model = tiny(**overrides)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.state_dict()


def assert_loaded(model, weights, skip=()):
    own = model.state_dict()
    for key, value in weights.items():
        if key in own and key not in skip:
            torch.testing.assert_close(own[key], value, msg=key)


def mae_state(weights: dict[str, torch.Tensor], grid: int = 4) -> dict[str, torch.Tensor]:
    """MAE layout: timm names, cls token, 1 + grid**2 pos embed, decoder, norm; no RVSA parameters."""
    rvsa_only = ("rel_pos", "relative_position", "sampling_", "full_attn", "fpn")
    state = {k: v for k, v in weights.items() if not any(s in k for s in rvsa_only)}
    state["pos_embed"] = torch.randn(1, 1 + grid * grid, 32)
    state["cls_token"] = torch.randn(1, 1, 32)
    state["mask_token"] = torch.randn(1, 1, 16)
    state["norm.weight"], state["norm.bias"] = torch.ones(32), torch.zeros(32)
    state["decoder_embed.weight"] = torch.randn(16, 32)
    state["decoder_blocks.0.attn.qkv.weight"] = torch.randn(48, 16)
    state["decoder_pos_embed"] = torch.randn(1, 1 + grid * grid, 16)
    return state


@pytest.fixture(autouse=True)
def _no_marker():
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "code from a checkpoint file was executed"


def test_mae_file_loads_with_class_token_dropped_and_grid_resized(tmp_path):
    weights = source_weights()
    state = mae_state(weights, grid=3)
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 1599}, tmp_path / "mae.pth")
    model = tiny()
    report = load_checkpoint(model, tmp_path / "mae.pth")
    assert_loaded(model, state, skip={"pos_embed"})
    grid = state["pos_embed"][:, 1:].reshape(1, 3, 3, 32).permute(0, 3, 1, 2)
    expected = (
        F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 16, 32)
    )
    torch.testing.assert_close(model.pos_embed.detach(), expected)
    assert "pos_embed" in report.resized_keys
    assert {"cls_token", "mask_token", "norm.weight", "decoder_embed.weight"} <= set(report.ignored_keys)
    assert "blocks.0.attn.sampling_offsets.2.weight" in report.missing_keys
    assert report.unexpected_keys == []


def test_mae_file_at_the_same_grid_only_drops_the_class_token(tmp_path):
    state = mae_state(source_weights(), grid=4)
    torch.save({"model": state}, tmp_path / "mae.pth")
    model = tiny()
    load_checkpoint(model, tmp_path / "mae.pth")
    torch.testing.assert_close(model.pos_embed.detach(), state["pos_embed"][:, 1:])


def test_mtp_encoder_file_with_training_state_and_numpy_arrays(tmp_path):
    weights = source_weights()
    state = {"module." + k: v for k, v in weights.items()}
    state["module.norm.weight"], state["module.norm.bias"] = torch.ones(32), torch.zeros(32)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
    file = {
        "epoch": 0,
        "iteration": 80000,
        "state_dict": state,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "loss_pretrain": np.linspace(3.0, 1.0, 7),
    }
    torch.save(file, tmp_path / "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth")
    loaded = read_checkpoint(tmp_path / "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth")
    np.testing.assert_allclose(loaded["loss_pretrain"], np.linspace(3.0, 1.0, 7))
    model = tiny()
    report = load_checkpoint(model, tmp_path / "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth")
    assert_loaded(model, weights)
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert set(report.ignored_keys) == {"norm.weight", "norm.bias"}


def test_mtp_whole_model_file_uses_only_the_encoder(tmp_path):
    weights = source_weights()
    state = {"encoder." + k: v for k, v in weights.items()}
    state["semseghead_1.conv_seg.weight"] = torch.randn(19, 256, 1, 1)
    state["rotdethead.roi_head.bbox_head.fc_cls.weight"] = torch.randn(19, 1024)
    state["insseg_decoder.neck.lateral_convs.0.conv.weight"] = torch.randn(256, 32, 1, 1)
    torch.save({"state_dict": state, "iteration": 5}, tmp_path / "full.pth")
    model = tiny()
    report = load_checkpoint(model, tmp_path / "full.pth")
    assert_loaded(model, weights)
    assert report.unexpected_keys == [] and report.missing_keys == []


def test_mmseg_fine_tuned_file_with_openmmlab_objects_loads_without_running_them(tmp_path):
    weights = source_weights()
    state = {"backbone." + k: v for k, v in weights.items()}
    state["decode_head.conv_seg.weight"] = torch.randn(7, 512, 1, 1)
    file = {
        "meta": {"epoch": 1, "iter": 80000, "cfg": "model = dict(...)", "dataset_meta": {"classes": ("a", "b")}},
        "state_dict": state,
        "message_hub": {"log_scalars": {"train/loss": HistoryBuffer()}},
        "optimizer": {"state": {}, "param_groups": []},
        "param_schedulers": [{"T_max": 78500, "eta_min": 0.0}],
    }
    torch.save(file, tmp_path / "iter_80000.pth")
    loaded = read_checkpoint(tmp_path / "iter_80000.pth")
    assert isinstance(loaded["message_hub"]["log_scalars"]["train/loss"], InertObject)
    model = tiny()
    report = load_checkpoint(model, tmp_path / "iter_80000.pth")
    assert_loaded(model, weights)
    assert report.unexpected_keys == [] and report.missing_keys == []


def test_pickled_calls_are_never_executed(tmp_path, capfd):
    class CallsPrint:
        def __reduce__(self):
            return (print, ("pwned",))

    class CallsSystem:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    torch.save({"state_dict": source_weights(), "x": CallsPrint()}, tmp_path / "print.pth")
    loaded = read_checkpoint(tmp_path / "print.pth")
    assert isinstance(loaded["x"], InertObject)  # the call became an inert stand-in
    torch.save({"state_dict": source_weights(), "x": CallsSystem()}, tmp_path / "system.pth")
    with pytest.raises(CheckpointError, match=r"system.pth.*would run code when loaded.*nothing from the file was run"):
        read_checkpoint(tmp_path / "system.pth")
    assert "pwned" not in capfd.readouterr().out


def test_detection_file_into_detection_copy_and_seg_file_into_detection_copy(tmp_path):
    det_weights = source_weights(global_rel_pos=False)
    torch.save({"state_dict": {"backbone." + k: v for k, v in det_weights.items()}}, tmp_path / "det.pth")
    det = tiny(global_rel_pos=False)
    report = load_checkpoint(det, tmp_path / "det.pth")
    assert_loaded(det, det_weights)
    assert report.missing_keys == []
    seg_weights = source_weights()
    torch.save(seg_weights, tmp_path / "seg.pth")
    report = load_checkpoint(tiny(global_rel_pos=False), tmp_path / "seg.pth")
    assert sorted(report.ignored_keys) == sorted(k for k in seg_weights if "full_attn" in k)
    seg = tiny()  # a detection file into a copy with tables: the tables stay as initialised
    report = load_checkpoint(seg, tmp_path / "det.pth")
    assert sorted(report.missing_keys) == sorted(k for k in seg_weights if "full_attn" in k)


def test_classification_copy_ignores_norm_and_fpn(tmp_path):
    weights = source_weights()
    state = {"backbone." + k: v for k, v in weights.items()}
    state["backbone.norm.weight"], state["backbone.norm.bias"] = torch.ones(32), torch.zeros(32)
    state["head.fc.weight"] = torch.randn(10, 32)
    torch.save({"state_dict": state}, tmp_path / "cls.pth")
    model = tiny(pyramid=False)
    report = load_checkpoint(model, tmp_path / "cls.pth")
    assert_loaded(model, weights)
    assert {"fpn1.0.weight", "fpn2.0.weight", "norm.weight"} <= set(report.ignored_keys)
    assert report.missing_keys == [] and report.unexpected_keys == []


def test_global_tables_are_resized_with_the_official_bicubic_rule(tmp_path):
    weights = source_weights()  # img_size 64 -> tables of length 7
    torch.save({"state_dict": weights}, tmp_path / "small.pth")
    model = create_backbone("vit_b_rvsa", img_size=96, pretrained=tmp_path / "small.pth", **TINY)
    old = weights["blocks.1.attn.full_attn_rel_pos_h"]
    expected = F.interpolate(old.reshape(1, 1, 7, 16), size=(11, 16), mode="bicubic", align_corners=False)
    torch.testing.assert_close(model.blocks[1].attn.full_attn_rel_pos_h.detach(), expected.reshape(11, 16))


def test_safetensors_file(tmp_path):
    weights = source_weights()
    save_file({k: v.contiguous() for k, v in weights.items()}, tmp_path / "w.safetensors")
    model = tiny()
    load_checkpoint(model, tmp_path / "w.safetensors")
    assert_loaded(model, weights)


def test_in_chans_other_than_three_skips_the_patch_embedding(tmp_path):
    weights = source_weights()
    torch.save(weights, tmp_path / "rgb.pth")
    model = tiny(in_chans=4)
    report = load_checkpoint(model, tmp_path / "rgb.pth")
    assert "patch_embed.proj.weight" in report.missing_keys
    assert_loaded(model, weights, skip={"patch_embed.proj.weight", "patch_embed.proj.bias"})


def test_other_size_fails_naming_file_keys_and_shapes(tmp_path):
    torch.save({"state_dict": source_weights()}, tmp_path / "dim32.pth")
    model = create_backbone("vit_b_rvsa", img_size=64, **{**TINY, "embed_dim": 64})
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, tmp_path / "dim32.pth")
    text = str(err.value)
    assert "dim32.pth" in text and "patch_embed.proj.weight" in text and "(32, 3, 16, 16)" in text
    assert "(64, 3, 16, 16)" in text


@pytest.mark.parametrize(
    "source,target",
    [
        (dict(depth=6, out_indices=(0, 1, 2, 5)), dict()),  # deeper file: unknown blocks
        (dict(), dict(depth=6, out_indices=(0, 1, 2, 5))),  # deeper model: missing blocks
        (dict(), dict(interval=4)),  # other global/window layout
    ],
)
def test_other_architecture_fails(tmp_path, source, target):
    torch.save(source_weights(**source), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(tiny(**target), tmp_path / "w.pth")


def test_non_strict_loading_reports_instead_of_failing(tmp_path):
    weights = source_weights(depth=6, out_indices=(0, 1, 2, 5))
    torch.save(weights, tmp_path / "w.pth")
    model = tiny()
    report = load_checkpoint(model, tmp_path / "w.pth", strict=False)
    assert {k.split(".")[1] for k in report.unexpected_keys} == {"4", "5"}
    assert report.missing_keys == []
    assert_loaded(model, weights)


def test_unrelated_model_file_fails(tmp_path):
    torch.save({"state_dict": {"layer1.0.conv1.weight": torch.randn(8, 3, 3, 3)}}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="none of its 1 tensors"):
        load_checkpoint(tiny(), tmp_path / "resnet.pth")


@pytest.mark.parametrize("content", [b"not a checkpoint", bytes(range(256)) * 4, b""])
def test_garbage_file_fails_naming_the_file(tmp_path, content):
    (tmp_path / "bad.pth").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"bad\.pth"):
        load_checkpoint(tiny(), tmp_path / "bad.pth")


def test_missing_file_and_tensorless_file_fail(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tiny(), tmp_path / "nope.pth")
    torch.save({"epoch": 3, "meta": {"a": 1}}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match="no tensors"):
        load_checkpoint(tiny(), tmp_path / "meta.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a dict"):
        load_checkpoint(tiny(), tmp_path / "list.pth")


def test_bad_pos_embed_length_fails(tmp_path):
    weights = source_weights()
    weights["pos_embed"] = torch.randn(1, 14, 32)
    torch.save(weights, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="pos_embed"):
        load_checkpoint(tiny(), tmp_path / "w.pth")


def test_loaded_model_reproduces_the_source_outputs(tmp_path):
    source = tiny().eval()
    with torch.no_grad():
        for p in source.parameters():
            p.normal_(0, 0.05)
    torch.save({"state_dict": {"encoder." + k: v for k, v in source.state_dict().items()}}, tmp_path / "w.pth")
    target = create_backbone("vit_b_rvsa", img_size=64, pretrained=tmp_path / "w.pth", **TINY).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(source(x), target(x), strict=True):
            torch.testing.assert_close(a, b)
