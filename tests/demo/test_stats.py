"""Paired gains and the 2σ verdict of the demo (mtp.demo.stats)."""

import math

import pytest

from mtp.demo.stats import mean_std, paired_gain, verdict


def test_mean_std_is_the_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([0.5]) == (0.5, 0.0)


def test_paired_gain_uses_per_seed_differences_and_the_standard_error():
    gain = paired_gain([0.53, 0.51, 0.55], [0.50, 0.50, 0.51], gated=True)
    assert gain["per_seed"] == pytest.approx([0.03, 0.01, 0.04])
    assert gain["mean"] == pytest.approx(0.08 / 3)
    assert gain["sd"] == pytest.approx(
        math.sqrt(((0.03 - 0.08 / 3) ** 2 + (0.01 - 0.08 / 3) ** 2 + (0.04 - 0.08 / 3) ** 2) / 2)
    )
    assert gain["se"] == pytest.approx(gain["sd"] / math.sqrt(3))
    assert gain["sigmas"] == pytest.approx(gain["mean"] / gain["se"])
    assert gain["passed"] and gain["gated"]


def test_a_gain_inside_the_noise_fails():
    gain = paired_gain([0.53, 0.49, 0.52], [0.50, 0.50, 0.51], gated=True)  # +0.03, -0.01, +0.01
    assert gain["mean"] > 0 and gain["sigmas"] < 2 and not gain["passed"]


def test_a_negative_gain_fails_even_when_consistent():
    gain = paired_gain([0.40, 0.41, 0.42], [0.50, 0.51, 0.52], gated=True)
    assert gain["mean"] < 0 and not gain["passed"]


def test_identical_positive_gains_pass_with_infinite_sigmas():
    gain = paired_gain([0.6, 0.7], [0.5, 0.6], gated=True)
    assert gain["sigmas"] == math.inf and gain["passed"]


def test_one_seed_never_passes():
    gain = paired_gain([0.9], [0.1], gated=True)
    assert math.isnan(gain["sigmas"]) and not gain["passed"]


def test_mismatched_seed_counts_are_an_error():
    with pytest.raises(ValueError, match="same non-zero number of seeds"):
        paired_gain([0.5, 0.6], [0.5], gated=True)


def _task(name, *gains):
    return {"name": name, "metric": "mIoU", "gains": [{"arm": "mtp", **g} for g in gains]}


def test_verdict_needs_every_gated_gain_and_ignores_ungated_ones():
    good = paired_gain([0.6, 0.62, 0.61], [0.5, 0.51, 0.5], gated=True)
    bad_info = paired_gain([0.4, 0.6, 0.5], [0.5, 0.5, 0.5], gated=False)
    bad_gated = {**bad_info, "gated": True}
    assert verdict([_task("segmentation", good), _task("change_detection", bad_info)])["passed"]
    result = verdict([_task("segmentation", good), _task("change_detection", bad_gated)])
    assert not result["passed"] and "change_detection" in result["reason"] and "below 2σ" in result["reason"]


def test_verdict_without_a_gated_comparison_fails():
    info = paired_gain([0.6, 0.62], [0.5, 0.51], gated=False)
    assert not verdict([_task("segmentation", info)])["passed"]
