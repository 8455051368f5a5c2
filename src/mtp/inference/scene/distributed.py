"""Several devices on one scene: Lightning ``predict`` with DDP, one band of tile rows per process.

:func:`predict_scene_distributed` starts a Lightning ``Trainer(strategy="ddp")`` (gloo on CPU, NCCL on GPUs; the
subprocess launcher re-runs the command line for the other ranks, as ``mtp fit`` does). Every rank runs
:func:`~mtp.inference.scene.runner.predict_scene` for its part (``part_index = global_rank``), writing its own files
under ``DIR/.parts/``; after a barrier, rank 0 joins them (:func:`~mtp.inference.scene.parts.finalize_parts`).
The result equals a single-process run: dense parts recompute the tile rows above them (context) and detections
near part borders are decided in the final merge.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from mtp.inference.scene.bands import ScaleRule
from mtp.inference.scene.parts import finalize_parts
from mtp.inference.scene.runner import SceneOptions, SceneResult, plan, predict_scene

__all__ = ["ScenePredictModule", "predict_scene_distributed"]

log = logging.getLogger(__name__)


class ScenePredictModule(L.LightningModule):
    """Wraps a task: ``predict`` runs this rank's part of the scene (one step per rank), rank 0 then joins the parts."""

    def __init__(self, task: nn.Module, input_a: str | Path, out_dir: str | Path, input_b: str | Path | None,
                 options: SceneOptions, fingerprint_extra: dict | None = None) -> None:  # fmt: skip
        super().__init__()
        self.task = task
        self.input_a, self.input_b, self.out_dir = input_a, input_b, Path(out_dir)
        self.options, self.fingerprint_extra = options, fingerprint_extra
        self.part_result: SceneResult | None = None
        self.final_paths: dict[str, Path] = {}

    def predict_dataloader(self) -> DataLoader:
        return DataLoader([self.global_rank], batch_size=None)

    def predict_step(self, part_index: int, batch_idx: int) -> None:
        options = replace(self.options, device=str(self.device))
        self.part_result = predict_scene(self.task, self.input_a, self.out_dir, input_b=self.input_b, options=options,
                                         part_index=int(part_index), num_parts=self.trainer.world_size,
                                         fingerprint_extra=self.fingerprint_extra)  # fmt: skip

    def on_predict_epoch_end(self) -> None:
        self.trainer.strategy.barrier("scene-parts-written")
        if self.trainer.is_global_zero and self.part_result is not None:
            from mtp.inference.scene.pair import open_scene

            info = self.part_result.info
            scene = open_scene(self.input_a, self.input_b, bands=_bands(self.options), scale=ScaleRule("none"))
            try:
                name = self.options.name or Path(self.input_a).stem
                self.final_paths = finalize_parts(info, self.out_dir, name, self.trainer.world_size, scene.geometry,
                                                  merge_iou=self.options.merge_iou,
                                                  overviews=self.options.overviews)  # fmt: skip
            finally:
                scene.close()
        self.trainer.strategy.barrier("scene-parts-joined")


def _bands(options: SceneOptions):
    from mtp.inference.scene.bands import parse_bands

    return parse_bands(options.bands)


def predict_scene_distributed(task: nn.Module, input_a: str | Path, out_dir: str | Path, *, devices: int,
                              accelerator: str = "auto", input_b: str | Path | None = None,
                              options: SceneOptions | None = None,
                              fingerprint_extra: dict | None = None,
                              ) -> tuple[int, SceneResult | None, dict]:  # fmt: skip
    """Run on ``devices`` processes; returns ``(global rank, this rank's part result, final paths on rank 0)``."""
    from lightning.pytorch.strategies import DDPStrategy

    options = options or SceneOptions()
    plan(task, input_a, input_b, options)  # refuse bad settings before any process starts
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    backend = "nccl" if accelerator in ("gpu", "cuda") else "gloo"
    trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy=DDPStrategy(process_group_backend=backend),
                        precision="32-true", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False, inference_mode=True)  # fmt: skip
    module = ScenePredictModule(task, input_a, out_dir, input_b, options, fingerprint_extra)
    trainer.predict(module, return_predictions=False)
    return trainer.global_rank, module.part_result, module.final_paths
