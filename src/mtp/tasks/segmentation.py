"""Semantic segmentation task: ViT+RVSA + UperNet with the official MTP fine-tuning recipe.

Defaults are the official ones (docs/RECIPES.md#segmentation): CE with ignore 255 averaged over **all** pixels of the
batch, ignored ones included (mmseg ``CrossEntropyLoss(avg_non_ignore=False)``, its default;
``avg_non_ignore=True`` divides by the labelled pixels only), AdamW lr 6e-5, weight decay 0.05, layer-wise decay
0.9, per-iteration linear warmup over 1500 iterations from 1e-6 (mmengine ``LinearLR``) then cosine to 0 at
``max_iters`` (80k), slide inference. UperNet's pooling branch has BatchNorm over a 1×1 map: it cannot train on
one image per device without SyncBN across devices, so ``fit`` refuses ``batch_size 1`` on one device at
start-up (the official run is 8 GPUs × 1 image with SyncBN; on one device use ``--data.batch_size 8``).
Batches come from
:class:`mtp.data.datamodules.SegmentationDataModule`: ``image`` (B, 3, H, W) normalised float
(or a list of (3, H, W) for evaluation batches of mixed sizes), ``mask`` (B, H, W) int64 (or a
list), ``image_path``.

Class names are stored in every checkpoint and compared with the datasets' (:class:`mtp.tasks.base.MTPTask`).
``test`` writes ``<output_dir>/metrics.json`` and ``per_class.txt`` (a test set whose pixels are all ignored gives
null metrics and a ``"note"`` saying so); with ``save_predictions``
also colour maps and overlays (``show/``) and label PNGs (``labels/``); ``submission="loveda"``
writes the LoveDA server PNGs (labels 0-6) directly (``submission/``). ``predict`` writes the same
image outputs for unlabelled data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from mtp.inference.outputs import colorize, default_palette, denormalize, overlay, save_png, write_json
from mtp.inference.segmentation import TTAConfig, predict_segmentation
from mtp.metrics.segmentation import SegmentationMetric
from mtp.models import create_model
from mtp.tasks.base import MTPTask, no_labelled_pixels_note
from mtp.tasks.common import pixel_cross_entropy
from mtp.tasks.optim import build_adamw, warmup_cosine_scheduler

log = logging.getLogger(__name__)


INFERENCE_OPTIONS = (
    "pretrained",
    "load_from",
    "test_mode",
    "crop_size",
    "stride",
    "tta_scales",
    "tta_flip",
    "output_dir",
    "save_predictions",
    "submission",
    "allow_class_mismatch",
)


class SemanticSegmentationTask(MTPTask):
    """Args:
    num_classes: output classes (LoveDA 7, SpaceNet v1 2).
    backbone, img_size, backbone_kwargs: :func:`mtp.models.create_backbone` arguments
        (official fine-tuning: ``drop_path_rate: 0.3``).
    decode_channels: UperNet width (512 official). aux_head / aux_weight: optional FCN head.
    pretrained: backbone checkpoint (MAE / MTP encoder / MTP whole model).
    load_from: whole-segmentor checkpoint (official mmseg file or an mtp checkpoint).
    class_names / palette: for tables and colour maps (taken from the datamodule when omitted; stored in the
        checkpoint). allow_class_mismatch: evaluate a dataset whose class list differs from the model's.
    avg_non_ignore: divide the CE by the labelled pixels only (False: by all pixels, the official mmseg rule).
    lr, weight_decay, layer_decay, betas: AdamW with layer-wise decay (None: off).
    warmup_iters, warmup_ratio, max_iters: schedule (max_iters defaults to trainer.max_steps).
    test_mode: 'slide' or 'whole'; crop_size / stride: slide windows (LoveDA 512/384, SpaceNet 384/256).
    tta_scales / tta_flip: test-time augmentation (none in the official configs).
    output_dir: where test/predict write (default: <trainer.default_root_dir>/<stage>).
    save_predictions: write colour maps, overlays and label PNGs. submission: 'loveda' or None.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "vit_b_rvsa",
        img_size: int = 512,
        backbone_kwargs: dict | None = None,
        decode_channels: int = 512,
        aux_head: bool = False,
        aux_weight: float = 0.4,
        pretrained: str | None = None,
        load_from: str | None = None,
        class_names: list[str] | None = None,
        palette: list[list[int]] | None = None,
        ignore_index: int = 255,
        avg_non_ignore: bool = False,
        lr: float = 6e-5,
        weight_decay: float = 0.05,
        layer_decay: float | None = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_iters: int = 1500,
        warmup_ratio: float = 1e-6,
        max_iters: int | None = None,
        test_mode: str = "slide",
        crop_size: tuple[int, int] = (512, 512),
        stride: tuple[int, int] = (384, 384),
        tta_scales: list[float] | None = None,
        tta_flip: bool = False,
        output_dir: str | None = None,
        save_predictions: bool = False,
        submission: str | None = None,
        allow_class_mismatch: bool = False,
    ) -> None:
        super().__init__()
        # Inference-time options and file paths are not model hyper-parameters: kept out of the
        # checkpoint so that `mtp test/predict --ckpt_path ...` honours the values given there.
        self.save_hyperparameters(ignore=list(INFERENCE_OPTIONS))
        self.test_mode, self.crop_size, self.stride = test_mode, tuple(crop_size), tuple(stride)
        self.output_dir_option, self.save_predictions, self.submission = output_dir, save_predictions, submission
        if test_mode not in ("slide", "whole"):
            raise ValueError(f"test_mode must be 'slide' or 'whole', got {test_mode!r}")
        if submission not in (None, "loveda"):
            raise ValueError(f"submission must be None or 'loveda', got {submission!r}")
        self.model = create_model(
            "upernet",
            backbone=backbone,
            num_classes=num_classes,
            img_size=img_size,
            channels=decode_channels,
            pretrained=pretrained,
            checkpoint_path=load_from or None,
            aux_head=aux_head,
            backbone_kwargs=backbone_kwargs,
        )
        self.class_names = list(class_names) if class_names else None
        self.allow_class_mismatch = allow_class_mismatch
        self.palette = [tuple(c) for c in palette] if palette else None
        self.val_metric = SegmentationMetric(num_classes, ignore_index=ignore_index)
        self.test_metric = SegmentationMetric(num_classes, ignore_index=ignore_index)
        self.tta = TTAConfig(scales=tuple(tta_scales or (1.0,)), flip=tta_flip)

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        self.resolve_class_names(self.hparams.num_classes)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        for name in ("train", "val", "test", "predict"):
            dataset = getattr(datamodule, f"{name}_dataset", None)
            if dataset is not None and not self.palette and getattr(dataset, "palette", None):
                self.palette = [tuple(c) for c in dataset.palette]
        self.palette = self.palette or default_palette(self.hparams.num_classes)
        for metric in (self.val_metric, self.test_metric):
            metric.class_names = list(self.class_names)
        if stage == "fit":
            self._check_batch_norm_batch(datamodule)

    def _check_batch_norm_batch(self, datamodule) -> None:
        """UperNet's 1×1 pooling branch normalises one value per channel and image: batch 1 on one device
        (or without SyncBN) fails at the first step; say so before building anything else."""
        batch_size = getattr(datamodule, "batch_size", None)
        if batch_size != 1:
            return
        trainer = self.trainer
        if trainer.world_size > 1 and getattr(trainer.strategy, "_layer_sync", None) is not None:
            return  # SyncBN (trainer.sync_batchnorm) pools the statistics of every device
        raise ValueError(
            f"data.batch_size is 1 on {trainer.world_size} device(s) without SyncBN across devices: UperNet's "
            "pooling branch (pool scale 1: BatchNorm over a 1x1 map) cannot train on one image per batch. The "
            "official recipe is 8 GPUs x 1 image with SyncBN, 8 images per update. On one device use "
            "--data.batch_size 8 (the official effective batch) or, with less memory, --data.batch_size 2 "
            "--trainer.accumulate_grad_batches 4 (8 images per update; BatchNorm statistics over 2); on 8 devices "
            "keep batch_size 1 with --trainer.sync_batchnorm true"
        )

    def configure_optimizers(self):
        optimizer = build_adamw(
            self.model,
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
            layer_decay=self.hparams.layer_decay,
            betas=tuple(self.hparams.betas),
        )
        max_iters = self.hparams.max_iters or self.trainer.max_steps
        if not max_iters or max_iters < 0:
            raise ValueError("set max_iters or trainer.max_steps: the schedule is iteration based")
        scheduler = warmup_cosine_scheduler(
            optimizer,
            warmup_iters=self.hparams.warmup_iters,
            warmup_ratio=self.hparams.warmup_ratio,
            max_iters=max_iters,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ training
    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> logits (B, K, H, W) at the input resolution."""
        return F.interpolate(self.model(images), size=images.shape[-2:], mode="bilinear", align_corners=False)

    def loss(self, logits: Tensor, mask: Tensor) -> Tensor:
        """Pixel CE of (B, K, h, w) logits (upsampled to the mask) against (B, H, W) labels: summed over the
        labelled pixels, divided by all B·H·W pixels (official), or by the labelled ones (``avg_non_ignore``)."""
        logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
        return pixel_cross_entropy(logits, mask, self.hparams.ignore_index, self.hparams.get("avg_non_ignore", False))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        logits, aux = self.model.forward_with_aux(batch["image"])
        terms = {"loss_seg": self.loss(logits, batch["mask"])}
        if aux is not None:
            terms["loss_aux"] = self.loss(aux, batch["mask"])
        loss = terms["loss_seg"] + self.hparams.aux_weight * terms.get("loss_aux", 0.0)
        self.stop_if_non_finite(loss, terms, batch, batch_idx)
        for key, value in terms.items():
            self.log(f"train/{key}", value)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    # ------------------------------------------------------------------ evaluation
    def infer(self, image: Tensor) -> Tensor:
        """One (3, H, W) image -> logits (1, K, H, W) with the configured mode and TTA."""
        kwargs = {"mode": self.test_mode}
        if self.test_mode == "slide":
            kwargs.update(crop=self.crop_size, stride=self.stride)
        tta = self.tta if (len(self.tta.scales) > 1 or self.tta.flip) else None
        logits, _ = predict_segmentation(self.model, image[None], tta=tta, **kwargs)
        return logits

    def _evaluate(self, batch: dict, metric: SegmentationMetric | None, stage: str) -> None:
        images = batch["image"]
        masks = batch.get("mask")
        for i in range(len(images)):
            logits = self.infer(images[i])
            if masks is not None:
                mask = masks[i]
                logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
                metric.update(logits.argmax(1), mask[None])
            if stage in ("test", "predict"):
                self._write_outputs(images[i], logits.argmax(1)[0], batch["image_path"][i], stage)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metric, "val")

    def on_validation_epoch_end(self) -> None:
        results = self.val_metric.compute()
        no_labelled_pixels_note(results, self.val_metric, "validation")
        for key in ("mIoU", "aAcc", "mAcc", "mFscore"):
            self.log(f"val/{key}", results[key], sync_dist=False)
        self.val_metric.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metric if "mask" in batch else None, "test")

    def on_test_epoch_end(self) -> None:
        if self.test_metric.update_count == 0:
            log.info("test set has no labels: predictions written, no metrics")
            return
        results = self.test_metric.compute()
        for key in ("mIoU", "aAcc", "mAcc", "mFscore"):
            self.log(f"test/{key}", results[key])
        note = no_labelled_pixels_note(results, self.test_metric, "test")
        if self.trainer.is_global_zero:
            out = self.output_dir("test")
            table = self.test_metric.table(results) + (f"\nnote: {note}" if note else "")
            (out / "per_class.txt").parent.mkdir(parents=True, exist_ok=True)
            (out / "per_class.txt").write_text(table + "\n")
            write_json(self.test_metric.to_json(results) | ({"note": note} if note else {}), out / "metrics.json")
            log.info("per-class results (%s):\n%s", out / "metrics.json", table)
        self.test_metric.reset()

    def predict_step(self, batch: dict, batch_idx: int) -> list[Tensor]:
        preds = []
        for i in range(len(batch["image"])):
            labels = self.infer(batch["image"][i]).argmax(1)[0]
            self._write_outputs(batch["image"][i], labels, batch["image_path"][i], "predict")
            preds.append(labels.cpu())
        return preds

    # ------------------------------------------------------------------ outputs
    def output_dir(self, stage: str) -> Path:
        if self.output_dir_option:
            return Path(self.output_dir_option)
        return Path(self.trainer.default_root_dir) / stage

    def _write_outputs(self, image: Tensor, labels: Tensor, image_path: str, stage: str) -> None:
        if not (self.save_predictions or self.submission or stage == "predict"):
            return
        out, stem = self.output_dir(stage), Path(image_path).stem
        labels_np = labels.to(torch.uint8).cpu().numpy()
        if self.save_predictions or stage == "predict":
            colours = colorize(labels_np, self.palette)
            save_png(colours, out / "show" / f"{stem}.png")
            save_png(overlay(denormalize(image), colours), out / "show" / f"{stem}_overlay.png")
            save_png(labels_np, out / "labels" / f"{stem}.png")
        if self.submission == "loveda":
            save_png(labels_np, out / "submission" / f"{stem}.png")  # server labels 0-6, no +1/-1 dance
