"""Shared task pieces: the official pixel cross-entropy normalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtp.tasks.common import pixel_cross_entropy

TINY = {"embed_dim": 32, "depth": 4, "num_heads": 2, "interval": 2, "out_indices": [0, 1, 2, 3]}


def _logits_and_labels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, generator=g)
    labels = torch.randint(0, 4, (2, 8, 8), generator=g)
    labels[0, :, :6] = 255  # 48 of the 128 pixels ignored
    return logits, labels


def test_official_rule_divides_by_all_pixels_ignored_included():
    """mmseg CrossEntropyLoss(avg_non_ignore=False) (its default, used by every official config): per-pixel CE
    with 0 at ignored pixels, then the mean over ALL pixels."""
    logits, labels = _logits_and_labels()
    per_pixel = F.cross_entropy(logits, labels, ignore_index=255, reduction="none")  # 0 where ignored
    official = per_pixel.sum() / labels.numel()
    assert pixel_cross_entropy(logits, labels) == pytest.approx(float(official), rel=1e-6)
    valid = (labels != 255).sum()
    assert pixel_cross_entropy(logits, labels) == pytest.approx(float(per_pixel.sum() / 128), rel=1e-6)
    non_ignore = pixel_cross_entropy(logits, labels, avg_non_ignore=True)
    assert non_ignore == pytest.approx(float(F.cross_entropy(logits, labels, ignore_index=255)), rel=1e-6)
    assert non_ignore == pytest.approx(float(official * 128 / valid), rel=1e-6)


def test_all_ignored_batch_gives_zero_not_nan():
    logits = torch.randn(1, 3, 4, 4)
    labels = torch.full((1, 4, 4), 255)
    assert pixel_cross_entropy(logits, labels) == 0 and pixel_cross_entropy(logits, labels, avg_non_ignore=True) == 0


def test_segmentation_and_change_detection_tasks_use_the_official_rule_by_default():
    from mtp.tasks.change_detection import ChangeDetectionTask
    from mtp.tasks.segmentation import SemanticSegmentationTask

    logits, labels = _logits_and_labels()
    seg = SemanticSegmentationTask(num_classes=4, img_size=64, backbone_kwargs=TINY, decode_channels=16)
    assert seg.loss(logits, labels) == pytest.approx(float(pixel_cross_entropy(logits, labels)), rel=1e-6)
    seg_opt = SemanticSegmentationTask(4, img_size=64, backbone_kwargs=TINY, decode_channels=16, avg_non_ignore=True)
    assert seg_opt.loss(logits, labels) == pytest.approx(float(F.cross_entropy(logits, labels, ignore_index=255)))
    cd = ChangeDetectionTask(img_size=64, backbone_kwargs=TINY, decoder_channels=[8] * 4)
    two = logits[:, :2]
    binary = torch.where(labels == 255, 255, labels % 2)
    assert cd.loss(two, binary) == pytest.approx(float(pixel_cross_entropy(two, binary)), rel=1e-6)
