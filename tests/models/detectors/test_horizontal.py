"""Faster R-CNN / Mask R-CNN / RetinaNet from torchvision parts with mmdet semantics and official keys."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import roi_align

from mtp.models.checkpoint_reader import CheckpointError
from mtp.models.detectors.horizontal.components import MaxIoUMatcher, MMDetRoIAlign, UnroundedAnchorGenerator
from mtp.models.detectors.horizontal.keymap import load_mmdet_detector, mmdet_rcnn_key, mmdet_retinanet_key
from mtp.models.detectors.horizontal.rcnn import build_faster_rcnn, build_mask_rcnn
from mtp.models.detectors.horizontal.retinanet import build_retinanet
from tests.official_keys import official_keys

TINY = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=(0, 1, 2, 3), drop_path_rate=0.0)


def test_faster_rcnn_official_keys_map_onto_our_parameters():
    official = official_keys("faster_rcnn_dior_vit_b")
    with torch.device("meta"):
        model = build_faster_rcnn("vit_b_rvsa", num_classes=20, img_size=800)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapped = {mmdet_rcnn_key(k): shape for k, shape in official.items()}
    for key, shape in mapped.items():
        if key.endswith("cls_score.weight") or key.endswith("cls_score.bias"):
            assert ours[key][0] == shape[0]  # K + 1 rows, background moves from last to first
        elif "box_predictor.bbox_pred" in key:
            assert ours[key][0] == shape[0] + 4  # torchvision adds the background box
        else:
            assert ours[key] == shape, key
    assert {k for k in ours if not k.startswith("backbone.body.")} == set(mapped)


def test_mask_head_and_retinanet_official_keys():
    mask = official_keys("mask_rcnn_mask_branch")
    with torch.device("meta"):
        mask_model = build_mask_rcnn("vit_b_rvsa", num_classes=20, img_size=800)
        retina = build_retinanet("vit_b_rvsa", num_classes=60, img_size=416)
    ours = {k: tuple(v.shape) for k, v in mask_model.state_dict().items()}
    for key, shape in mask.items():
        mapped = mmdet_rcnn_key(key)
        assert ours[mapped][1:] == shape[1:], key
    retina_official = official_keys("retinanet_xview_vit_b")
    retina_ours = {k: tuple(v.shape) for k, v in retina.state_dict().items()}
    mapped = {mmdet_retinanet_key(k): s for k, s in retina_official.items()}
    assert mapped == {k: v for k, v in retina_ours.items() if not k.startswith("backbone.body.")}


def test_anchors_are_not_rounded_and_match_mmdet():
    gen = UnroundedAnchorGenerator(((32.0,),), ((0.5, 1.0, 2.0),))
    base = gen.generate_anchors([32.0], [0.5, 1.0, 2.0])
    torch.testing.assert_close(base[0], torch.tensor([-16 * math.sqrt(2), -8 * math.sqrt(2), 16 * math.sqrt(2),
                                                      8 * math.sqrt(2)]))  # fmt: skip


def test_roi_align_follows_the_mmdet_extractor():
    torch.manual_seed(0)
    feats = {str(i): torch.randn(2, 4, 64 // 2**i, 64 // 2**i) for i in range(4)}
    boxes = [torch.tensor([[0.0, 0, 20, 20], [10, 10, 200, 120]]), torch.tensor([[5.0, 5, 60, 50]])]
    pooler = MMDetRoIAlign(output_size=7)
    out = pooler(feats, boxes, [(256, 256)] * 2)
    # box 0: sqrt(400)=20 -> level 0; box 1: sqrt(190*110)~144.6 -> level 1; box 2: ~52.4 -> level 0
    expected = [
        roi_align(feats["0"], torch.tensor([[0, 0.0, 0, 20, 20]]), 7, 1 / 4, 0, aligned=True),
        roi_align(feats["1"], torch.tensor([[0, 10.0, 10, 200, 120]]), 7, 1 / 8, 0, aligned=True),
        roi_align(feats["0"], torch.tensor([[1, 5.0, 5, 60, 50]]), 7, 1 / 4, 0, aligned=True),
    ]
    torch.testing.assert_close(out, torch.cat(expected))


def test_matcher_codes_follow_mmdet():
    overlaps = torch.tensor([[0.75, 0.2, 0.5, 0.35], [0.1, 0.25, 0.6, 0.1]])
    matches = MaxIoUMatcher(0.7, 0.3, 0.3, match_low_quality=True)(overlaps)
    assert matches.tolist() == [0, -1, 1, -2]


def randomised(model):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.eval()


def to_official(state: dict, retinanet: bool) -> dict:
    """Inverse of the key map and tensor re-ordering (what an mmdet file holds)."""
    forward = mmdet_retinanet_key if retinanet else mmdet_rcnn_key
    candidates = [k for k in official_keys("retinanet_xview_vit_b" if retinanet else "faster_rcnn_dior_vit_b")]
    candidates += [] if retinanet else list(official_keys("mask_rcnn_mask_branch"))
    inverse = {forward(k): k for k in candidates}
    out = {}
    for key, value in state.items():
        if key.startswith("backbone.body."):
            out["backbone." + key[len("backbone.body.") :]] = value
            continue
        name = inverse.get(key)
        if name is None:  # layer indices beyond the listed example (none for these configs)
            raise KeyError(key)
        if "fc_cls" in name:
            value = torch.cat([value[1:], value[:1]])
        elif "fc_reg" in name:
            value = value[4:]
        elif "conv_logits" in name:
            value = value[1:]
        out[name] = value
    return out


@pytest.mark.parametrize("builder,retinanet", [(build_faster_rcnn, False), (build_mask_rcnn, False),
                                               (build_retinanet, True)])  # fmt: skip
def test_official_file_reproduces_the_source_detections(tmp_path, builder, retinanet):
    torch.manual_seed(0)
    num_classes = 4
    source = randomised(builder("vit_b_rvsa", num_classes=num_classes, img_size=128, fpn_channels=256, **TINY))
    torch.save({"meta": {}, "state_dict": to_official(source.state_dict(), retinanet)}, tmp_path / "official.pth")
    target = builder("vit_b_rvsa", num_classes=num_classes, img_size=128, fpn_channels=256, **TINY).eval()
    report = load_mmdet_detector(target, tmp_path / "official.pth", retinanet=retinanet)
    assert report.unexpected_keys == [] and report.missing_keys == []
    if not retinanet:  # the background rows are what torchvision keeps there
        target_state = target.state_dict()
        torch.testing.assert_close(target_state["roi_heads.box_predictor.bbox_pred.weight"][4:],
                                   source.state_dict()["roi_heads.box_predictor.bbox_pred.weight"][4:])  # fmt: skip
        with torch.no_grad():
            source.roi_heads.box_predictor.bbox_pred.weight[:4] = 0
            source.roi_heads.box_predictor.bbox_pred.bias[:4] = 0
            if hasattr(source.roi_heads, "mask_predictor") and source.roi_heads.mask_predictor is not None:
                source.roi_heads.mask_predictor.mask_fcn_logits.weight[:1] = 0
                source.roi_heads.mask_predictor.mask_fcn_logits.bias[:1] = 0
    images = [torch.randn(3, 128, 128)]
    with torch.no_grad():
        a, b = source(images)[0], target(images)[0]
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_checkpoint_for_other_classes_fails(tmp_path):
    source = build_faster_rcnn("vit_b_rvsa", num_classes=4, img_size=128, fpn_channels=32, **TINY)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "mtp.ckpt")
    with pytest.raises(CheckpointError, match="checkpoint for 4 classes, model has 6"):
        load_mmdet_detector(build_faster_rcnn("vit_b_rvsa", num_classes=6, img_size=128, fpn_channels=32, **TINY),
                            tmp_path / "mtp.ckpt")  # fmt: skip


def test_training_losses_and_inference_for_every_detector():
    torch.manual_seed(0)
    images = [torch.randn(3, 128, 128), torch.randn(3, 96, 128)]
    masks = torch.zeros(2, 128, 128, dtype=torch.uint8)
    masks[0, 10:50, 20:60] = 1
    masks[1, 60:90, 60:120] = 1
    targets = [
        {"boxes": torch.tensor([[20.0, 10, 60, 50], [60, 60, 120, 90]]), "labels": torch.tensor([1, 3]),
         "masks": masks},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
         "masks": torch.zeros(0, 96, 128, dtype=torch.uint8)},
    ]  # fmt: skip
    for builder in (build_faster_rcnn, build_mask_rcnn, build_retinanet):
        model = builder("vit_b_rvsa", num_classes=3, img_size=128, fpn_channels=32, **TINY).train()
        losses = model(images, targets if builder is not build_retinanet else
                       [{"boxes": t["boxes"], "labels": (t["labels"] - 1).clamp(min=0)} for t in targets])  # fmt: skip
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        model.eval()
        with torch.no_grad():
            out = model(images)
        assert len(out) == 2 and all(o["boxes"].shape[-1] == 4 for o in out)
