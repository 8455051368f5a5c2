"""Models: backbones (ViT+RVSA), whole task models by name (:func:`create_model`), and checkpoint loading."""

from mtp.models.backbones import create_backbone, list_backbones, register_backbone
from mtp.models.checkpoints import load_checkpoint
from mtp.models.factory import create_model, list_architectures, list_models, register_architecture

__all__ = [
    "create_backbone",
    "create_model",
    "list_architectures",
    "list_backbones",
    "list_models",
    "load_checkpoint",
    "register_architecture",
    "register_backbone",
]
