"""Oriented R-CNN: official names, coders' test vectors, training losses, inference, checkpoints."""

from __future__ import annotations

import math
import re

import pytest
import torch

from mtp.models.checkpoint_reader import CheckpointError
from mtp.models.detectors.oriented_rcnn.coders import DeltaXYWHTCoder, MidpointOffsetCoder
from mtp.models.detectors.oriented_rcnn.model import (
    build_oriented_rcnn,
    load_oriented_rcnn_checkpoint,
    official_to_ours,
)
from mtp.ops.rotated.boxes import rbox2corners, regularize_rboxes
from mtp.ops.rotated.iou import rotated_iou
from tests.official_keys import official_keys

TINY = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=(0, 1, 2, 3), drop_path_rate=0.0)


def official_head_keys() -> dict[str, tuple[int, ...]]:
    """neck / rpn_head / roi_head keys of the official DIOR-R ViT-B checkpoint."""
    return official_keys("oriented_rcnn_diorr_vit_b")


def test_every_official_head_key_maps_to_a_parameter_of_the_same_shape():
    official = official_head_keys()
    assert len(official) == 30
    with torch.device("meta"):
        model = build_oriented_rcnn("vit_b_rvsa", num_classes=20, img_size=800)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapped = {official_to_ours(k): shape for k, shape in official.items()}
    assert all(ours[k] == shape for k, shape in mapped.items())
    head_keys = {k for k in ours if not k.startswith("backbone.")}
    assert head_keys == set(mapped)
    assert sum(k.startswith("backbone.") for k in ours) == 235  # the detection copy (RVSA_MTP_branches)


def test_midpoint_offset_coder_test_vector_and_round_trip():
    coder = MidpointOffsetCoder()
    anchor = torch.tensor([[40.0, 30.0, 160.0, 110.0]])
    gt = torch.tensor([[100.0, 72.0, 100.0, 40.0, math.pi / 6]])
    deltas = coder.encode(anchor, gt)
    torch.testing.assert_close(
        deltas, torch.tensor([[0.0, 0.025, -0.1184, 0.0564, -0.6248, 0.1815]]), atol=1e-4, rtol=0
    )
    decoded = coder.decode(anchor, deltas)
    torch.testing.assert_close(rbox2corners(decoded).sort(1)[0], rbox2corners(gt).sort(1)[0], atol=2e-3, rtol=0)
    axis = torch.tensor([[100.0, 100.0, 80.0, 8.0, 0.0]])
    hbox = torch.tensor([[60.0, 96.0, 140.0, 104.0]])
    torch.testing.assert_close(coder.encode(hbox, axis), torch.tensor([[0.0, 0, 0, 0, 1, 1]]))
    torch.testing.assert_close(coder.decode(hbox, coder.encode(hbox, axis)), axis, atol=1e-4, rtol=0)


def test_midpoint_offset_coder_round_trips_tilted_boxes_and_clamps():
    torch.manual_seed(0)
    n = 500
    gt = torch.stack(
        [torch.rand(n) * 500, torch.rand(n) * 500, 10 + torch.rand(n) * 90, 5 + torch.rand(n) * 40,
         (torch.rand(n) - 0.5) * math.pi], 1
    )  # fmt: skip
    gt = gt[(gt[:, 4].abs() > math.radians(1)) & ((gt[:, 4].abs() - math.pi / 2).abs() > math.radians(1))]
    coder = MidpointOffsetCoder()
    anchors = torch.cat([gt[:, :2] - 30, gt[:, :2] + 30], 1)
    decoded = coder.decode(anchors, coder.encode(anchors, gt))
    assert rotated_iou(decoded.double(), gt.double(), aligned=True).min() > 0.999
    torch.testing.assert_close(decoded, regularize_rboxes(gt, "le90"), atol=5e-3, rtol=1e-4)
    huge = coder.decode(anchors[:1], torch.tensor([[0.0, 0, 10, -10, 0.2, 0.1]]))  # dw, dh clamped to ±4.1352
    assert torch.isfinite(huge).all() and huge[0, 2] <= 60 * math.exp(4.1353) * math.sqrt(2)


