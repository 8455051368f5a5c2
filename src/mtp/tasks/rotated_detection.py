"""Rotated object detection task: ViT+RVSA (detection copy) + FPN + Oriented R-CNN.

Official recipe (``RS_Tasks_Finetune/Rotated_Detection/mmrotate1.x/configs/mtp/``;
docs/RECIPES.md#rotated-detection): AdamW lr 1e-4, weight decay 0.05, layer decay 0.9, linear warmup over 500
iterations from 1e-6, x0.1 at epochs 8 and 11 (DOTA-v2: 24, 32, 38), no gradient clipping (mmrotate 1.x). Batches
come from :class:`mtp.data.datamodules.RotatedDetectionDataModule`: ``image`` (B, 3, H, W) normalised and padded to
a multiple of 32, ``img_hw`` (resized, unpadded sizes), ``rboxes`` / ``labels`` / ``difficult`` lists in resized
pixels, ``scale_factor`` (sx, sy) to original pixels, ``image_id``.

Validation/test: detections are mapped back to original pixels and scored with the mmrotate-style
DOTA mAP (11-point, IoU 0.5). ``test`` writes ``metrics.json`` and ``per_class.txt``; with
``merge_patches`` detections of split patches are merged per original image (rotated NMS 0.1)
first; ``submission='dota'`` writes ``Task1_<class>.txt``, ``submission='fair1m'`` the FAIR1M-2.0
XML files; ``save_predictions`` draws the boxes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtp.data.tools.dota_split import parse_patch_id
from mtp.inference.drawing import draw_rboxes
from mtp.inference.outputs import denormalize, save_png, write_json
from mtp.metrics.dota.fair1m import write_fair1m_xml
from mtp.metrics.dota.metric import DOTAMeanAP
from mtp.metrics.dota.submission import merge_patch_detections, write_dota_task1
from mtp.models import create_model
from mtp.models.detectors.oriented_rcnn.roi_head import RCNNConfig
from mtp.models.detectors.oriented_rcnn.rpn import RPNConfig
from mtp.ops.rotated.boxes import rescale_rboxes
from mtp.tasks.base import MTPTask
from mtp.tasks.common import adamw_warmup_multistep

log = logging.getLogger(__name__)

INFERENCE_OPTIONS = (
    "pretrained",
    "load_from",
    "output_dir",
    "save_predictions",
    "submission",
    "merge_patches",
    "allow_class_mismatch",
)


class RotatedDetectionTask(MTPTask):
    """Args:
    num_classes: DOTA-v1 15, DOTA-v2 18, DIOR-R 20, FAIR1M-2.0 37.
    backbone, img_size, backbone_kwargs: ViT+RVSA detection copy (official: drop_path_rate 0.3,
        use_checkpoint true). pretrained: backbone file. load_from: whole-detector file (official
        mmrotate or mtp).
    fpn_channels, rpn_settings, rcnn_settings: detector overrides (fields of ``RPNConfig`` /
        ``RCNNConfig``); the defaults are the official ones.
    lr, weight_decay, layer_decay, betas, warmup_iters, warmup_ratio, milestones, gamma: optimiser.
    class_names: for tables and submissions (taken from the datamodule when omitted; stored in the checkpoint and
        compared with the datasets' at test / predict time). allow_class_mismatch: use a dataset whose class list
        differs (warning; the dataset's names are used).
    output_dir, save_predictions, submission ('dota' | 'fair1m' | None), merge_patches: test outputs.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "vit_b_rvsa",
        img_size: int = 1024,
        backbone_kwargs: dict | None = None,
        fpn_channels: int = 256,
        rpn_settings: dict | None = None,
        rcnn_settings: dict | None = None,
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
        submission: str | None = None,
        merge_patches: bool = False,
        allow_class_mismatch: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(INFERENCE_OPTIONS))
        if submission not in (None, "dota", "fair1m"):
            raise ValueError(f"submission must be None, 'dota' or 'fair1m', got {submission!r}")
        self.model = create_model(
            "oriented_rcnn",
            backbone=backbone,
            num_classes=num_classes,
            img_size=img_size,
            pretrained=pretrained,
            checkpoint_path=load_from or None,
            fpn_channels=fpn_channels,
            rpn_cfg=RPNConfig(**(rpn_settings or {})),
            rcnn_cfg=RCNNConfig(**(rcnn_settings or {})),
            backbone_kwargs=backbone_kwargs,
        )
        self.class_names = list(class_names) if class_names else None
        self.allow_class_mismatch = allow_class_mismatch
        self.output_dir_option, self.save_predictions = output_dir, save_predictions
        self.submission, self.merge_patches = submission, merge_patches
        self.val_metric = DOTAMeanAP(num_classes)
        self.test_metric = DOTAMeanAP(num_classes)
        self._test_results: dict[str, dict[str, Tensor]] = {}
        self._image_sizes: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        self.resolve_class_names(self.hparams.num_classes)
        for metric in (self.val_metric, self.test_metric):
            metric.class_names = list(self.class_names)

    def configure_optimizers(self):
        return adamw_warmup_multistep(self)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        losses = self.model(batch["image"], batch["img_hw"], batch["rboxes"], batch["labels"])
        loss = sum(v for k, v in losses.items() if k.startswith("loss"))
        self.stop_if_non_finite(loss, {k: v for k, v in losses.items() if k.startswith("loss")}, batch, batch_idx)
        for key, value in losses.items():
            self.log(f"train/{key}", value, batch_size=len(batch["img_hw"]))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["img_hw"]))
        return loss

    # ------------------------------------------------------------------ evaluation
    def predict_original(self, batch: dict) -> list[dict[str, Tensor]]:
        """Detections per image in original (un-resized) pixels."""
        results = self.model(batch["image"], batch["img_hw"])
        for result, (sx, sy) in zip(results, batch["scale_factor"], strict=True):
            result["rboxes"] = rescale_rboxes(result["rboxes"], 1.0 / sx, 1.0 / sy)
        return results

    def _targets(self, batch: dict) -> list[dict[str, Tensor]]:
        targets = []
        for i, (sx, sy) in enumerate(batch["scale_factor"]):
            target = {
                "rboxes": rescale_rboxes(batch["rboxes"][i].float(), 1.0 / sx, 1.0 / sy),
                "labels": batch["labels"][i],
            }
            if "difficult" in batch:
                target["difficult"] = batch["difficult"][i]
            targets.append(target)
        return targets

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_metric.update(self.predict_original(batch), self._targets(batch))

    def on_validation_epoch_end(self) -> None:
        self.log("val/mAP", self.val_metric.compute()["mAP"])
        self.val_metric.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        results = self.predict_original(batch)
        if "rboxes" in batch and batch["rboxes"] is not None:
            self.test_metric.update(results, self._targets(batch))
        for i, result in enumerate(results):
            image_id = batch["image_id"][i]
            self._test_results[image_id] = {k: v.detach().cpu() for k, v in result.items()}
            self._image_sizes[image_id] = tuple(batch["ori_hw"][i])
            if self.save_predictions:
                self._draw(batch, i, result, "test")

    def on_test_epoch_end(self) -> None:
        out = self.output_dir("test")
        if self.test_metric.update_count:
            results = self.test_metric.compute()
            self.log("test/mAP", results["mAP"])
            if self.trainer.is_global_zero:
                table = self.test_metric.table()
                out.mkdir(parents=True, exist_ok=True)
                (out / "per_class.txt").write_text(table + "\n")
                write_json(
                    {k: float(v) for k, v in results.items() if torch.as_tensor(v).numel() == 1}, out / "metrics.json"
                )
                log.info("DOTA mAP (%s):\n%s", out / "metrics.json", table)
        if self.submission:
            self._write_submission(out)
        self.test_metric.reset()
        self._test_results.clear()

    def _write_submission(self, out: Path) -> None:
        results, sizes = self._test_results, dict(self._image_sizes)
        if self.merge_patches:
            results = merge_patch_detections(results, nms_iou=0.1)
            sizes = merged_image_sizes(self._image_sizes)
        if self.submission == "dota":
            write_dota_task1(out / "submission", results, self.class_names)
        else:
            write_fair1m_xml(out / "submission", results, self.class_names, sizes)
        log.info("%s submission written to %s", self.submission, out / "submission")

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
        image = denormalize(batch["image"][i][:, :h, :w])
        sx, sy = batch["scale_factor"][i]
        boxes = rescale_rboxes(result["rboxes"].float(), sx, sy).cpu()  # back to the resized frame drawn
        keep = result["scores"].cpu() >= 0.3
        drawn = draw_rboxes(
            np.ascontiguousarray(image),
            boxes[keep],
            result["labels"].cpu()[keep],
            result["scores"].cpu()[keep],
            class_names=self.class_names,
        )
        save_png(drawn, self.output_dir(stage) / "show" / f"{batch['image_id'][i]}.png")


def merged_image_sizes(patch_sizes: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """Original (height, width) per image from its patches: the largest patch extent (y + h, x + w)."""
    sizes: dict[str, tuple[int, int]] = {}
    for patch_id, (h, w) in patch_sizes.items():
        original, x, y = parse_patch_id(patch_id)
        old = sizes.get(original, (0, 0))
        sizes[original] = (max(old[0], y + h), max(old[1], x + w))
    return sizes
