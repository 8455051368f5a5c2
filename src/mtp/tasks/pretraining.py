"""Multi-task pretraining (MTP) on SAMRS: the official ``main_pretrain.py`` recipe as a LightningModule.

Defaults are the official ones (docs/RECIPES.md#pretraining-optimiser): AdamW lr 6e-5, betas (0.9, 0.999), weight
decay 0.05 (none for 1-D parameters, biases and ``pos_embed``), ``CosineAnnealingLR(T_max=max_iters, eta_min=0)``
stepped every iteration with no warmup; clip the global grad norm at 5 with the Trainer (``gradient_clip_val: 5``).
Layer-wise decay is **off** by default, as it effectively is in the official run (its constructor looks for
``backbone.`` names, the encoder is called ``encoder.``); ``layer_decay: 0.9`` switches on the rule the fine-tuning
configs use.

Batches: ``{dataset: batch}`` from :class:`mtp.data.datamodules.PretrainingDataModule`
(training, a CombinedLoader in ``min_size`` mode = the official zip); validation gets one loader per dataset
(``dataloader_idx``). A non-finite loss stops the run with the iteration, the batch's files and the last
checkpoint. Validation per dataset: mIoU (background included, ignore 255), COCO bbox/segm mAP, DOTA
VOC07 mAP (IoU 0.5), and ``val/mtp_average`` = their mean, every term as a fraction (the official average
mixes % and fractions).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import paste_masks_in_image

from mtp.inference.outputs import write_json
from mtp.metrics.coco.evaluation import flatten_metrics
from mtp.metrics.coco.metric import CocoDetectionMetric
from mtp.metrics.dota.metric import DOTAMeanAP
from mtp.metrics.segmentation import SegmentationMetric
from mtp.models import create_model
from mtp.models.pretraining import total_loss
from mtp.models.pretraining.framework import ProposalBudget
from mtp.ops.rotated.boxes import rescale_rboxes
from mtp.tasks.base import MTPTask, NonFiniteLossError
from mtp.tasks.optim import build_adamw

__all__ = ["MultiTaskPretrainingTask", "NonFiniteLossError"]

log = logging.getLogger(__name__)


class MultiTaskPretrainingTask(MTPTask):
    """Args:
    backbone, img_size, backbone_kwargs: encoder (:func:`mtp.models.create_backbone`; official
        ``--image_size 448``, ``use_checkpoint: true`` = ``--use_ckpt True``).
    datasets, tasks: subsets of ``sota sior fast`` and ``ss is rd`` (official: all).
    num_classes: per-dataset object classes (default: the official 18 / 20 / 37).
    background: seg heads with a background channel (official True).
    pretrained: encoder initialisation (MAE file, ``--init_backbone mae``).
    load_from: whole MTP checkpoint (official ``Iter_*_pretrn_model.pth`` or ours) to start from.
    channels: decoder width (256). joint_semantic_trunk: see :class:`~mtp.models.pretraining.MultiTaskPretrainModel`
        (needed for one image per dataset on a single process). budget: smaller proposal / RoI counts for
        CPU runs (``{proposals: 300, rcnn_samples: 128}``; default the official numbers).
    lr, weight_decay, betas, layer_decay: AdamW (official 6e-5, 0.05, (0.9, 0.999), off).
    max_iters: cosine length (default ``trainer.max_steps``; official ``--end_iter``).
    output_dir: where validation writes ``metrics.json``.
    """

    def __init__(
        self,
        backbone: str = "vit_b_rvsa",
        img_size: int = 448,
        datasets: Sequence[str] = ("sota", "sior", "fast"),
        tasks: Sequence[str] = ("ss", "is", "rd"),
        num_classes: dict[str, int] | None = None,
        background: bool = True,
        backbone_kwargs: dict | None = None,
        pretrained: str | None = None,
        load_from: str | None = None,
        channels: int = 256,
        joint_semantic_trunk: bool = False,
        budget: ProposalBudget | None = None,
        lr: float = 6e-5,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        layer_decay: float | None = None,
        max_iters: int | None = None,
        output_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["pretrained", "load_from", "output_dir"])
        self.model = create_model(
            "mtp", backbone=backbone, img_size=img_size, datasets=datasets, tasks=tasks, num_classes=num_classes,
            background=background, pretrained=pretrained, checkpoint_path=load_from or None, channels=channels,
            joint_semantic_trunk=joint_semantic_trunk, budget=budget, backbone_kwargs=backbone_kwargs,
        )  # fmt: skip
        if "ss" in self.model.tasks:  # the UPerHead's own classifier exists (official key) but is never used
            self.model.semsegdecoder.decode_head.conv_seg.requires_grad_(False)
        self.output_dir = output_dir
        self.datasets = list(self.model.datasets)
        self.seg_metrics = torch.nn.ModuleDict()
        self.coco_metrics = torch.nn.ModuleDict()
        self.dota_metrics = torch.nn.ModuleDict()
        for d in self.datasets:
            if "ss" in self.model.tasks:
                self.seg_metrics[d] = SegmentationMetric(self.model.num_semantic_classes(d))
            if "is" in self.model.tasks:
                self.coco_metrics[d] = CocoDetectionMetric(("bbox", "segm"), num_classes=self.model.num_classes[d])
            if "rd" in self.model.tasks:
                self.dota_metrics[d] = DOTAMeanAP(self.model.num_classes[d], mode="mmrotate", ap_mode="11points")

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        hp = self.hparams
        optimizer = build_adamw(
            self.model, lr=hp.lr, weight_decay=hp.weight_decay, layer_decay=hp.layer_decay, betas=tuple(hp.betas),
            prefix="encoder.",
        )  # fmt: skip
        total = hp.max_iters or self.trainer.max_steps
        if not total or total < 1:
            raise ValueError("set trainer.max_steps (or model.max_iters): the cosine schedule needs its length")
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=0.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        batches = {d: b for d, b in batch.items() if d in self.datasets}
        losses = self.model(batches)
        loss = total_loss(losses)
        terms = {f"{g}.{k}": v for g, group in losses.items() for k, v in group.items() if "loss" in k}
        self.stop_if_non_finite(loss, terms, batches, batch_idx)
        size = sum(len(b["image"]) for b in batches.values())
        for group, terms in losses.items():
            group_loss = sum(v for k, v in terms.items() if "loss" in k)
            self.log(f"train/{group}", group_loss, batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        return loss

    # ----------------------------------------------------------------- validation
    def _dataset_of(self, batch: dict, dataloader_idx: int) -> str:
        name = batch.get("dataset")
        name = name[0] if isinstance(name, list | tuple) else name
        return name if name in self.datasets else self.datasets[dataloader_idx]

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        d = self._dataset_of(batch, dataloader_idx)
        feats = self.model.encode({d: batch})[d]
        if "ss" in self.model.tasks:
            self.seg_metrics[d].update(*self._semantic(d, feats, batch))
        if "is" in self.model.tasks:
            self.coco_metrics[d].update(self._instances(d, feats, batch), self._instance_targets(batch))
        if "rd" in self.model.tasks:
            preds = self.model.rotated(d, feats, batch, with_targets=False)
            targets = []
            for i, (sx, sy) in enumerate(batch["scale_factor"]):
                preds[i]["rboxes"] = rescale_rboxes(preds[i]["rboxes"], 1.0 / sx, 1.0 / sy)
                targets.append({"rboxes": batch["rboxes"][i].float(), "labels": batch["rlabels"][i]})
            self.dota_metrics[d].update(preds, targets)

    def _semantic(self, d: str, feats: list[Tensor], batch: dict) -> tuple[Tensor, Tensor]:
        """Predicted class maps upsampled (bilinear) to each original size, flattened with their labels."""
        logits = self.model.semantic_logits(d, feats)
        logits = F.interpolate(logits, size=batch["image"].shape[-2:], mode="bilinear", align_corners=False)
        preds, labels = [], []
        for i, ((h, w), ori) in enumerate(zip(batch["img_hw"], batch["ori_hw"], strict=True)):
            one = F.interpolate(logits[i : i + 1, :, :h, :w], size=tuple(ori), mode="bilinear", align_corners=False)
            target = batch["semantic"][i].long()
            if not self.model.background:
                target = torch.where((target == 0) | (target == 255), 255, target - 1)
            preds.append(one.argmax(1).flatten())
            labels.append(target.flatten())
        return torch.cat(preds), torch.cat(labels)

    def _instances(self, d: str, feats: list[Tensor], batch: dict) -> list[dict[str, Tensor]]:
        results = []
        detections = self.model.instance(d, feats, batch, with_targets=False)
        for det, (sx, sy), ori in zip(detections, batch["scale_factor"], batch["ori_hw"], strict=True):
            boxes = det["boxes"] / det["boxes"].new_tensor([sx, sy, sx, sy])
            masks = paste_masks_in_image(det["masks"], boxes, tuple(ori), padding=1)[:, 0] > 0.5
            results.append({"boxes": boxes, "scores": det["scores"], "labels": det["labels"] - 1, "masks": masks})
        return results

    @staticmethod
    def _instance_targets(batch: dict) -> list[dict[str, Tensor]]:
        return [
            {"boxes": b.float(), "labels": lab, "masks": m.bool()}
            for b, lab, m in zip(batch["boxes"], batch["labels"], batch["masks"], strict=True)
        ]

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            for metric in (*self.seg_metrics.values(), *self.coco_metrics.values(), *self.dota_metrics.values()):
                metric.reset()
            return
        results: dict[str, dict[str, float | None]] = {}
        headline: list[float] = []
        for d in self.datasets:
            res: dict[str, float | None] = {}
            if d in self.seg_metrics:
                seg = self.seg_metrics[d].compute()
                res["mIoU"] = float(seg["mIoU"])
                res["aAcc"] = float(seg["aAcc"])
                self.seg_metrics[d].reset()
            if d in self.coco_metrics:
                res.update(flatten_metrics(self.coco_metrics[d].compute()))
                self.coco_metrics[d].reset()
            if d in self.dota_metrics:
                res["dota_mAP"] = float(self.dota_metrics[d].compute()["mAP"])
                self.dota_metrics[d].reset()
            headline += [v for k, v in res.items() if k in ("mIoU", "segm_mAP", "dota_mAP") and v == v]
            results[d] = res
            self.log_dict({f"val/{d}/{k}": v for k, v in res.items() if v is not None and v == v}, sync_dist=False)
        if headline:
            results["mtp_average"] = {"value": sum(headline) / len(headline)}
            self.log("val/mtp_average", results["mtp_average"]["value"])
        if self.output_dir and self.trainer.is_global_zero:
            out = Path(self.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            clean = {d: {k: (None if v != v else v) for k, v in r.items()} for d, r in results.items()}
            write_json({"step": self.global_step, **clean}, out / "metrics.json")
            log.info("validation at step %d: %s", self.global_step, clean)
