"""Inference helpers: whole image, sliding window, test-time augmentation."""
