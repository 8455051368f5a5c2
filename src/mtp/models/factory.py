"""Whole task models by name, like ``timm.create_model`` / ``torchvision.models.get_model``.

>>> from mtp.models import create_model, list_models
>>> list_models("upernet_*")
['upernet_internimage_xl', 'upernet_vit_b_rvsa', 'upernet_vit_l_rvsa']
>>> seg = create_model("upernet_vit_b_rvsa", num_classes=7, img_size=512, pretrained="mtp:vit_b_rvsa")

Names are ``<architecture>_<backbone>`` for every registered architecture (typed builders below, registered
with :func:`register_architecture`) and every registered backbone (:func:`mtp.models.create_backbone`), so each
backbone (``vit_b_rvsa``, ``vit_l_rvsa``, ``internimage_xl``, any registered later) yields ``upernet_<backbone>`` & co.
with no change here.
Each returns a plain ``nn.Module`` with the official parameter names (official fine-tuned files load as they
are). ``forward`` contracts (images float32 RGB, normalised with the 0-255 mean / std of docs/CONVENTIONS.md;
boxes in input pixels; ``num_classes`` counts foreground classes):

* ``upernet``: (B, 3, H, W) -> logits (B, K, H/4, W/4) in both modes; the loss is the caller's (official:
  bilinear resize to the label size, cross-entropy with ignore index 255). :class:`~mtp.models.segmentor.Segmentor`.
* ``classifier``: (B, 3, H, W) -> logits (B, K) in both modes. :class:`~mtp.models.classifier.ImageClassifier`.
* ``changenet``: (B, 6, H, W) = cat(A, B) -> logits (B, K, 2H, 2W) (ViT; stride-4 backbones: (B, K, H, W)).
* ``faster_rcnn`` / ``mask_rcnn`` (torchvision ``FasterRCNN`` / ``MaskRCNN``): training
  ``model(images, targets)`` with images a list of (3, H_i, W_i) and targets ``[{"boxes": (N, 4) xyxy,
  "labels": (N,) int64 in 1..K}]`` (0 is background, torchvision's rule; + ``"masks"`` (N, H_i, W_i)) -> dict of
  losses (``loss_classifier``, ``loss_box_reg``, ``loss_objectness``, ``loss_rpn_box_reg`` (+ ``loss_mask``));
  evaluation ``model(images)`` -> per image {boxes, labels (1..K), scores (+ masks (N, 1, H_i, W_i))}.
* ``retinanet`` (torchvision ``RetinaNet``): the same with labels 0..K-1; losses ``classification``,
  ``bbox_regression``.
* ``oriented_rcnn``: training ``model(images, img_hw, gt_rboxes, gt_labels)`` with a (B, 3, H, W) batch padded
  to a multiple of 32, the unpadded sizes, (N, 5) le90 rboxes and labels 0..K-1 -> dict of losses
  (``loss_rpn_cls``, ``loss_rpn_bbox``, ``loss_cls``, ``loss_bbox``; ``acc`` is a metric); evaluation
  ``model(images, img_hw)`` -> per image {rboxes, labels (0..K-1), scores}.
* ``mtp``: training ``model({dataset: batch})`` -> {"<dataset>/<task>": {loss: value}} (sum with
  :func:`mtp.models.pretraining.total_loss`); evaluation -> predictions per dataset and task
  (:meth:`~mtp.models.pretraining.MultiTaskPretrainModel.predict`).

``pretrained`` accepts a path or a catalogue name (:mod:`mtp.weights`): backbone files (``mae:``, ``imp:``,
``mtp:``) and files of other architectures initialise the backbone; a whole file of this very model
(``loveda:upernet_vit_b_rvsa_mae_mtp``, ``mtp-whole:vit_b_rvsa`` for ``mtp_vit_b_rvsa``) loads into all of it,
with its ``num_classes`` / ``img_size`` as defaults. ``checkpoint_path`` loads a whole file (official toolbox
layout or an mtp / Lightning checkpoint) after building.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet

from mtp.models.backbones import list_backbones
from mtp.models.change_detector import ChangeDetector, build_change_detector, load_change_detector_checkpoint
from mtp.models.checkpoints import LoadReport
from mtp.models.classifier import ImageClassifier, build_classifier, load_classifier_checkpoint
from mtp.models.detectors.horizontal.keymap import load_mmdet_detector
from mtp.models.detectors.horizontal.rcnn import build_faster_rcnn, build_mask_rcnn
from mtp.models.detectors.horizontal.retinanet import build_retinanet
from mtp.models.detectors.oriented_rcnn.model import OrientedRCNN, build_oriented_rcnn, load_oriented_rcnn_checkpoint
from mtp.models.pretraining import MultiTaskPretrainModel, build_mtp_model, load_mtp_checkpoint
from mtp.models.segmentor import Segmentor, build_upernet, load_segmentor_checkpoint
from mtp.weights import get_weights, is_weights_name, resolve_checkpoint

log = logging.getLogger(__name__)

__all__ = ["UnknownModelError", "create_model", "list_architectures", "list_models", "register_architecture"]

Pretrained = str | Path | bool | None


class UnknownModelError(ValueError):
    """A model name that no registered architecture and backbone make (the message lists close matches)."""


@dataclass(frozen=True)
class Architecture:
    """A registered builder: ``build(backbone, *, pretrained, **kwargs)``; ``load(model, path)`` loads a whole file
    (official toolbox layout or mtp); ``task``: the task family; ``needs_num_classes``: no default class count."""

    name: str
    build: Callable[..., nn.Module]
    load: Callable[[nn.Module, str | Path], LoadReport]
    task: str
    needs_num_classes: bool = True


_ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(
    name: str, *, task: str, load: Callable[[nn.Module, str | Path], LoadReport], needs_num_classes: bool = True
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a typed builder ``fn(backbone: str, *, pretrained=None, **kwargs) -> nn.Module``."""

    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is registered twice")
        _ARCHITECTURES[name] = Architecture(name, fn, load, task, needs_num_classes)
        return fn

    return register


