"""The MTP multi-task pretraining model (official ``MutliTaskPretrnFramework`` in ``Multi-Task_Pretrain/models.py``;
docs/RECIPES.md#pretraining-model).

One shared encoder runs on the concatenation of the dataset batches; its 4 maps are split back per
dataset. Per task, a shared decoder runs once per dataset with that dataset's final layers:

* ``ss``: UPerHead trunk (256 channels, ``semsegdecoder.decode_head``; its own ``conv_seg`` with one
  output exists but is unused, as in the official file) -> ``semseghead_k`` (Dropout2d + 1x1 conv);
  loss = pixel CE (ignore 255) on logits bilinearly resized to the label size.
* ``is``: Mask R-CNN from torchvision parts (``inssegdecoder.{neck, rpn, roi_heads}``, mmdet semantics
  as :func:`mtp.models.detectors.horizontal.rcnn.build_faster_rcnn`, match_low_quality True) with
  ``inssegroiboxhead_fc_{cls,reg}k`` and ``inssegroimaskhead_convk``.
* ``rd``: Oriented R-CNN (``rotdetdecoder.{neck, rpn_head, roi_head}``) with ``rotdetroiboxhead_fc_{cls,reg}k``.

k = 1 (SOTA), 2 (SIOR), 3 (FAST): the official numbering, kept for any subset of datasets. Top-level
attribute names are the official ones, so the whole-model checkpoint maps with a handful of rules
(:mod:`.keymap`). The total loss is the unweighted sum of every ``loss*`` term over tasks and datasets.

Batches (per dataset, :class:`mtp.data.datamodules.PretrainingDataModule`): ``image``
(B, 3, S, S) normalised; ``semantic`` (B, S, S) int64 (0 background, c + 1 class c, 255 ignore);
``boxes`` / ``labels`` / ``masks`` (instances, xyxy pixels, 0-based); ``rboxes`` / ``rlabels`` (le90);
``img_hw`` (unpadded sizes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtp.models.backbones import create_backbone, merge_backbone_kwargs
from mtp.models.pretraining.decoders import InstanceDecoder, ProposalBudget, RotatedDecoder, SemanticDecoder
from mtp.models.pretraining.heads import dataset_linear, semantic_head

#: Official dataset numbering and class counts (without background), docs/RECIPES.md#samrs-data.
DATASET_INDEX = {"sota": 1, "sior": 2, "fast": 3}
OFFICIAL_NUM_CLASSES = {"sota": 18, "sior": 20, "fast": 37}
TASKS = ("ss", "is", "rd")


class MultiTaskPretrainModel(nn.Module):
    """Encoder + the selected task decoders + per-dataset heads (see the module docstring).

    Args:
        encoder: ViT+RVSA pretraining copy (global rel-pos tables, 4-level pyramid).
        num_classes: dataset name -> object classes without background (official 18 / 20 / 37).
        tasks: subset of ``('ss', 'is', 'rd')``.
        background: seg heads get a background channel (C + 1 outputs, official default). With False
            they have C outputs and background pixels are ignored (the official code instead keeps the
            +1 shift, which overflows FAST's head — docs/RECIPES.md#traps-in-the-official-repository).
        channels: decoder width (256).
        joint_semantic_trunk: run the UPerHead trunk once on all datasets' images instead of once per dataset
            (official). Its BatchNorm then normalises over the union of the datasets, which allows one image
            per dataset and process (a per-dataset call would see a single 1x1 pooled value) and saves two
            trunk passes; numerics differ from the official per-dataset statistics.
        budget: :class:`ProposalBudget` for the two detection decoders (None: official numbers).
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: Mapping[str, int],
        tasks: Sequence[str] = TASKS,
        background: bool = True,
        channels: int = 256,
        joint_semantic_trunk: bool = False,
        budget: ProposalBudget | None = None,
    ) -> None:
        super().__init__()
        self.joint_semantic_trunk = joint_semantic_trunk
        unknown = [t for t in tasks if t not in TASKS] + [d for d in num_classes if d not in DATASET_INDEX]
        if unknown or not tasks or not num_classes:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS} and datasets of {tuple(DATASET_INDEX)}; "
                             f"got tasks {list(tasks)}, datasets {list(num_classes)}")  # fmt: skip
        self.datasets = sorted(num_classes, key=DATASET_INDEX.__getitem__)
        self.num_classes = {d: int(num_classes[d]) for d in self.datasets}
        self.tasks = tuple(t for t in TASKS if t in tasks)
        self.background = background
        self.encoder = encoder
        in_channels = list(encoder.out_channels)
        if "ss" in self.tasks:
            self.semsegdecoder = SemanticDecoder(in_channels, channels)
            for d in self.datasets:
                self.add_module(f"semseghead_{self.k(d)}", semantic_head(channels, self.num_semantic_classes(d)))
        if "is" in self.tasks:
            self.inssegdecoder = InstanceDecoder(in_channels, channels, budget)
            for kind, make in (
                ("inssegroiboxhead_fc_cls", lambda c: dataset_linear(1024, c + 1, 0.01)),
                ("inssegroiboxhead_fc_reg", lambda c: dataset_linear(1024, 4 * c, 0.001)),
                ("inssegroimaskhead_conv", lambda c: nn.Conv2d(channels, c, 1)),
            ):
                for d in self.datasets:
                    self.add_module(f"{kind}{self.k(d)}", make(self.num_classes[d]))
        if "rd" in self.tasks:
            self.rotdetdecoder = RotatedDecoder(in_channels, channels, budget)
            for kind, make in (
                ("rotdetroiboxhead_fc_cls", lambda c: dataset_linear(1024, c + 1, 0.01)),
                ("rotdetroiboxhead_fc_reg", lambda c: dataset_linear(1024, 5, 0.001)),
            ):
                for d in self.datasets:
                    self.add_module(f"{kind}{self.k(d)}", make(self.num_classes[d]))

    @staticmethod
    def k(dataset: str) -> int:
        return DATASET_INDEX[dataset]

    def num_semantic_classes(self, dataset: str) -> int:
        return self.num_classes[dataset] + int(self.background)

    def encode(self, batches: Mapping[str, Mapping]) -> dict[str, list[Tensor]]:
        """One encoder pass over the concatenated images (all must share H, W) -> per-dataset 4 maps."""
        names = [d for d in self.datasets if d in batches]
        images = [batches[d]["image"] for d in names]
        if len({tuple(x.shape[-2:]) for x in images}) == 1:
            maps = self.encoder(torch.cat(images))
            parts = [torch.split(m, [len(x) for x in images]) for m in maps]
            return {d: [p[i] for p in parts] for i, d in enumerate(names)}
        return {d: list(self.encoder(x)) for d, x in zip(names, images, strict=True)}

    # ----------------------------------------------------------------- per-task passes
    def semantic_logits(self, dataset: str, feats: Sequence[Tensor]) -> Tensor:
        """(B, n_ss, H/4, W/4) logits at the encoder's stride-4 resolution."""
        return getattr(self, f"semseghead_{self.k(dataset)}")(self.semsegdecoder(feats))

    def semantic_loss(
        self, dataset: str, feats: Sequence[Tensor], semantic: Tensor, trunk: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Pixel CE of one dataset; ``trunk``: precomputed UPerHead output (joint mode)."""
        if trunk is None:
            logits = self.semantic_logits(dataset, feats)
        else:
            logits = getattr(self, f"semseghead_{self.k(dataset)}")(trunk)
        logits = F.interpolate(logits, size=semantic.shape[-2:], mode="bilinear", align_corners=False)
        target = semantic.long()
        if not self.background:
            target = torch.where((target == 0) | (target == 255), 255, target - 1)
        # mmseg reduction (avg_non_ignore=False): mean over all pixels, ignored ones contribute 0.
        loss = F.cross_entropy(logits.float(), target, ignore_index=255, reduction="sum") / max(target.numel(), 1)
        return {"loss_ce": loss}

    def select_instance_heads(self, dataset: str) -> None:
        k, heads = self.k(dataset), self.inssegdecoder.roi_heads
        fc_cls, fc_reg = getattr(self, f"inssegroiboxhead_fc_cls{k}"), getattr(self, f"inssegroiboxhead_fc_reg{k}")
        heads.box_predictor.select(fc_cls, fc_reg)
        heads.mask_predictor.select(getattr(self, f"inssegroimaskhead_conv{k}"))

    def instance(self, dataset: str, feats: Sequence[Tensor], batch: Mapping, with_targets: bool):
        self.select_instance_heads(dataset)
        targets = None
        if with_targets:
            targets = [
                {"boxes": b.float(), "labels": lab.long() + 1, "masks": m}
                for b, lab, m in zip(batch["boxes"], batch["labels"], batch["masks"], strict=True)
            ]
        return self.inssegdecoder(feats, batch["image"], batch["img_hw"], targets)

    def rotated(self, dataset: str, feats: Sequence[Tensor], batch: Mapping, with_targets: bool):
        k = self.k(dataset)
        self.rotdetdecoder.roi_head.bbox_head.select(
            getattr(self, f"rotdetroiboxhead_fc_cls{k}"), getattr(self, f"rotdetroiboxhead_fc_reg{k}")
        )
        if not with_targets:
            return self.rotdetdecoder(feats, batch["img_hw"])
        rboxes = [r.float() for r in batch["rboxes"]]
        return self.rotdetdecoder(feats, batch["img_hw"], rboxes, [lab.long() for lab in batch["rlabels"]])

    # ----------------------------------------------------------------- training
    def forward(self, batches: Mapping[str, Mapping]) -> dict[str, dict[str, Tensor]] | dict[str, object]:
        """Training mode: ``{"<dataset>/<task>": {loss name: value, ...}}`` for every dataset and task (sum them
        with :func:`total_loss`). Evaluation mode: :meth:`predict`."""
        if not self.training:
            return self.predict(batches)
        feats = self.encode(batches)
        trunks: dict[str, Tensor] = {}
        if "ss" in self.tasks and self.joint_semantic_trunk:
            joint = self.semsegdecoder([torch.cat([f[i] for f in feats.values()]) for i in range(4)])
            trunks = dict(zip(feats, torch.split(joint, [len(f[0]) for f in feats.values()]), strict=True))
        losses: dict[str, dict[str, Tensor]] = {}
        for d, f in feats.items():
            batch = batches[d]
            if "ss" in self.tasks:
                losses[f"{d}/ss"] = self.semantic_loss(d, f, batch["semantic"], trunks.get(d))
            if "is" in self.tasks:
                losses[f"{d}/is"] = self.instance(d, f, batch, with_targets=True)
            if "rd" in self.tasks:
                losses[f"{d}/rd"] = self.rotated(d, f, batch, with_targets=True)
        return losses


    def predict(self, batches: Mapping[str, Mapping]) -> dict[str, object]:
        """Per dataset and task, in the resized-image frame (needs ``image`` and ``img_hw`` per batch):
        ``"<d>/ss"``: logits (B, C_d + background, H/4, W/4); ``"<d>/is"``: per image {boxes (xyxy), labels
        (0-based), scores, masks (N, 1, 28, 28) box-relative probabilities}; ``"<d>/rd"``: per image {rboxes
        (le90), labels (0-based), scores}."""
        out: dict[str, object] = {}
        for d, f in self.encode(batches).items():
            if "ss" in self.tasks:
                out[f"{d}/ss"] = self.semantic_logits(d, f)
            if "is" in self.tasks:
                dets = self.instance(d, f, batches[d], with_targets=False)
                out[f"{d}/is"] = [{**det, "labels": det["labels"] - 1} for det in dets]
            if "rd" in self.tasks:
                out[f"{d}/rd"] = self.rotated(d, f, batches[d], with_targets=False)
        return out


def total_loss(losses: Mapping[str, Mapping[str, Tensor]]) -> Tensor:
    """Official combination: the unweighted sum of every entry whose name contains ``loss``."""
    terms = [v for group in losses.values() for name, v in group.items() if "loss" in name]
    return torch.stack([t.float() for t in terms]).sum()


def build_mtp_model(
    backbone: str = "vit_b_rvsa",
    *,
    img_size: int = 448,
    datasets: Sequence[str] = ("sota", "sior", "fast"),
    tasks: Sequence[str] = TASKS,
    num_classes: Mapping[str, int] | None = None,
    background: bool = True,
    pretrained: str | Path | None = None,
    channels: int = 256,
    joint_semantic_trunk: bool = False,
    budget: ProposalBudget | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    **backbone_overrides,
) -> MultiTaskPretrainModel:
    """MTP pretraining model on the ViT+RVSA pretraining copy (global rel-pos tables, pyramid taps).

    ``pretrained``: encoder initialisation (MAE file, official ``--init_backbone mae``). ``num_classes``
    defaults to the official SAMRS counts for ``datasets``.
    """
    counts = {d: (num_classes or OFFICIAL_NUM_CLASSES)[d] for d in datasets}
    overrides = merge_backbone_kwargs(backbone_overrides, backbone_kwargs)
    encoder = create_backbone(backbone, img_size=img_size, pretrained=pretrained, **overrides)
    return MultiTaskPretrainModel(
        encoder,
        counts,
        tasks=tasks,
        background=background,
        channels=channels,
        joint_semantic_trunk=joint_semantic_trunk,
        budget=budget,
    )
