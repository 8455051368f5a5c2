"""What every ``mtp`` task shares: the non-finite-loss stop, class names in the checkpoint, and checks that a
checkpoint fits the model it is loaded into.

* :meth:`MTPTask.stop_if_non_finite` — called by each ``training_step`` with the total loss and its terms before
  the backward pass: a NaN / inf loss stops training with :class:`NonFiniteLossError` (step, non-finite terms,
  learning rate, batch files, last checkpoint written), so no update is ever made from it. Under DDP every rank
  stops together (one boolean all-reduce per step). The checkpoint writer (:mod:`mtp.tasks.checkpoint_io`) also
  refuses to write non-finite weights, so the last checkpoint named is one whose weights are all finite.
* :meth:`MTPTask.resolve_class_names` — the class order of the model is, in this order of precedence, the
  ``class_names`` stored in the checkpoint (``mtp test/predict --ckpt_path``) or given in the config, else the
  datasets' own. It is written into every checkpoint (``hyper_parameters['class_names']``). A dataset whose class
  list differs (another order, other names) stops with :class:`ClassNamesMismatchError` listing both, unless
  ``allow_class_mismatch=True`` (then a warning, and the dataset's names are used for tables and files).
* :meth:`MTPTask.on_load_checkpoint` — a checkpoint of another task, architecture or class count is refused with
  one readable message instead of torch's list of missing / unexpected keys; the class names stored in it are
  compared with the datasets' (the Python API path, where LightningCLI's hparam merge does not run).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor

from mtp.models.checkpoint_reader import CheckpointError

log = logging.getLogger(__name__)

__all__ = [
    "ClassNamesMismatchError",
    "MTPTask",
    "NonFiniteLossError",
    "last_checkpoint_written",
    "no_labelled_pixels_note",
]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN / inf (the message names the step, terms, files and last checkpoint)."""


class ClassNamesMismatchError(ValueError):
    """The model's class order (checkpoint / config) differs from a dataset's."""


def last_checkpoint_written(trainer: L.Trainer | None) -> str:
    """Path of the last checkpoint this run wrote ('' if none): the writer's record, else ModelCheckpoint's."""
    if trainer is None:
        return ""
    path = getattr(trainer.strategy.checkpoint_io, "last_saved", None)
    if path:
        return str(path)
    for callback in trainer.checkpoint_callbacks:
        path = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
        if path:
            return str(path)
    return ""


def _format_names(names: Sequence[str]) -> str:
    return "[" + ", ".join(f"{i}:{n}" for i, n in enumerate(names)) + "]"