@register_architecture("upernet", task="segmentation", load=load_segmentor_checkpoint)
def upernet(
    backbone: str, *, num_classes: int, img_size: int = 512, pretrained: Pretrained = None, **kwargs
) -> Segmentor:
    """UperNet (mmseg names; ``channels`` 512, optional ``aux_head``) on the segmentation copy of ``backbone``."""
    return build_upernet(backbone, num_classes=num_classes, img_size=img_size, pretrained=pretrained, **kwargs)


@register_architecture("classifier", task="classification", load=load_classifier_checkpoint)
def classifier(
    backbone: str, *, num_classes: int, img_size: int = 224, pretrained: Pretrained = None, **kwargs
) -> ImageClassifier:
    """Scene classifier (mmpretrain names): GAP of the last backbone map + a linear head."""
    return build_classifier(backbone, num_classes=num_classes, img_size=img_size, pretrained=pretrained, **kwargs)


@register_architecture("changenet", task="change_detection", load=load_change_detector_checkpoint,
                       needs_num_classes=False)  # fmt: skip
def changenet(
    backbone: str, *, num_classes: int = 2, img_size: int = 256, pretrained: Pretrained = None, **kwargs
) -> ChangeDetector:
    """Siamese change detector (Open-CD names): shared backbone, |A - B| fusion, UNet head (``decoder_channels``)."""
    return build_change_detector(backbone, num_classes=num_classes, img_size=img_size, pretrained=pretrained, **kwargs)


@register_architecture("faster_rcnn", task="detection", load=load_mmdet_detector)
def faster_rcnn(
    backbone: str, *, num_classes: int, img_size: int = 800, pretrained: Pretrained = None, **kwargs
) -> FasterRCNN:
    """Faster R-CNN with FPN (torchvision model, mmdet semantics; DIOR configs)."""
    return build_faster_rcnn(backbone, num_classes=num_classes, img_size=img_size, pretrained=pretrained, **kwargs)


