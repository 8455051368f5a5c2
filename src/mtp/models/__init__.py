"""Models: backbones (ViT+RVSA), and checkpoint loading."""

from mtp.models.backbones import create_backbone, list_backbones, register_backbone
from mtp.models.checkpoints import load_checkpoint

__all__ = ["create_backbone", "list_backbones", "load_checkpoint", "register_backbone"]
