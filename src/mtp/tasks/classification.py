"""Scene-classification task: ViT+RVSA classification copy + GAP + linear head, the official MTP recipe.

Defaults are the official ones (docs/RECIPES.md#classification): cross-entropy (no label smoothing, no mixup), AdamW
lr 6e-5, weight decay 0.05, layer-wise decay 0.9, a linear warmup from ``warmup_ratio`` (1e-6) over
``warmup_epochs`` (5) epochs then cosine to 0 at the end of training, stepped **per iteration** (the
epoch counts are converted with the number of optimiser steps per epoch). Batches come from
:class:`mtp.data.datamodules.ClassificationDataModule`: ``image`` (B, 3, 224, 224)
normalised float, ``label`` (B,) int64, ``image_path``.

Class order: ``class_names`` (given, or taken from the datamodule's datasets) is written into the
checkpoint's hyper-parameters; ``mtp test/predict --ckpt_path`` restores it and refuses a labelled
dataset whose class list differs.

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
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from mtp.inference.outputs import save_png, write_json
from mtp.metrics.classification import ClassificationMetric, confusion_matrix_image
from mtp.models import create_model
from mtp.tasks.optim import build_adamw, warmup_cosine_scheduler

log = logging.getLogger(__name__)

INFERENCE_OPTIONS = ("pretrained", "load_from", "output_dir", "save_predictions")


class ClassificationTask(L.LightningModule):
    """Args:
    num_classes: EuroSAT 10, RESISC-45 45.
    backbone, img_size, backbone_kwargs: :func:`mtp.models.classifier.build_classifier` arguments
        (official fine-tuning: ``drop_path_rate: 0.3``).
    pretrained: backbone checkpoint (MAE / MTP encoder / MTP whole model).
    load_from: whole-classifier checkpoint (official mmpretrain file or an mtp checkpoint).
    class_names: label order (default: the datamodule's, sorted folder names); stored in the checkpoint.
    lr, weight_decay, layer_decay, betas: AdamW with layer-wise decay (None: off).
    warmup_epochs / warmup_iters (overrides the epochs), warmup_ratio, max_iters: schedule; max_iters
        defaults to the trainer's estimated optimiser steps.
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
        top_k: int = 5,
        output_dir: str | None = None,
        save_predictions: bool = False,
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
        self.val_metric = ClassificationMetric(num_classes, top_k=top_k)
        self.test_metric = ClassificationMetric(num_classes, top_k=top_k)
        self._rows: list[list] = []

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        for name in ("train", "val", "test"):
            classes = list(getattr(getattr(datamodule, f"{name}_dataset", None), "classes", None) or [])
            if not classes:
                continue
            if len(classes) != self.hparams.num_classes:
                raise ValueError(f"{name} dataset has {len(classes)} classes, the model {self.hparams.num_classes}")
            if self.class_names is not None and classes != self.class_names:
                raise ValueError(
                    f"{name} dataset classes {classes} differ from the model's class order {self.class_names} "
                    "(stored in the checkpoint / given as model.class_names)"
                )
            self.class_names = classes
        self.class_names = self.class_names or [f"class_{i}" for i in range(self.hparams.num_classes)]
        self.hparams["class_names"] = list(self.class_names)  # saved with every checkpoint
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
            raise ValueError("set max_iters, trainer.max_epochs or trainer.max_steps: the schedule is iteration based")
        warmup = self.hparams.warmup_iters
        if warmup is None:
            batches = self.trainer.num_training_batches
            per_epoch = math.ceil(batches / self.trainer.accumulate_grad_batches) if math.isfinite(batches) else 0
            warmup = round(self.hparams.warmup_epochs * per_epoch)
        scheduler = warmup_cosine_scheduler(
            optimizer,
            warmup_iters=max(int(warmup), 1),
            warmup_ratio=self.hparams.warmup_ratio,
            max_iters=int(max_iters),
        )
        log.info("schedule: %d warmup iterations, %d iterations in all", warmup, max_iters)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ training
    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> logits (B, num_classes)."""
        return self.model(images)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        logits = self.model(batch["image"])
        loss = F.cross_entropy(logits.float(), batch["label"])
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
