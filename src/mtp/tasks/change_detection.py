"""Change-detection task: Siamese ViT+RVSA + |A-B| fusion + UNet head with the official MTP (Open-CD) recipe.

Defaults are the official ViT ones (docs/RECIPES.md#change-detection): 2-class CE with
ignore 255, AdamW lr 6e-5, weight decay 0.05, layer-wise decay 0.9; LinearLR from 1e-6 over 5 epochs
(per iteration) then cosine annealing to 0 at the last epoch (stepped per epoch, as mmengine's epoch-based
``CosineAnnealingLR``; ``cosine_by_epoch=False`` steps it per iteration); whole-image inference (padded to
a multiple of 32). Batches come from :class:`mtp.data.datamodules.ChangeDetectionDataModule`:
``image`` (B, 6, H, W) = normalised A‖B (or a list of (6, H, W)), ``mask`` (B, H, W) int64 0/1/255.

Metrics: :class:`mtp.metrics.segmentation.SegmentationMetric` (mmseg IoUMetric) over 2 classes; the headline
is the F1 of class ``changed`` (:func:`mtp.metrics.segmentation.changed_class_scores`), logged as
``val/changed_F1`` / ``test/changed_F1``. ``test`` writes ``<output_dir>/metrics.json`` (mmseg keys plus
``changed.F1`` / ``.Precision`` / ``.Recall`` / ``.IoU``, ×100) and ``per_class.txt``; with
``save_predictions`` (always in ``predict``) ``show/<stem>.png`` (change map), ``show/<stem>_panel.png``
(A | B | prediction [| errors: white TP, red FP, blue FN, grey ignored]) and ``labels/<stem>.png`` (0/1).
"""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtp.data.transforms.change import split_pair
from mtp.inference.outputs import colorize, denormalize, save_png, write_json
from mtp.inference.segmentation import predict_segmentation
from mtp.metrics.segmentation import SegmentationMetric, changed_class_scores
from mtp.models import create_model
from mtp.tasks.base import MTPTask, no_labelled_pixels_note
from mtp.tasks.common import pixel_cross_entropy
from mtp.tasks.optim import build_adamw, epoch_warmup_cosine_factor

log = logging.getLogger(__name__)

INFERENCE_OPTIONS = (
    "pretrained",
    "load_from",
    "test_mode",
    "crop_size",
    "stride",
    "output_dir",
    "save_predictions",
    "allow_class_mismatch",
)
CHANGE_PALETTE = [(0, 0, 0), (255, 255, 255)]
HEADLINE = ("F1", "Precision", "Recall", "IoU")


def _pct(value: Tensor) -> float | None:
    v = float(value)
    return None if math.isnan(v) else round(v * 100, 2)


