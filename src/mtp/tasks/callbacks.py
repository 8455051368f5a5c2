"""Training-safety callback: a resumable checkpoint on Ctrl-C and start-up clean-up of interrupted writes.

:class:`SafeInterrupt` (installed by the ``mtp`` command line for every task):

* at the start of ``fit``, removes the orphan partial files that a killed process left in each checkpoint folder
  (:func:`mtp.models.checkpoint_writer.remove_orphan_partial_files`);
* the first **Ctrl-C (SIGINT) or SIGTERM** during training does not abort the step in progress: the current
  optimisation step finishes, then ``last.ckpt`` is written in the checkpoint folder at that step (its
  ``global_step`` = the number of optimizer steps done, as every step checkpoint) and training stops; ``mtp fit``
  exits with code 130 and prints the ``--ckpt_path`` to resume from. A **second** Ctrl-C aborts at once
  (Lightning's handling: no checkpoint). Under DDP the ranks agree on the stop (one boolean all-reduce per step).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from mtp.models.checkpoint_writer import remove_orphan_partial_files

log = logging.getLogger(__name__)

__all__ = ["SafeInterrupt", "checkpoint_folders"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def checkpoint_folders(trainer: L.Trainer) -> list[Path]:
    """The folders the trainer's ModelCheckpoint callbacks write to (resolved after ``setup``)."""
    folders = []
    for callback in trainer.checkpoint_callbacks:
        dirpath = getattr(callback, "dirpath", None)
        if dirpath:
            folders.append(Path(dirpath))
    return folders


class SafeInterrupt(L.Callback):
    """See the module docstring. ``interrupted_at`` (global step) and ``checkpoint_path`` are set after a stop."""

    def __init__(self) -> None:
        self.requested: int | None = None  # signal number received
        self.interrupted_at: int | None = None
        self.checkpoint_path: Path | None = None
        self._previous: dict[int, Any] = {}

    # ------------------------------------------------------------------ start-up
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            for folder in checkpoint_folders(trainer):
                remove_orphan_partial_files(folder)

    # ------------------------------------------------------------------ signals
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            self._restore()
            raise KeyboardInterrupt  # second Ctrl-C: abort now
        self.requested = signum
        log.warning(
            "%s received: finishing the current step, then writing last.ckpt and stopping (Ctrl-C again to abort "
            "without a checkpoint)",
            signal.Signals(signum).name,
        )

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        stop = self.requested is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop or self.interrupted_at is not None:
            return
        path = self._last_path(trainer)
        trainer.save_checkpoint(path, weights_only=False)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath and Path(callback.dirpath) == path.parent:
                callback.last_model_path = str(path)
        self.interrupted_at, self.checkpoint_path = trainer.global_step, path
        trainer.should_stop = True
        log.warning("interrupted: wrote %s at global step %d; resume with --ckpt_path %s", path,
                    trainer.global_step, path)  # fmt: skip

    @staticmethod
    def _last_path(trainer: L.Trainer) -> Path:
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
        return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
