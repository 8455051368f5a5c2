"""Rotated-box operations in pure PyTorch (public names are re-exported by :mod:`mtp.ops`)."""
