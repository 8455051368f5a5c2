"""Scene-classification task: ViT+RVSA classification copy + GAP + linear head, the official MTP recipe.

Defaults are the official ones (docs/RECIPES.md#classification): cross-entropy (no label smoothing, no mixup), AdamW
lr 6e-5, weight decay 0.05, layer-wise decay 0.9, a linear warmup from ``warmup_ratio`` (1e-6) over
``warmup_epochs`` (5) epochs stepped **per iteration** (mmengine ``LinearLR`` with ``convert_to_iter_based``),
then cosine to 0 at the end of training stepped **once per epoch** as the official mmpretrain
``CosineAnnealingLR(by_epoch=True)`` (``cosine_by_epoch=False``: per iteration). Batches come from
:class:`mtp.data.datamodules.ClassificationDataModule`: ``image`` (B, 3, 224, 224)
normalised float, ``label`` (B,) int64, ``image_path``.

Class order: ``class_names`` (given, or taken from the datamodule's datasets) is written into the
checkpoint's hyper-parameters; ``mtp test/predict --ckpt_path`` restores it and refuses a labelled
dataset whose class list differs (:class:`mtp.tasks.base.MTPTask`; ``allow_class_mismatch`` overrides).

``test`` writes ``<output_dir>/metrics.json`` (``accuracy/top1``, ``accuracy/top5``, per class, the
confusion matrix), ``per_class.txt`` and ``confusion_matrix.png``; with ``save_predictions`` also
``predictions.csv`` (always for unlabelled test images, label -1). ``predict`` writes ``predictions.csv``
(path, predicted index and class, score, top-5 classes, true label or -1).
"""

from __future__ import annotations

import csv
import logging
import math
import warnings
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from mtp.inference.outputs import save_png, write_json
from mtp.metrics.classification import ClassificationMetric, confusion_matrix_image
from mtp.models import create_model
from mtp.tasks.base import MTPTask
from mtp.tasks.optim import build_adamw, epoch_warmup_cosine_factor

log = logging.getLogger(__name__)

INFERENCE_OPTIONS = ("pretrained", "load_from", "output_dir", "save_predictions", "allow_class_mismatch")