@register_architecture("mask_rcnn", task="detection", load=load_mmdet_detector)
def mask_rcnn(
    backbone: str, *, num_classes: int, img_size: int = 800, pretrained: Pretrained = None, **kwargs
) -> MaskRCNN:
    """Mask R-CNN with FPN (the MTP instance decoder as a detector; torchvision model, mmdet semantics)."""
    return build_mask_rcnn(backbone, num_classes=num_classes, img_size=img_size, pretrained=pretrained, **kwargs)


@register_architecture("retinanet", task="detection", load=partial(load_mmdet_detector, retinanet=True))
def retinanet(
    backbone: str, *, num_classes: int, img_size: int = 416, pretrained: Pretrained = None, **kwargs
) -> RetinaNet:
    """RetinaNet (torchvision model, mmdet semantics; xView configs)."""
    return build_retinanet(backbone, num_classes=num_classes, img_size=img_size, pretrained=pretrained, **kwargs)


@register_architecture("oriented_rcnn", task="rotated_detection", load=load_oriented_rcnn_checkpoint)
def oriented_rcnn(
    backbone: str, *, num_classes: int, img_size: int = 1024, pretrained: Pretrained = None, **kwargs
) -> OrientedRCNN:
    """Oriented R-CNN (le90; mmrotate 1.x names; ``rpn_cfg`` / ``rcnn_cfg`` override the official settings)."""
    return build_oriented_rcnn(backbone, num_classes=num_classes, img_size=img_size, pretrained=pretrained, **kwargs)


@register_architecture("mtp", task="pretraining", load=load_mtp_checkpoint, needs_num_classes=False)
def mtp(
    backbone: str,
    *,
    num_classes: Mapping[str, int] | None = None,
    img_size: int = 448,
    pretrained: Pretrained = None,
    **kwargs,
) -> MultiTaskPretrainModel:
    """The multi-task pretraining model (official names): ``datasets``, ``tasks``, ``num_classes`` per dataset
    (default the SAMRS 18 / 20 / 37), ``background``, ``channels``, ``budget``."""
    return build_mtp_model(backbone, num_classes=num_classes, img_size=img_size, pretrained=pretrained, **kwargs)


def list_architectures() -> list[str]:
    return sorted(_ARCHITECTURES)


def list_models(pattern: str | None = None, *, task: str | None = None) -> list[str]:
    """Every ``<architecture>_<backbone>`` name (sorted), optionally filtered by a shell pattern and a task family
    ('segmentation', 'classification', 'change_detection', 'detection', 'rotated_detection', 'pretraining')."""
    names = sorted(
        f"{a}_{b}" for a, spec in _ARCHITECTURES.items() for b in list_backbones() if task in (None, spec.task)
    )
    return fnmatch.filter(names, pattern) if pattern else names


def parse_model_name(name: str, backbone: str | None = None) -> tuple[str, str]:
    """``"upernet_vit_b_rvsa"`` -> ``("upernet", "vit_b_rvsa")``; an architecture name needs ``backbone``."""
    if name in _ARCHITECTURES and backbone is not None:
        return name, _check_backbone(name, backbone, name)
    for arch in sorted(_ARCHITECTURES, key=len, reverse=True):
        if name.startswith(arch + "_"):
            parsed = _check_backbone(arch, name[len(arch) + 1 :], name)
            if backbone is not None and backbone != parsed:
                raise ValueError(f"model {name!r} has backbone {parsed!r}, but backbone={backbone!r} was given")
            return arch, parsed
    if name in _ARCHITECTURES:
        raise UnknownModelError(f"{name!r} is an architecture: give backbone=... or a full name ({_examples(name)})")
    close = difflib.get_close_matches(name, list_models(), n=5, cutoff=0.5)
    raise UnknownModelError(
        f"unknown model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
        + f" (architectures: {', '.join(list_architectures())}; backbones: {', '.join(list_backbones())})"
    )  # fmt: skip