class ChangeDetectionTask(MTPTask):
    """Args:
    backbone, img_size, backbone_kwargs: :func:`mtp.models.change_detector.build_change_detector` arguments
        (official: ``vit_b_rvsa`` / ``vit_l_rvsa``, img_size 256 (OSCD 224), drop_path_rate 0.3).
    num_classes, decoder_channels, dropout, policy: the head (official 2, 512/256/128/64, 0.1, abs_diff).
    pretrained: backbone checkpoint (MAE / MTP encoder). load_from: whole detector (official Open-CD file or
        an mtp checkpoint).
    lr, weight_decay, layer_decay, betas: AdamW with layer-wise decay (None: off).
    warmup_epochs, warmup_ratio, cosine_by_epoch: schedule; the length is ``trainer.max_epochs``.
    test_mode: 'whole' (official) or 'slide' with ``crop_size`` / ``stride``.
    output_dir: where test/predict write (default ``<default_root_dir>/<stage>``); save_predictions: drawings.
    class_names: ``unchanged, changed`` for 2 classes (stored in the checkpoint, compared with the datasets');
        allow_class_mismatch: evaluate a dataset whose class list differs (warning).
    avg_non_ignore: divide the CE by the labelled pixels only (False: by all pixels, mmseg's default that the
        official Open-CD configs use).
    """

    def __init__(
        self,
        backbone: str = "vit_b_rvsa",
        img_size: int = 256,
        backbone_kwargs: dict | None = None,
        num_classes: int = 2,
        decoder_channels: tuple[int, ...] = (512, 256, 128, 64),
        dropout: float = 0.1,
        policy: str = "abs_diff",
        pretrained: str | None = None,
        load_from: str | None = None,
        ignore_index: int = 255,
        avg_non_ignore: bool = False,
        class_names: list[str] | None = None,
        lr: float = 6e-5,
        weight_decay: float = 0.05,
        layer_decay: float | None = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_epochs: float = 5,
        warmup_ratio: float = 1e-6,
        cosine_by_epoch: bool = True,
        test_mode: str = "whole",
        crop_size: tuple[int, int] = (256, 256),
        stride: tuple[int, int] = (128, 128),
        output_dir: str | None = None,
        save_predictions: bool = False,
        allow_class_mismatch: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(INFERENCE_OPTIONS))
        if test_mode not in ("slide", "whole"):
            raise ValueError(f"test_mode must be 'slide' or 'whole', got {test_mode!r}")
        self.test_mode, self.crop_size, self.stride = test_mode, tuple(crop_size), tuple(stride)
        self.output_dir_option, self.save_predictions = output_dir, save_predictions
        self.model = create_model(
            "changenet",
            backbone=backbone,
            img_size=img_size,
            num_classes=num_classes,
            decoder_channels=tuple(decoder_channels),
            dropout=dropout,
            policy=policy,
            pretrained=pretrained,
            checkpoint_path=load_from or None,
            backbone_kwargs=backbone_kwargs,
        )
        default = ["unchanged", "changed"] if num_classes == 2 else [f"class_{i}" for i in range(num_classes)]
        names = list(class_names) if class_names else default
        self.class_names, self.allow_class_mismatch = list(class_names) if class_names else None, allow_class_mismatch
        self.val_metric = SegmentationMetric(num_classes, ignore_index=ignore_index, class_names=names)
        self.test_metric = SegmentationMetric(num_classes, ignore_index=ignore_index, class_names=names)

    def setup(self, stage: str) -> None:
        self.resolve_class_names(self.hparams.num_classes)
        for metric in (self.val_metric, self.test_metric):
            metric.class_names = list(self.class_names)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        hp = self.hparams
        optimizer = build_adamw(
            self.model, lr=hp.lr, weight_decay=hp.weight_decay, layer_decay=hp.layer_decay, betas=tuple(hp.betas)
        )
        max_epochs = self.trainer.max_epochs
        if not max_epochs or max_epochs < 0:
            raise ValueError("set trainer.max_epochs: the change-detection schedule is epoch based")
        _ = self.trainer.estimated_stepping_batches  # sets up the train loader -> num_training_batches
        accumulate = max(self.trainer.accumulate_grad_batches, 1)
        steps_per_epoch = max(1, math.ceil(self.trainer.num_training_batches / accumulate))
        factor = partial(
            epoch_warmup_cosine_factor,
            steps_per_epoch=steps_per_epoch,
            warmup_epochs=hp.warmup_epochs,
            max_epochs=max_epochs,
            warmup_ratio=hp.warmup_ratio,
            by_epoch=hp.cosine_by_epoch,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ training
    def forward(self, images: Tensor) -> Tensor:
        """(B, 6, H, W) stacked pairs -> logits (B, K, H, W) at the input resolution."""
        return F.interpolate(self.model(images), size=images.shape[-2:], mode="bilinear", align_corners=False)

    def loss(self, logits: Tensor, mask: Tensor) -> Tensor:
        """Pixel CE (:func:`mtp.tasks.common.pixel_cross_entropy`) at the mask's resolution."""
        logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
        return pixel_cross_entropy(logits, mask, self.hparams.ignore_index, self.hparams.get("avg_non_ignore", False))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.loss(self.model(batch["image"]), batch["mask"])
        self.stop_if_non_finite(loss, {"loss_seg": loss}, batch, batch_idx)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    # ------------------------------------------------------------------ evaluation
    def infer(self, image: Tensor) -> Tensor:
        """One (6, H, W) stacked pair -> logits (1, K, H, W) (whole or slide, under no_grad)."""
        kwargs = {"crop": self.crop_size, "stride": self.stride} if self.test_mode == "slide" else {}
        logits, _ = predict_segmentation(self.model, image[None], mode=self.test_mode, **kwargs)
        return logits

    def _evaluate(self, batch: dict, metric: SegmentationMetric | None, stage: str) -> None:
        masks = batch.get("mask")
        for i, image in enumerate(batch["image"]):
            logits = self.infer(image)
            mask = masks[i] if masks is not None else None
            if mask is not None:
                logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
                metric.update(logits.argmax(1), mask[None])
            if stage in ("test", "predict"):
                self._write_outputs(image, logits.argmax(1)[0], mask, batch["image_path"][i], stage)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metric, "val")

    def _log_results(self, metric: SegmentationMetric, stage: str) -> tuple[dict, dict]:
        results = metric.compute()
        changed = changed_class_scores(results) if self.hparams.num_classes == 2 else {}
        for key in ("mIoU", "mFscore", "aAcc"):
            self.log(f"{stage}/{key}", results[key].float())
        for key, value in changed.items():
            self.log(f"{stage}/changed_{key}", torch.nan_to_num(value.float()), prog_bar=key == "F1")
        return results, changed

    def on_validation_epoch_end(self) -> None:
        if self.val_metric.update_count:
            results, _ = self._log_results(self.val_metric, "val")
            no_labelled_pixels_note(results, self.val_metric, "validation")
        self.val_metric.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metric if "mask" in batch else None, "test")

    def on_test_epoch_end(self) -> None:
        if self.test_metric.update_count == 0:
            log.info("test set has no labels: predictions written, no metrics")
            return
        results, changed = self._log_results(self.test_metric, "test")
        note = no_labelled_pixels_note(results, self.test_metric, "test")
        if self.trainer.is_global_zero:
            out = self.output_dir("test")
            headline = ", ".join(f"{k} {_pct(v)}" for k, v in changed.items())
            table = self.test_metric.table(results) + (f"\nchanged: {headline}" if changed else "")
            table += f"\nnote: {note}" if note else ""
            out.mkdir(parents=True, exist_ok=True)
            (out / "per_class.txt").write_text(table + "\n")
            data = self.test_metric.to_json(results) | {f"changed.{k}": _pct(v) for k, v in changed.items()}
            data |= {"note": note} if note else {}
            write_json(data, out / "metrics.json")
            log.info("change-detection results (%s):\n%s", out / "metrics.json", table)
        self.test_metric.reset()

    def predict_step(self, batch: dict, batch_idx: int) -> list[Tensor]:
        preds = []
        for i, image in enumerate(batch["image"]):
            labels = self.infer(image).argmax(1)[0]
            self._write_outputs(image, labels, None, batch["image_path"][i], "predict")
            preds.append(labels.cpu())
        return preds

    # ------------------------------------------------------------------ outputs
    def output_dir(self, stage: str) -> Path:
        if self.output_dir_option:
            return Path(self.output_dir_option)
        return Path(self.trainer.default_root_dir) / stage

    def _write_outputs(self, image: Tensor, pred: Tensor, mask: Tensor | None, path: str, stage: str) -> None:
        if not (self.save_predictions or stage == "predict"):
            return
        out, stem = self.output_dir(stage), Path(path).stem
        pred_np = pred.to(torch.uint8).cpu().numpy()
        change_map = colorize(pred_np, CHANGE_PALETTE)
        save_png(change_map, out / "show" / f"{stem}.png")
        save_png(pred_np, out / "labels" / f"{stem}.png")
        image_a, image_b = split_pair(image)
        a, b = denormalize(image_a), denormalize(image_b)
        panels = [a, b, change_map]
        if mask is not None and mask.shape == pred.shape:
            panels.append(error_map(pred_np, mask.cpu().numpy()))
        if all(p.shape == a.shape for p in panels):
            save_png(np.concatenate(panels, axis=1), out / "show" / f"{stem}_panel.png")


def error_map(pred: np.ndarray, label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """(H, W, 3) uint8: white TP, red FP, blue FN, black TN, grey ignored (binary change maps)."""
    out = np.zeros((*pred.shape, 3), dtype=np.uint8)
    valid = label != ignore_index
    out[valid & (pred == 1) & (label == 1)] = (255, 255, 255)
    out[valid & (pred == 1) & (label == 0)] = (255, 0, 0)
    out[valid & (pred == 0) & (label == 1)] = (0, 0, 255)
    out[~valid] = (128, 128, 128)
    return out
