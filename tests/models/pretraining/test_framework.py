"""The MTP pretraining model: official key set, shared encoder, per-dataset heads, losses."""

from __future__ import annotations

import pytest
import torch

from mtp.models.pretraining import build_mtp_model, official_state_dict, total_loss
from tests.models.pretraining.conftest import TINY_CLASSES, make_batch, tiny_mtp
from tests.official_keys import official_keys


def official_decoder_keys() -> dict[str, tuple[int, ...]]:
    return official_keys("mtp_whole_model_decoders_vit_b")


def test_whole_model_has_the_official_keys_shapes_and_order():
    model = build_mtp_model("vit_b_rvsa", img_size=448)
    state = official_state_dict(model)
    encoder = [k for k in state if k.startswith("encoder.")]
    decoder = {k: tuple(v.shape) for k, v in state.items() if not k.startswith("encoder.")}
    assert len(encoder) == 245 and len(state) == 417  # the official ViT-B whole-model file
    assert "encoder.norm.weight" in state and "encoder.blocks.11.attn.full_attn_rel_pos_h" in state
    assert decoder == official_decoder_keys()
    assert list(decoder) == list(official_decoder_keys())


def test_training_pass_gives_every_official_loss_term(batches):
    model = tiny_mtp()
    losses = model(batches)
    assert set(losses) == {f"{d}/{t}" for d in TINY_CLASSES for t in ("ss", "is", "rd")}
    assert set(losses["sota/is"]) == {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"}
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"} <= set(losses["fast/rd"])
    total = total_loss(losses)
    expected = sum(v for g in losses.values() for k, v in g.items() if "loss" in k)
    assert torch.isfinite(total) and torch.allclose(total, expected)
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == ["semsegdecoder.decode_head.conv_seg.weight", "semsegdecoder.decode_head.conv_seg.bias"]


def test_each_dataset_trains_only_its_own_heads(batches):
    model = tiny_mtp()
    losses = model({"sior": batches["sior"]})
    total_loss(losses).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ("semseghead_2.1.weight", "inssegroiboxhead_fc_cls2.weight", "inssegroimaskhead_conv2.weight",
                 "rotdetroiboxhead_fc_cls2.weight", "rotdetroiboxhead_fc_reg2.weight"):  # fmt: skip
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    for name in ("semseghead_1.1.weight", "inssegroiboxhead_fc_cls3.weight", "rotdetroiboxhead_fc_cls1.weight"):
        assert grads[name] is None, name


def test_the_concatenated_encoder_pass_equals_separate_passes(batches):
    model = tiny_mtp().eval()
    with torch.no_grad():
        joint = model.encode(batches)
        for d, b in batches.items():
            alone = model.encoder(b["image"])
            for a, j in zip(alone, joint[d], strict=True):
                torch.testing.assert_close(a, j, rtol=1e-5, atol=1e-5)


def test_task_and_dataset_subsets_and_background_option():
    model = tiny_mtp(tasks=("ss", "rd"), datasets=("fast", "sota"), background=False)
    assert model.datasets == ["sota", "fast"] and model.tasks == ("ss", "rd")
    names = set(official_state_dict(model))
    assert not any(k.startswith(("inssegdecoder.", "insseg")) for k in names)
    assert "semseghead_3.1.weight" in names and "semseghead_2.1.weight" not in names
    assert model.semseghead_3[1].out_channels == TINY_CLASSES["fast"]  # no background channel
    batch = make_batch(TINY_CLASSES["fast"], seed=3)
    batch["semantic"][:] = 0  # only background: with background=False everything is ignored -> zero loss
    loss = model.semantic_loss("fast", model.encoder(batch["image"]), batch["semantic"])["loss_ce"]
    assert float(loss.detach()) == 0.0
    with pytest.raises(ValueError, match="subset"):
        tiny_mtp(tasks=("det",))


def test_evaluation_outputs_per_dataset(batches):
    model = tiny_mtp().eval()
    with torch.no_grad():
        feats = model.encode(batches)
        logits = model.semantic_logits("sior", feats["sior"])
        dets = model.instance("fast", feats["fast"], batches["fast"], with_targets=False)
        rdets = model.rotated("sota", feats["sota"], batches["sota"], with_targets=False)
    assert logits.shape == (2, TINY_CLASSES["sior"] + 1, 16, 16)
    assert len(dets) == 2 and set(dets[0]) >= {"boxes", "labels", "scores", "masks"}
    assert all(((d["labels"] >= 1) & (d["labels"] <= TINY_CLASSES["fast"])).all() for d in dets)
    assert len(rdets) == 2 and rdets[0]["rboxes"].shape[1] == 5


def test_proposal_budget_overrides_the_official_counts_only_when_given():
    from mtp.models.pretraining.framework import ProposalBudget

    official = tiny_mtp(tasks=("is", "rd"), datasets=("sota",))
    assert official.inssegdecoder.rpn._post_nms_top_n["training"] == 1000
    assert official.inssegdecoder.roi_heads.fg_bg_sampler.batch_size_per_image == 512
    assert official.rotdetdecoder.rpn_head.cfg.max_per_img == 2000
    assert official.rotdetdecoder.roi_head.cfg.num_samples == 512
    small = tiny_mtp(tasks=("is", "rd"), datasets=("sota",), budget=ProposalBudget(proposals=300, rcnn_samples=128))
    assert small.inssegdecoder.rpn._pre_nms_top_n == {"training": 300, "testing": 300}
    assert small.inssegdecoder.roi_heads.fg_bg_sampler.batch_size_per_image == 128
    assert small.rotdetdecoder.rpn_head.cfg.nms_pre == small.rotdetdecoder.rpn_head.cfg.max_per_img == 300
    assert small.rotdetdecoder.roi_head.cfg.num_samples == 128


def test_joint_semantic_trunk_trains_with_one_image_per_dataset():
    model = tiny_mtp(tasks=("ss",), joint_semantic_trunk=True)
    batches = {d: make_batch(c, batch=1, seed=i) for i, (d, c) in enumerate(TINY_CLASSES.items())}
    losses = model(batches)
    assert set(losses) == {"sota/ss", "sior/ss", "fast/ss"} and torch.isfinite(total_loss(losses))