def _examples(arch: str) -> str:
    return ", ".join(f"{arch}_{b}" for b in list_backbones())


def _check_backbone(arch: str, backbone: str, name: str) -> str:
    if backbone not in list_backbones():
        close = difflib.get_close_matches(backbone, list_backbones(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(f'{arch}_{c}' for c in close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}: backbone {backbone!r} is not registered{hint} "
            f"(registered: {', '.join(list_backbones())}; register one with mtp.models.register_backbone)"
        )
    return backbone


def create_model(
    name: str,
    *,
    num_classes: int | Mapping[str, int] | None = None,
    backbone: str | None = None,
    pretrained: Pretrained = None,
    img_size: int | None = None,
    checkpoint_path: str | Path | None = None,
    **kwargs,
) -> nn.Module:
    """Build a task model by name (module docstring: names, forward contracts, weights).

    Args:
        name: ``<architecture>_<backbone>`` (:func:`list_models`) or an architecture with ``backbone``.
        num_classes: foreground classes (``mtp``: per dataset; ``changenet`` default 2).
        backbone: a registered backbone, when ``name`` is an architecture.
        pretrained: path or catalogue name of backbone weights, or of a whole file of this model; ``True`` =
            ``"mtp:<backbone>"`` (the MTP encoder of the release).
        img_size: training input size (ViT: position-embedding grid); default the architecture's official one.
        checkpoint_path: a whole-model file (path or catalogue name) loaded after building; it sets every weight,
            so ``pretrained`` is then not read (a config naming pretrained weights can test any whole file).
        **kwargs: architecture arguments (e.g. ``channels``, ``fpn_channels``, ``decoder_channels``, ``datasets``)
            and backbone overrides (``drop_path_rate`` — 0.3 in the official fine-tuning —, ``use_checkpoint``,
            ``embed_dim``, ``depth``, ...). ``backbone_kwargs={...}`` passes backbone overrides explicitly, which
            is needed where a name is both (InternImage ``channels`` vs the UperNet / MTP decoder ``channels``):
            ``create_model("upernet_internimage_xl", num_classes=7, channels=512, backbone_kwargs={"channels": 64})``.
    """
    arch, backbone = parse_model_name(name, backbone)
    spec, model_name = _ARCHITECTURES[arch], f"{arch}_{backbone}"
    if pretrained is True:
        pretrained = f"mtp:{backbone}"
    defaults: dict = {}
    if is_weights_name(pretrained):
        entry = get_weights(str(pretrained))
        if entry.backbone != backbone:
            raise ValueError(f"{pretrained} holds {entry.backbone} weights; model {model_name} has {backbone}")
        if entry.model == model_name and checkpoint_path is None:  # this model's whole file: its settings too
            checkpoint_path, pretrained, defaults = pretrained, None, dict(entry.create_kwargs)
    if checkpoint_path is not None and pretrained not in (None, False):
        # the whole file is loaded strictly (every weight of the model), so backbone weights would be overwritten:
        # not reading them saves the time and lets a config that names pretrained weights test another file
        log.info("checkpoint_path %s sets every weight: pretrained=%s is not loaded", checkpoint_path, pretrained)
        pretrained = None
    explicit = set(kwargs) | set(kwargs.get("backbone_kwargs") or {})  # given either way: overrides the file's
    args = {**{k: v for k, v in defaults.items() if k not in explicit}, **kwargs}
    args.update({k: v for k, v in (("num_classes", num_classes), ("img_size", img_size)) if v is not None})
    if spec.needs_num_classes and "num_classes" not in args:
        raise TypeError(f"create_model({model_name!r}) needs num_classes=...")
    whole = resolve_checkpoint(checkpoint_path) if checkpoint_path is not None else None  # fail before building
    model = spec.build(backbone, pretrained=pretrained if pretrained is not False else None, **args)
    if whole is not None:
        spec.load(model, whole)
    return model
