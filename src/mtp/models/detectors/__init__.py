"""Detectors composed from parts (torchvision style): horizontal and oriented."""
