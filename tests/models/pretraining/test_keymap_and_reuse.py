"""Official whole-model files load into the MTP model; decoder reuse feeds the fine-tuning models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtp.cli import main
from mtp.models.checkpoint_reader import CheckpointError
from mtp.models.detectors.horizontal.keymap import load_mmdet_detector
from mtp.models.detectors.horizontal.rcnn import build_faster_rcnn
from mtp.models.detectors.oriented_rcnn.model import build_oriented_rcnn, load_oriented_rcnn_checkpoint
from mtp.models.pretraining import load_mtp_checkpoint, official_state_dict, official_to_ours, ours_to_official
from mtp.models.pretraining.reuse import change_ckpt, reuse_decoder
from mtp.models.segmentor import build_upernet, load_segmentor_checkpoint
from tests.models.pretraining.conftest import TINY_CLASSES, TINY_ENCODER, make_batch, tiny_mtp


def save_official(model, path, **extra):
    """A file in the official layout (epoch, iteration, state_dict, optimizer, scheduler, loss_pretrain)."""
    torch.save({"epoch": 0, "iteration": 5, "state_dict": official_state_dict(model), "optimizer": {},
                "scheduler": {}, "loss_pretrain": np.array([3.0, 2.5]), **extra}, path)  # fmt: skip
    return path


def test_names_map_both_ways():
    for ours in (
        "inssegdecoder.neck.fpn.inner_blocks.2.0.weight",
        "rotdetdecoder.neck.fpn.layer_blocks.0.0.bias",
        "inssegdecoder.rpn.head.conv.0.0.weight",
        "inssegdecoder.roi_heads.box_head.fc7.bias",
        "inssegdecoder.roi_heads.mask_head.3.0.weight",
        "inssegdecoder.roi_heads.mask_head.upsample.bias",
    ):
        assert official_to_ours(ours_to_official(ours)) == ours and ours_to_official(ours) != ours
    assert ours_to_official("rotdetdecoder.rpn_head.rpn_reg.weight") == "rotdetdecoder.rpn_head.rpn_reg.weight"


def test_an_official_whole_model_file_loads_exactly(tmp_path):
    torch.manual_seed(0)
    source = tiny_mtp()
    path = save_official(source, tmp_path / "Iter_5_vit_b_rvsa_ss_is_rd_pretrn_model.pth")
    torch.manual_seed(1)
    target = tiny_mtp()
    load_mtp_checkpoint(target, path)
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    smaller = tiny_mtp(tasks=("rd",), datasets=("sior",))
    with pytest.raises(CheckpointError, match="unknown"):
        load_mtp_checkpoint(smaller, path)  # other datasets' heads: strict refuses, names them
    load_mtp_checkpoint(smaller, path, strict=False)
    assert torch.equal(smaller.rotdetroiboxhead_fc_cls2.weight, source.rotdetroiboxhead_fc_cls2.weight)


def test_change_ckpt_semantics(tmp_path):
    state = official_state_dict(tiny_mtp())
    out = change_ckpt(state)
    assert "backbone.blocks.0.attn.qkv.weight" in out and "neck.lateral_convs.0.conv.weight" in out
    assert "rpn_head.rpn_reg.weight" in out and "roi_head.bbox_head.shared_fcs.1.bias" in out
    assert "semseghead_1.1.weight" in out and "inssegdecoder.rpn_head.rpn_conv.weight" in out  # kept unchanged
    assert len(out) == len(state)


def test_reused_rotated_decoder_predicts_like_the_pretraining_decoder(tmp_path):
    torch.manual_seed(0)
    mtp = tiny_mtp(tasks=("rd",), datasets=("sior",)).eval()
    path = save_official(mtp, tmp_path / "last.pth")
    assert main(["tool", "reuse-decoder", "--ckpt", str(path), "--task", "rd", "--dataset", "sior",
                 "--out", str(tmp_path / "rd.pth")]) == 0  # fmt: skip
    det = build_oriented_rcnn(num_classes=TINY_CLASSES["sior"], img_size=64, fpn_channels=32, **TINY_ENCODER).eval()
    load_oriented_rcnn_checkpoint(det, tmp_path / "rd.pth")  # strict: every tensor present and used
    batch = make_batch(TINY_CLASSES["sior"], seed=4)
    with torch.no_grad():
        feats = mtp.encoder(batch["image"])
        ours = mtp.rotated("sior", feats, batch, with_targets=False)
        maps = det.neck(feats)
        proposals, _ = det.rpn_head(maps, batch["img_hw"], None)
        theirs = det.roi_head.predict(maps, proposals, batch["img_hw"])
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a["rboxes"], b["rboxes"])
        torch.testing.assert_close(a["scores"], b["scores"])
    # Without a dataset the classifier is absent: the fine-tuning model keeps its own init.
    state = reuse_decoder(path, "rd")
    assert not any(k.startswith("roi_head.bbox_head.fc_") for k in state)


def test_reuse_for_segmentation_and_horizontal_detection(tmp_path):
    torch.manual_seed(0)
    mtp = tiny_mtp(tasks=("ss", "is"), datasets=("sota", "sior"))
    path = save_official(mtp, tmp_path / "last.pth")
    seg_state = reuse_decoder(path, "ss", dataset="sota")
    torch.save({"state_dict": seg_state}, tmp_path / "ss.pth")
    seg = build_upernet(num_classes=TINY_CLASSES["sota"] + 1, img_size=64, channels=32, **TINY_ENCODER)
    load_segmentor_checkpoint(seg, tmp_path / "ss.pth")
    assert torch.equal(seg.decode_head.conv_seg.weight, mtp.semseghead_1[1].weight)
    hd_state = reuse_decoder(path, "hd", dataset="sior")
    assert not any(".mask_head." in k for k in hd_state)
    torch.save({"state_dict": hd_state}, tmp_path / "hd.pth")
    frcnn = build_faster_rcnn(num_classes=TINY_CLASSES["sior"], img_size=64, fpn_channels=32, **TINY_ENCODER)
    load_mmdet_detector(frcnn, tmp_path / "hd.pth")
    cls = frcnn.roi_heads.box_predictor.cls_score.weight
    assert torch.equal(cls[0], mtp.inssegroiboxhead_fc_cls2.weight[-1])  # background moved first
    with pytest.raises(CheckpointError, match="rotdetdecoder"):
        reuse_decoder(path, "rd")
