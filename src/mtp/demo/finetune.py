"""Stage 3 of the demo: one fine-tuning run = one (task, arm, seed), in its own process.

:func:`run_arm` is what the process pool of :mod:`mtp.demo.study` executes. It builds the real task and
datamodule classes (:class:`~mtp.tasks.segmentation.SemanticSegmentationTask` with ``pretrained=`` the official
encoder file and, for the decoder arm, ``load_from=`` the ``mtp tool reuse-decoder`` output;
:class:`~mtp.tasks.change_detection.ChangeDetectionTask`), trains with Lightning on the labelled tiles, records the
training loss and the held-out metric every ``eval_every`` steps on every held-out tile (the last point is the
reported number) and, for the first seed, saves ``last.ckpt`` and draws the first held-out tiles
(``tiles/<task>/<row>_<column>.png``: RGB images, LoveDA palette for segmentation, white = change).
Everything is seeded (``seed`` and one CPU thread): the same machine gives the same numbers.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from mtp.data.datasets.segmentation import LOVEDA_PALETTE
from mtp.demo.settings import TINY_VIT, TaskSettings
from mtp.inference.outputs import colorize, save_png


@dataclass(frozen=True)
class ArmJob:
    """One run. ``train_root`` / ``held_out_root``: dataset roots (:class:`mtp.demo.data.DemoData`);
    ``encoder``: official ``*_encoder.pth`` (arms other than scratch); ``decoder``: the decoder-reuse state file
    (arm ``mtp_decoder``); ``tiles``: a folder to draw the first ``grid_tiles`` held-out tiles into (None: none)."""

    task: TaskSettings
    arm: str
    seed: int
    train_root: Path
    held_out_root: Path
    out: Path
    encoder: Path | None = None
    decoder: Path | None = None
    tiles: Path | None = None
    grid_tiles: int = 4
    threads: int = 1


class _Curves(L.Callback):
    """Training loss every ``every`` steps (mean over the window) and the held-out metric after each validation."""

    def __init__(self, metric_key: str, every: int = 5) -> None:
        self.metric_key, self.every = metric_key, every
        self.loss_steps: list[int] = []
        self.loss_values: list[float] = []
        self.curve_steps: list[int] = []
        self.curve_values: list[float] = []
        self._window: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._window.append(float(loss.detach()))
        if trainer.global_step % self.every == 0:
            self.loss_steps.append(trainer.global_step)
            self.loss_values.append(float(np.mean(self._window)))
            self._window = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.metric_key not in trainer.callback_metrics:
            return
        self.curve_steps.append(trainer.global_step)
        self.curve_values.append(float(trainer.callback_metrics[self.metric_key]))


def _segmentation(job: ArmJob):
    from mtp.data.datamodules import SegmentationDataModule
    from mtp.data.datasets.segmentation import LoveDA
    from mtp.tasks.segmentation import SemanticSegmentationTask

    s = job.task
    module = SemanticSegmentationTask(
        num_classes=7, backbone="vit_b_rvsa", img_size=s.crop, backbone_kwargs=dict(TINY_VIT), decode_channels=64,
        pretrained=str(job.encoder) if job.encoder else None, load_from=str(job.decoder) if job.decoder else None,
        lr=s.lr, weight_decay=0.05, layer_decay=s.layer_decay, warmup_iters=s.warmup, test_mode="slide",
        crop_size=(s.crop, s.crop), stride=(s.crop * 3 // 4, s.crop * 3 // 4), output_dir=str(job.out / "test"),
    )  # fmt: skip
    held_out = LoveDA(job.held_out_root, split="val", layout="release")
    data = SegmentationDataModule(
        train=LoveDA(job.train_root, split="train", layout="release"), val=held_out, test=held_out,
        crop_size=(s.crop, s.crop), batch_size=s.batch_size, num_workers=0, seed=job.seed,
    )  # fmt: skip
    return module, data, "mIoU", {"max_steps": s.steps}


def _change_detection(job: ArmJob):
    from mtp.data.datamodules import ChangeDetectionDataModule
    from mtp.data.datasets.change_detection import LEVIRCD
    from mtp.tasks.change_detection import ChangeDetectionTask

    s = job.task
    steps_per_epoch = max(1, s.labelled // s.batch_size)
    module = ChangeDetectionTask(
        backbone="vit_b_rvsa", img_size=s.crop, backbone_kwargs=dict(TINY_VIT), num_classes=2,
        decoder_channels=(128, 64, 32, 16), pretrained=str(job.encoder) if job.encoder else None, lr=s.lr,
        layer_decay=s.layer_decay, warmup_epochs=s.warmup / steps_per_epoch, test_mode="whole",
        output_dir=str(job.out / "test"),
    )  # fmt: skip
    held_out = LEVIRCD(job.held_out_root, split="test")
    data = ChangeDetectionDataModule(
        train=LEVIRCD(job.train_root, split="train"), val=held_out, test=held_out, crop_size=(s.crop, s.crop),
        batch_size=s.batch_size, num_workers=0, seed=job.seed,
    )  # fmt: skip
    return module, data, "changed_F1", {"max_epochs": math.ceil(s.steps / steps_per_epoch), "max_steps": s.steps}


BUILDERS = {"segmentation": _segmentation, "change_detection": _change_detection}


def run_arm(job: ArmJob) -> dict:
    """Train and evaluate one arm; returns ``{task, arm, seed, value, curve, loss, steps, seconds}`` (curve and loss
    as ``{"step": [...], "value": [...]}``; ``value``: the held-out metric after the last step, a fraction)."""
    torch.set_num_threads(job.threads)
    for name in ("lightning.pytorch", "lightning.fabric"):  # the table is the output; Lightning's banners are noise
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    L.seed_everything(job.seed, verbose=False)
    start = time.perf_counter()
    module, data, metric, length = BUILDERS[job.task.name](job)
    curves = _Curves(f"val/{metric}")
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, val_check_interval=job.task.eval_every,
        check_val_every_n_epoch=None, callbacks=[curves],
        default_root_dir=str(job.out), **length,
    )  # fmt: skip
    trainer.fit(module, data)
    if not curves.curve_steps or curves.curve_steps[-1] != trainer.global_step:
        raise RuntimeError(f"{job.task.name}: eval_every={job.task.eval_every} must divide steps={job.task.steps}")
    value = curves.curve_values[-1]  # the last held-out evaluation: every held-out tile, after the last step
    if job.tiles is not None:  # the first seed: pictures, and a checkpoint to try (mtp test / predict-scene)
        trainer.save_checkpoint(job.out / "last.ckpt")
        draw_tiles(module, data, job)
    return {
        "task": job.task.name, "arm": job.arm, "seed": job.seed, "value": value,
        "curve": {"step": curves.curve_steps, "value": curves.curve_values},
        "loss": {"step": curves.loss_steps, "value": curves.loss_values},
        "steps": trainer.global_step, "seconds": time.perf_counter() - start,
    }  # fmt: skip


#: palettes of the drawn masks: LoveDA's colours; change detection black = unchanged, white = changed
PALETTES = {"segmentation": LOVEDA_PALETTE, "change_detection": ((0, 0, 0), (255, 255, 255))}


def draw_tiles(module, data, job: ArmJob) -> None:
    """The first ``job.grid_tiles`` held-out tiles: this arm's prediction and (scratch arm) image(s) and truth."""
    folder = job.tiles
    module.eval()
    dataset = data.test_dataset
    for row in range(min(job.grid_tiles, len(dataset))):
        item = dataset[row]
        with torch.no_grad():
            prediction = module.infer(item["image"]).argmax(1)[0].numpy()
        save_png(colorize(prediction, PALETTES[job.task.name]), folder / f"{row}_{job.arm}.png")
        if job.arm != "scratch":
            continue
        paths = [item["image_path"]] + ([item["image_b_path"]] if "image_b_path" in item else [])
        for k, path in enumerate(paths):  # the demo's formats store PNG images: copied as they are
            shutil.copyfile(path, folder / f"{row}_image{('_a', '_b')[k] if len(paths) > 1 else ''}.png")
        save_png(colorize(item["mask"], PALETTES[job.task.name]), folder / f"{row}_truth.png")