class ClassificationTask(MTPTask):
    """Args:
    num_classes: EuroSAT 10, RESISC-45 45.
    backbone, img_size, backbone_kwargs: :func:`mtp.models.classifier.build_classifier` arguments
        (official fine-tuning: ``drop_path_rate: 0.3``).
    pretrained: backbone checkpoint (MAE / MTP encoder / MTP whole model).
    load_from: whole-classifier checkpoint (official mmpretrain file or an mtp checkpoint).
    class_names: label order (default: the datamodule's, sorted folder names); stored in the checkpoint.
    allow_class_mismatch: evaluate a dataset whose class list differs from the model's (warning).
    lr, weight_decay, layer_decay, betas: AdamW with layer-wise decay (None: off).
    warmup_epochs / warmup_iters (overrides the epochs), warmup_ratio, max_iters, cosine_by_epoch: schedule;
        max_iters defaults to the trainer's estimated optimiser steps (max_epochs x steps per epoch).
    top_k: second accuracy reported (5 as mmpretrain).
    output_dir: where test/predict write (default: <trainer.default_root_dir>/<stage>).
    save_predictions: also write ``predictions.csv`` in ``test``.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "vit_b_rvsa",
        img_size: int = 224,
        backbone_kwargs: dict | None = None,
        pretrained: str | None = None,
        load_from: str | None = None,
        class_names: list[str] | None = None,
        lr: float = 6e-5,
        weight_decay: float = 0.05,
        layer_decay: float | None = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_epochs: float = 5.0,
        warmup_iters: int | None = None,
        warmup_ratio: float = 1e-6,
        max_iters: int | None = None,
        cosine_by_epoch: bool = True,
        top_k: int = 5,
        output_dir: str | None = None,
        save_predictions: bool = False,
        allow_class_mismatch: bool = False,
    ) -> None:
        super().__init__()
        # Inference-time options and file paths are not model hyper-parameters: kept out of the
        # checkpoint so that `mtp test/predict --ckpt_path ...` honours the values given there.
        self.save_hyperparameters(ignore=list(INFERENCE_OPTIONS))
        self.output_dir_option, self.save_predictions = output_dir, save_predictions
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names given for num_classes={num_classes}")
        self.model = create_model(
            "classifier", backbone=backbone, num_classes=num_classes, img_size=img_size, pretrained=pretrained,
            checkpoint_path=load_from or None, backbone_kwargs=backbone_kwargs,
        )  # fmt: skip
        self.class_names = list(class_names) if class_names else None
        self.allow_class_mismatch = allow_class_mismatch
        self.val_metric = ClassificationMetric(num_classes, top_k=top_k)
        self.test_metric = ClassificationMetric(num_classes, top_k=top_k)
        self._rows: list[list] = []

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        self.resolve_class_names(self.hparams.num_classes)
        for metric in (self.val_metric, self.test_metric):
            metric.class_names = list(self.class_names)

    def configure_optimizers(self):
        optimizer = build_adamw(
            self.model,
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
            layer_decay=self.hparams.layer_decay,
            betas=tuple(self.hparams.betas),
        )
        max_iters = self.hparams.max_iters or self.trainer.estimated_stepping_batches
        if not max_iters or math.isinf(max_iters) or max_iters < 0:
            raise ValueError("set max_iters, trainer.max_epochs or trainer.max_steps: the schedule needs its length")
        batches = self.trainer.num_training_batches
        accumulate = max(self.trainer.accumulate_grad_batches, 1)
        per_epoch = max(math.ceil(batches / accumulate), 1) if math.isfinite(batches) else int(max_iters)
        warmup_epochs = self.hparams.warmup_epochs
        if self.hparams.warmup_iters is not None:
            warmup_epochs = self.hparams.warmup_iters / per_epoch
        factor = partial(
            epoch_warmup_cosine_factor,
            steps_per_epoch=per_epoch,
            warmup_epochs=warmup_epochs,
            max_epochs=max_iters / per_epoch,
            warmup_ratio=self.hparams.warmup_ratio,
            by_epoch=self.hparams.get("cosine_by_epoch", True),
        )
        log.info(
            "schedule: %d iterations (%.4g epochs of %d), warmup %d iterations, cosine stepped per %s",
            max_iters, max_iters / per_epoch, per_epoch, round(warmup_epochs * per_epoch),
            "epoch" if self.hparams.get("cosine_by_epoch", True) else "iteration",
        )  # fmt: skip
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ training
    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> logits (B, num_classes)."""
        return self.model(images)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        logits = self.model(batch["image"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        self.stop_if_non_finite(loss, {"loss_cls": loss}, batch, batch_idx)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(1) == batch["label"]).float().mean())
        return loss

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_metric.update(self.model(batch["image"]).float(), batch["label"])

    def on_validation_epoch_end(self) -> None:
        results = self.val_metric.compute()
        self.log("val/top1", results["top1"].float(), prog_bar=True)
        self.log(f"val/top{self.val_metric.k}", results["topk"].float())
        self.val_metric.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.model(batch["image"]).float()
        labelled = batch["label"] >= 0  # -1: unlabelled images (UnlabelledImages)
        if labelled.any():
            self.test_metric.update(logits[labelled], batch["label"][labelled])
        if self.save_predictions or not labelled.all():
            self._collect(logits, batch)

    def on_test_epoch_end(self) -> None:
        with warnings.catch_warnings():  # a rank without labelled images is fine
            warnings.filterwarnings("ignore", message=".*was called before the ``update`` method")
            results = self.test_metric.compute()  # on every rank (DDP sync) before any early return
        if int(results["support"].sum()) == 0:
            log.info("test set has no labels: predictions written, no metrics")
            self.test_metric.reset()
            self._write_rows("test")
            return
        self.log("test/top1", results["top1"].float())
        self.log(f"test/top{self.test_metric.k}", results["topk"].float())
        if self.trainer.is_global_zero:
            out = self.output_dir("test")
            out.mkdir(parents=True, exist_ok=True)
            table = self.test_metric.table(results)
            (out / "per_class.txt").write_text(table + "\n")
            write_json(self.test_metric.to_json(results), out / "metrics.json")
            save_png(confusion_matrix_image(results["confusion"], self.class_names), out / "confusion_matrix.png")
            log.info("per-class results (%s):\n%s", out / "metrics.json", table)
        self.test_metric.reset()
        self._write_rows("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        logits = self.model(batch["image"]).float()
        self._collect(logits, batch)
        scores, labels = logits.softmax(1).max(1)
        return {"image_path": batch["image_path"], "label": labels.cpu(), "score": scores.cpu()}

    def on_predict_epoch_end(self) -> None:
        self._write_rows("predict")

    # ------------------------------------------------------------------ outputs
    def output_dir(self, stage: str) -> Path:
        if self.output_dir_option:
            return Path(self.output_dir_option)
        return Path(self.trainer.default_root_dir) / stage

    def _collect(self, logits: Tensor, batch: dict) -> None:
        probs = logits.softmax(1)
        scores, top = probs.topk(min(self.hparams.top_k, probs.shape[1]), dim=1)
        truth = batch.get("label", torch.full((len(probs),), -1)).tolist()
        for path, t, s, idx in zip(batch["image_path"], truth, scores.tolist(), top.tolist(), strict=True):
            names = [self.class_names[i] for i in idx]
            true_name = self.class_names[t] if t >= 0 else ""
            self._rows.append([path, idx[0], names[0], f"{s[0]:.4f}", " ".join(names), t, true_name])

    def _write_rows(self, stage: str) -> None:
        if not self._rows:
            return
        name = "predictions.csv" if self.trainer.world_size == 1 else f"predictions.rank{self.global_rank}.csv"
        path = self.output_dir(stage) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["image_path", "label", "class", "score", f"top{self.hparams.top_k}", "true_label", "true_class"]
            )
            writer.writerows(self._rows)
        log.info("%d predictions written to %s", len(self._rows), path)
        self._rows = []
