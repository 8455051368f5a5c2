"""Horizontal detectors (Faster R-CNN, Mask R-CNN, RetinaNet) from torchvision parts."""
