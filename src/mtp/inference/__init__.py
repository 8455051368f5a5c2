"""Inference helpers: whole image, sliding window, test-time augmentation."""

from mtp.inference.segmentation import (
    TTAConfig,
    predict_segmentation,
    predict_segmentation_list,
    slide_inference,
    slide_windows,
    tta_inference,
    whole_inference,
)

__all__ = [
    "TTAConfig",
    "predict_segmentation",
    "predict_segmentation_list",
    "slide_inference",
    "slide_windows",
    "tta_inference",
    "whole_inference",
]