class MTPTask(L.LightningModule):
    """LightningModule base of the ``mtp`` tasks (see the module docstring)."""

    #: subclasses set these in ``__init__``
    class_names: list[str] | None = None
    allow_class_mismatch: bool = False

    # ------------------------------------------------------------------ non-finite losses
    def stop_if_non_finite(self, loss: Tensor, terms: Mapping[str, Tensor], batch: Any, batch_idx: int = 0) -> None:
        """Raise :class:`NonFiniteLossError` if ``loss`` is NaN / inf (on any rank)."""
        bad = not bool(torch.isfinite(loss.detach()).all())
        if self._trainer is not None and self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        raise NonFiniteLossError(self._non_finite_message(loss, terms, batch, batch_idx))

    def _non_finite_message(self, loss: Tensor, terms: Mapping[str, Tensor], batch: Any, batch_idx: int) -> str:
        values = {k: float(v.detach().float().mean()) for k, v in terms.items() if isinstance(v, Tensor)}
        bad_terms = [f"{k}={v}" for k, v in values.items() if not math.isfinite(v)]
        good_terms = [f"{k}={v:.4g}" for k, v in values.items() if math.isfinite(v)]
        trainer = self._trainer
        lr = ""
        if trainer is not None and trainer.optimizers:
            lr = f"; learning rate {max(g['lr'] for g in trainer.optimizers[0].param_groups):.3g}"
        files = _batch_files(batch)
        shown = ", ".join(files[:8]) + (f" (+{len(files) - 8} more)" if len(files) > 8 else "")
        last = last_checkpoint_written(trainer)
        epoch = self.current_epoch if trainer is not None else 0
        return (
            f"non-finite training loss {float(loss.detach().float())} at global step {self.global_step} "
            f"(epoch {epoch}, batch {batch_idx}{lr}); non-finite terms: {', '.join(bad_terms) or 'the total'}"
            + (f"; finite terms: {', '.join(good_terms)}" if good_terms else "")
            + f"; batch files: {shown or 'unknown'}"
            + f"; last checkpoint (all weights finite): {last or 'none written yet'}. Training stopped before "
            "this update; typical causes are a learning rate too high for the batch size, a corrupt input "
            "or an overflow in reduced precision (try --trainer.precision 32-true)"
        )

    # ------------------------------------------------------------------ class names
    def resolve_class_names(self, num_classes: int) -> list[str]:
        """Check every attached dataset against the model's class count and order; set and return
        ``self.class_names`` and record them in the hyper-parameters (hence in every checkpoint)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = list(self.class_names) if self.class_names else None
        source = "the model (config / checkpoint)"
        for split in ("train", "val", "test", "predict"):
            dataset = getattr(datamodule, f"{split}_dataset", None)
            if dataset is None:
                continue
            count = getattr(dataset, "num_classes", None)
            if isinstance(count, int) and count and count != num_classes:  # 0 / None: unlabelled images
                raise ValueError(
                    f"the {split} dataset ({type(dataset).__name__}) has {count} classes, the model "
                    f"{num_classes} (model.num_classes / the checkpoint)"
                )
            classes = [str(c) for c in (getattr(dataset, "classes", None) or [])]
            if not classes:
                continue
            if names is None:
                names, source = classes, f"the {split} dataset"
            elif classes != names:
                names = self._class_mismatch(names, source, classes, f"the {split} dataset ({type(dataset).__name__})")
        self.class_names = names or [f"class_{i}" for i in range(num_classes)]
        self.hparams["class_names"] = list(self.class_names)
        return self.class_names

    def _class_mismatch(self, expected: list[str], source: str, found: list[str], where: str) -> list[str]:
        message = f"class order mismatch: {source} has {_format_names(expected)} but {where} has {_format_names(found)}"
        if not self.allow_class_mismatch:
            raise ClassNamesMismatchError(
                message + ". Predictions would be labelled with the wrong names. Use a dataset with the model's "
                "class order (e.g. COCODetection(classes=[...]) reorders categories by name), or pass "
                "--model.allow_class_mismatch true to evaluate anyway with the dataset's names"
            )
        log.warning("%s; allow_class_mismatch is set: using the dataset's names", message)
        return found

    # ------------------------------------------------------------------ loading checkpoints
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_checkpoint_fits(checkpoint)
        stored = (checkpoint.get("hyper_parameters") or {}).get("class_names")
        if stored and self.class_names and list(stored) != list(self.class_names):
            self.class_names = self._class_mismatch(
                [str(n) for n in stored], "the checkpoint", list(self.class_names), "this run's datasets / config"
            )
            self.hparams["class_names"] = list(self.class_names)

    def _check_checkpoint_fits(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict")
        if not isinstance(state, Mapping):
            raise CheckpointError("the checkpoint has no 'state_dict': not a Lightning checkpoint of an mtp task")
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [
            f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
            for k in own
            if k in state and isinstance(state[k], Tensor) and state[k].shape != own[k].shape
        ]
        if not (missing or unexpected or mismatched) or (not mismatched and not self.strict_loading):
            return  # strict_loading=False (Lightning's switch) tolerates missing / unexpected keys, not shapes
        hparams = checkpoint.get("hyper_parameters") or {}
        written_by = hparams.get("_class_path", "unknown task")
        details = [
            f"{len(missing)} model parameters missing from it (e.g. {', '.join(missing[:3])})" if missing else "",
            f"{len(unexpected)} unknown to the model (e.g. {', '.join(unexpected[:3])})" if unexpected else "",
            f"{len(mismatched)} of another shape (e.g. {'; '.join(mismatched[:3])})" if mismatched else "",
        ]
        summary = ", ".join(f"{k}={hparams[k]}" for k in ("num_classes", "backbone", "img_size") if k in hparams)
        raise CheckpointError(
            f"the checkpoint does not fit {type(self).__name__}: it was written by {written_by}"
            + (f" ({summary})" if summary else "")
            + "; "
            + "; ".join(d for d in details if d)
        )


def _batch_files(batch: Any) -> list[str]:
    """Image paths / ids found in a (possibly nested: one batch per dataset) batch dict."""
    if not isinstance(batch, Mapping):
        return []
    files: list[str] = []
    for key in ("image_path", "image_id"):
        if key in batch and isinstance(batch[key], list | tuple):
            return [str(p) for p in batch[key]]
    for value in batch.values():
        files += _batch_files(value)
    return files


def no_labelled_pixels_note(results: Mapping[str, Any], metric: Any, split: str) -> str:
    """'' when the segmentation results rest on labelled pixels; else the reason they are null (also logged as a
    warning). ``results``: :meth:`mtp.metrics.segmentation.SegmentationMetric.compute` (all ranks pooled), where
    ``aAcc`` = ΣI/ΣL is NaN exactly when no pixel had a label in 0..C-1."""
    if not math.isnan(float(results["aAcc"])):
        return ""
    note = (
        f"no metric: every pixel of the {split} set is ignore_index {metric.ignore_index} (or outside classes "
        f"0..{metric.num_classes - 1}), so IoU and accuracy are 0/0; check the masks (e.g. LoveDA raw 0 = no-data "
        "becomes 255) and the split"
    )
    log.warning(note)
    return note
