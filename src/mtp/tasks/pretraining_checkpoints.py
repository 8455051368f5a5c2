"""Official-layout MTP checkpoint files, written atomically during pretraining
(docs/RECIPES.md#pretraining-checkpoints).

Every ``interval`` iterations (rank 0): ``Iter_{it}_{backbone}_{tasks}pretrn_model.pth`` (whole model) and
``…_encoder.pth`` (encoder only); at the end of training ``last_{backbone}_{tasks}pretrn_model[_encoder].pth``
— e.g. ``last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth``, the file every official fine-tuning config
loads (ours load it with ``pretrained=``). Each file is a dict with ``epoch``, ``iteration``, ``state_dict``
(official names, :func:`mtp.models.pretraining.official_state_dict`), ``optimizer`` and ``scheduler`` (torch
state dicts, our parameter order) and ``loss_pretrain`` (numpy array of every total loss so far).

Exact resume is Lightning's (``mtp fit --ckpt_path last.ckpt``: weights, optimizer, scheduler, step, RNG
and this callback's loss history); these files are for the official tools and for decoder reuse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from mtp.models.checkpoint_writer import atomic_torch_save
from mtp.models.pretraining import encoder_state_dict, official_state_dict

__all__ = ["OfficialPretrainCheckpoints", "atomic_torch_save", "official_file_stem"]


def official_file_stem(backbone: str, tasks: list[str] | tuple[str, ...]) -> str:
    """``vit_b_rvsa`` + (ss, is, rd) -> ``vit_b_rvsa_ss_is_rd_pretrn_model``."""
    return f"{backbone}_{''.join(f'{t}_' for t in tasks)}pretrn_model"


class OfficialPretrainCheckpoints(L.Callback):
    """Write the official whole-model and encoder files every ``interval`` steps and at the end.

    Args:
        dirpath: output folder (official ``--save_path``).
        interval: iterations between files (official ``--interval``, 2000 default, 5000 in the README run).
        save_last: write the ``last_*`` pair when training ends.
    """

    def __init__(self, dirpath: str, interval: int = 2000, save_last: bool = True) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.dirpath, self.interval, self.save_last = Path(dirpath), interval, save_last
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.losses.append(float(loss.detach()))
        if trainer.global_step % self.interval == 0 and trainer.global_step > 0:
            self.write(trainer, pl_module, f"Iter_{trainer.global_step}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_last:
            self.write(trainer, pl_module, "last")

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, prefix: str) -> list[Path]:
        """Write ``{prefix}_{stem}.pth`` and ``{prefix}_{stem}_encoder.pth`` (rank 0 only)."""
        if not trainer.is_global_zero:
            return []
        model = pl_module.model
        stem = official_file_stem(pl_module.hparams.backbone, model.tasks)
        optimizer = trainer.optimizers[0].state_dict() if trainer.optimizers else {}
        schedulers = trainer.lr_scheduler_configs
        common = {
            "epoch": trainer.current_epoch,
            "iteration": trainer.global_step,
            "optimizer": optimizer,
            "scheduler": schedulers[0].scheduler.state_dict() if schedulers else {},
            "loss_pretrain": np.asarray(self.losses, dtype=np.float64),
        }
        whole = atomic_torch_save({**common, "state_dict": official_state_dict(model)},
                                  self.dirpath / f"{prefix}_{stem}.pth")  # fmt: skip
        encoder = atomic_torch_save({**common, "state_dict": encoder_state_dict(model)},
                                    self.dirpath / f"{prefix}_{stem}_encoder.pth")  # fmt: skip
        return [whole, encoder]

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.losses = list(state_dict.get("losses", []))