def test_delta_xywht_coder_vector_representation_invariance_and_round_trip():
    coder = DeltaXYWHTCoder()
    proposal = torch.tensor([[100.0, 70.0, 90.0, 35.0, 0.5]])
    gt = torch.tensor([[103.0, 72.0, 100.0, 40.0, math.pi / 6]])
    deltas = coder.encode(proposal, gt)
    torch.testing.assert_close(deltas, torch.tensor([[0.3991, 0.0905, 0.5268, 0.6677, 0.2360]]), atol=1e-4, rtol=0)
    swapped = torch.tensor([[103.0, 72.0, 40.0, 100.0, math.pi / 6 + math.pi / 2]])
    torch.testing.assert_close(coder.encode(proposal, swapped), deltas)
    torch.testing.assert_close(coder.decode(proposal, deltas), gt, atol=1e-5, rtol=0)
    assert deltas[0, 4].abs() * 0.1 <= math.pi / 4
    clamped = coder.decode(proposal, deltas * 100, max_hw=(120, 130))
    assert 0 <= clamped[0, 0] <= 129 and 0 <= clamped[0, 1] <= 119


def tiny_detector(num_classes=3):
    torch.manual_seed(0)
    return build_oriented_rcnn("vit_b_rvsa", num_classes=num_classes, img_size=128, fpn_channels=32, **TINY)


def test_training_losses_are_finite_and_reach_every_head_parameter():
    model = tiny_detector().train()
    images = torch.randn(2, 3, 128, 128)
    gt = [torch.tensor([[40.0, 50.0, 40.0, 16.0, 0.3], [90.0, 80.0, 30.0, 20.0, -1.0]]), torch.zeros(0, 5)]
    labels = [torch.tensor([0, 2]), torch.zeros(0, dtype=torch.long)]
    losses = model(images, [(128, 128), (120, 100)], gt, labels)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "acc"}
    total = sum(v for k, v in losses.items() if k.startswith("loss"))
    assert torch.isfinite(total)
    total.backward()
    missing = [n for n, p in model.named_parameters() if not n.startswith("backbone") and p.grad is None]
    assert not missing


def test_inference_outputs_per_image_detections():
    model = tiny_detector().eval()
    with torch.no_grad():
        results = model(torch.randn(2, 3, 128, 128), [(128, 128), (96, 128)])
    assert len(results) == 2
    for r in results:
        assert r["rboxes"].shape[1] == 5 and len(r["scores"]) == len(r["labels"]) == len(r["rboxes"])
        assert (r["scores"] > 0.05).all() and (r["labels"] < 3).all()
        assert (r["scores"][:-1] >= r["scores"][1:]).all()


def test_official_checkpoint_layout_loads_through_the_key_map(tmp_path):
    source = tiny_detector()
    with torch.no_grad():
        for p in source.parameters():
            p.normal_(0, 0.02)
    inverse = {official_to_ours(k): k for k in official_head_keys()}
    state = {}
    for key, value in source.state_dict().items():
        fpn = re.match(r"neck\.fpn\.(inner|layer)_blocks\.(\d+)\.0\.(weight|bias)", key)
        if fpn:
            name = "lateral_convs" if fpn[1] == "inner" else "fpn_convs"
            key = f"neck.{name}.{fpn[2]}.conv.{fpn[3]}"
        state[key] = value
    assert set(inverse.values()) <= set(state)  # the official names are what the file holds
    torch.save({"meta": {"epoch": 12}, "state_dict": state, "optimizer": {}}, tmp_path / "epoch_12.pth")
    target = tiny_detector()
    report = load_oriented_rcnn_checkpoint(target, tmp_path / "epoch_12.pth")
    assert report.missing_keys == [] and report.unexpected_keys == []
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, msg=key)
    with pytest.raises(CheckpointError, match="checkpoint for 3 classes, model has 5"):
        load_oriented_rcnn_checkpoint(tiny_detector(num_classes=5), tmp_path / "epoch_12.pth")
