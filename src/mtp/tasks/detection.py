"""Horizontal detection and instance segmentation task: Faster R-CNN (DIOR), RetinaNet (xView),
Mask R-CNN, on ViT+RVSA with torchvision detectors (:mod:`mtp.models.detectors.horizontal`).

Official recipe (docs/RECIPES.md#horizontal-detection): AdamW lr 1e-4, weight decay 0.05, layer decay 0.9, linear warmup
over 500 iterations from 1e-6, x0.1 at epochs 8 and 11, 12 epochs, batch 1 per GPU; evaluation with
COCO mAP through pycocotools with mmdet's conventions (the README metric is ``bbox mAP_50``).
Batches come from :class:`mtp.data.datamodules.DetectionDataModule`: ``image`` (B, 3, H, W)
normalised and padded, ``img_hw``, ``boxes`` (xyxy, resized pixels), ``labels`` (0-based), ``masks``,
``scale_factor`` (to original pixels), ``ori_hw``, ``image_id``.

``test`` writes ``metrics.json`` (``bbox_mAP_50`` ...) and ``per_class.txt``; ``save_predictions``
draws the boxes (score >= 0.3).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from mtp.inference.drawing import draw_rboxes
from mtp.inference.outputs import denormalize, save_png, write_json
from mtp.metrics.coco.evaluation import flatten_metrics
from mtp.metrics.coco.metric import CocoDetectionMetric
from mtp.models import create_model
from mtp.ops.rotated.boxes import hbox2rbox
from mtp.tasks.base import MTPTask
from mtp.tasks.common import adamw_warmup_multistep

log = logging.getLogger(__name__)

DETECTORS = ("faster_rcnn", "mask_rcnn", "retinanet")  # mtp.models.create_model architectures
INFERENCE_OPTIONS = ("pretrained", "load_from", "output_dir", "save_predictions", "allow_class_mismatch")


class DetectionTask(MTPTask):
    """Args:
    num_classes: foreground classes (DIOR 20, xView 60).
    detector: 'faster_rcnn' | 'mask_rcnn' | 'retinanet'.
    backbone, img_size, backbone_kwargs, fpn_channels: ViT+RVSA detection copy and FPN width
        (official: drop_path_rate 0.3; use_checkpoint true for DIOR, false for xView).
    pretrained: backbone file; load_from: whole-detector file (official mmdet or mtp).
    lr, weight_decay, layer_decay, betas, warmup_iters, warmup_ratio, milestones, gamma: optimiser.
    class_names: for tables (taken from the datamodule when omitted; stored in the checkpoint and compared with
        the datasets' at test / predict time). allow_class_mismatch: evaluate a dataset whose class list differs.
    output_dir, save_predictions: test outputs.
    """

    def __init__(
        self,
        num_classes: int,
        detector: str = "faster_rcnn",
        backbone: str = "vit_b_rvsa",
        img_size: int = 800,
        backbone_kwargs: dict | None = None,
        fpn_channels: int = 256,
        pretrained: str | None = None,
        load_from: str | None = None,
        class_names: list[str] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        layer_decay: float | None = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_iters: int = 500,
        warmup_ratio: float = 1e-6,
        milestones: tuple[int, ...] = (8, 11),
        gamma: float = 0.1,
        output_dir: str | None = None,
        save_predictions: bool = False,
        allow_class_mismatch: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(INFERENCE_OPTIONS))
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {sorted(DETECTORS)}, got {detector!r}")
        self.model = create_model(
            detector,
            backbone=backbone,
            num_classes=num_classes,
            img_size=img_size,
            pretrained=pretrained,
            checkpoint_path=load_from or None,
            fpn_channels=fpn_channels,
            backbone_kwargs=backbone_kwargs,
        )
        self.label_offset = 0 if detector == "retinanet" else 1  # torchvision R-CNN: background is 0
        self.with_masks = detector == "mask_rcnn"
        self.class_names = list(class_names) if class_names else None
        self.allow_class_mismatch = allow_class_mismatch
        self.output_dir_option, self.save_predictions = output_dir, save_predictions
        iou_types = ("bbox", "segm") if self.with_masks else ("bbox",)
        self.val_metric = CocoDetectionMetric(iou_types=iou_types, num_classes=num_classes)
        self.test_metric = CocoDetectionMetric(iou_types=iou_types, num_classes=num_classes)

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        self.resolve_class_names(self.hparams.num_classes)
        for metric in (self.val_metric, self.test_metric):
            metric.class_names = list(self.class_names)

    def configure_optimizers(self):
        return adamw_warmup_multistep(self, prefix="backbone.body.")

    # ------------------------------------------------------------------ conversion
    def _images(self, batch: dict) -> list[Tensor]:
        return [batch["image"][i][:, :h, :w] for i, (h, w) in enumerate(batch["img_hw"])]

    def _targets(self, batch: dict) -> list[dict[str, Tensor]]:
        targets = []
        for i, (h, w) in enumerate(batch["img_hw"]):
            target = {"boxes": batch["boxes"][i].float(), "labels": batch["labels"][i].long() + self.label_offset}
            if self.with_masks:
                target["masks"] = batch["masks"][i][:, :h, :w]
            targets.append(target)
        return targets

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        losses = self.model(self._images(batch), self._targets(batch))
        loss = sum(losses.values())
        self.stop_if_non_finite(loss, losses, batch, batch_idx)
        batch_size = len(batch["img_hw"])
        for key, value in losses.items():
            self.log(f"train/{key}", value, batch_size=batch_size)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        return loss

    # ------------------------------------------------------------------ evaluation
    def predict_original(self, batch: dict) -> list[dict[str, Tensor]]:
        """Detections per image in original pixels (labels 0-based, masks bool at the original size)."""
        outputs = self.model(self._images(batch))
        results = []
        for out, (sx, sy), ori in zip(outputs, batch["scale_factor"], batch["ori_hw"], strict=True):
            boxes = out["boxes"] / out["boxes"].new_tensor([sx, sy, sx, sy])
            result = {"boxes": boxes, "scores": out["scores"], "labels": out["labels"] - self.label_offset}
            if self.with_masks:
                probs = out["masks"].float()
                probs = (
                    F.interpolate(probs, size=tuple(ori), mode="bilinear", align_corners=False)
                    if len(probs)
                    else (probs.new_zeros(0, 1, *ori))
                )
                result["masks"] = probs[:, 0] > 0.5
            results.append(result)
        return results

    def _original_targets(self, batch: dict) -> list[dict[str, Tensor]]:
        targets = []
        for i, ((sx, sy), ori) in enumerate(zip(batch["scale_factor"], batch["ori_hw"], strict=True)):
            boxes = batch["boxes"][i].float()
            target = {"boxes": boxes / boxes.new_tensor([sx, sy, sx, sy]), "labels": batch["labels"][i]}
            if self.with_masks:
                h, w = batch["img_hw"][i]
                masks = batch["masks"][i][:, :h, :w].float()[None]
                target["masks"] = F.interpolate(masks, size=tuple(ori), mode="nearest")[0] > 0.5
            targets.append(target)
        return targets

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_metric.update(self.predict_original(batch), self._original_targets(batch))

    def on_validation_epoch_end(self) -> None:
        flat = flatten_metrics(self.val_metric.compute())
        self.log_dict({f"val/{k}": v for k, v in flat.items() if isinstance(v, float)})
        self.val_metric.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        results = self.predict_original(batch)
        if batch.get("boxes") is not None:
            self.test_metric.update(results, self._original_targets(batch))
        if self.save_predictions:
            for i, result in enumerate(results):
                self._draw(batch, i, result, "test")

    def on_test_epoch_end(self) -> None:
        if not self.test_metric.update_count:
            return
        results = self.test_metric.compute()
        flat = {k: v for k, v in flatten_metrics(results).items() if isinstance(v, float)}
        self.log_dict({f"test/{k}": v for k, v in flat.items()})
        if self.trainer.is_global_zero:
            out = self.output_dir("test")
            out.mkdir(parents=True, exist_ok=True)
            table = self.test_metric.table()
            (out / "per_class.txt").write_text(table + "\n")
            write_json({k: (None if v != v else v) for k, v in flat.items()}, out / "metrics.json")
            log.info(
                "COCO metrics (%s): bbox mAP_50 %.3f\n%s", out / "metrics.json", flat.get("bbox_mAP_50", -1), table
            )
        self.test_metric.reset()

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict[str, Tensor]]:
        results = self.predict_original(batch)
        for i, result in enumerate(results):
            self._draw(batch, i, result, "predict")
        return [{k: v.cpu() for k, v in r.items()} for r in results]

    # ------------------------------------------------------------------ outputs
    def output_dir(self, stage: str) -> Path:
        return Path(self.output_dir_option) if self.output_dir_option else Path(self.trainer.default_root_dir) / stage

    def _draw(self, batch: dict, i: int, result: dict[str, Tensor], stage: str) -> None:
        h, w = batch["img_hw"][i]
        image = np.ascontiguousarray(denormalize(batch["image"][i][:, :h, :w]))
        sx, sy = batch["scale_factor"][i]
        keep = result["scores"] >= 0.3
        boxes = result["boxes"][keep] * result["boxes"].new_tensor([sx, sy, sx, sy])
        drawn = draw_rboxes(image, hbox2rbox(boxes).cpu(), result["labels"][keep].cpu(),
                            result["scores"][keep].cpu(), class_names=self.class_names)  # fmt: skip
        save_png(drawn, self.output_dir(stage) / "show" / f"{batch['image_id'][i]}.png")
