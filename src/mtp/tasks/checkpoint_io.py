"""Lightning checkpoint I/O that cannot leave a broken file and never runs code from one.

:class:`SafeCheckpointIO` replaces Lightning's ``TorchCheckpointIO`` (the ``mtp`` command line installs it for
every task; from Python: ``L.Trainer(plugins=[SafeCheckpointIO()])``):

* **save**: refuses a checkpoint whose weights hold NaN / inf (:class:`NonFiniteWeightsError`: the previous
  checkpoint under that name stays), then writes with :func:`mtp.models.checkpoint_writer.atomic_torch_save`
  (temporary file in the target folder, fsync, rename, fsync of the folder). Lightning's own writer serialises to
  a temporary file in ``$TMPDIR`` and *moves* it, which across filesystems is a copy: ``kill -9`` or a full disk
  then left a truncated ``last.ckpt`` under its final name.
* **load** (``--ckpt_path``, ``Trainer.fit/test(ckpt_path=...)``): :func:`mtp.models.checkpoint_reader.read_checkpoint`
  (``torch.load(weights_only=True)``; classes outside the allowlist become inert objects, nothing from the file
  runs), then checks the file is a Lightning checkpoint: an official ``.pth`` or a backbone file given to
  ``--ckpt_path`` gets a message pointing to ``--model.load_from`` / ``--model.pretrained``.
* **remove**: as Lightning's (ModelCheckpoint's top-k rotation).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO

from mtp.models.checkpoint_reader import CheckpointError, InertObject, read_checkpoint
from mtp.models.checkpoint_writer import atomic_torch_save, non_finite_tensors, remove_orphan_partial_files

log = logging.getLogger(__name__)

__all__ = ["NonFiniteWeightsError", "SafeCheckpointIO", "read_lightning_checkpoint"]


class NonFiniteWeightsError(CheckpointError):
    """A checkpoint to be written holds NaN / inf weights (nothing was written)."""


def read_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a ``.ckpt`` written by Lightning (``mtp fit``) safely; :class:`CheckpointError` names the file and
    what is wrong (not found, empty, truncated, not a Lightning checkpoint)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes): the write that produced it did not finish")
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"{path}: holds a pickled {type(checkpoint).__name__}, not a checkpoint dict (nothing from it was run)"
        )
    if "state_dict" not in checkpoint or "pytorch-lightning_version" not in checkpoint:
        keys = ", ".join(map(str, list(checkpoint)[:8]))
        raise CheckpointError(
            f"{path}: not a Lightning training checkpoint (top-level keys: {keys}); --ckpt_path resumes or "
            "evaluates a *.ckpt written by `mtp fit`. To start from these weights use --model.load_from "
            "(whole model, official or mtp) or --model.pretrained (backbone)"
        )
    inert = _inert_paths(checkpoint)
    if inert:
        log.warning("%s: %d pickled objects of unknown classes were not restored: %s", path, len(inert),
                    ", ".join(inert[:5]))  # fmt: skip
    return dict(checkpoint)


def _inert_paths(obj: Any, prefix: str = "") -> list[str]:
    if isinstance(obj, InertObject):
        return [prefix or "<root>"]
    if isinstance(obj, Mapping):
        return [p for k, v in obj.items() for p in _inert_paths(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, list | tuple):
        return [p for i, v in enumerate(obj) for p in _inert_paths(v, f"{prefix}[{i}]")]
    return []


class SafeCheckpointIO(CheckpointIO):
    """Atomic, finite-only writes and ``weights_only`` reads of Lightning checkpoints (see the module docstring).

    ``last_saved`` is the path of the last checkpoint written (the non-finite-loss message names it).
    """

    def __init__(self) -> None:
        self.last_saved: Path | None = None
        self._cleaned: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        path = Path(path)
        bad = non_finite_tensors(checkpoint.get("state_dict") or {})
        if bad:
            total = len(checkpoint["state_dict"])
            raise NonFiniteWeightsError(
                f"refusing to write {path}: {len(bad)} of {total} weight tensors hold NaN/inf "
                f"(e.g. {', '.join(bad[:3])}); the previous file under that name, if any, is kept"
            )
        self.clean_folder(path.parent)
        atomic_torch_save(checkpoint, path)
        self.last_saved = path

    def clean_folder(self, folder: str | Path) -> None:
        """Remove orphan partial files of interrupted writes in ``folder`` (once per folder and run)."""
        folder = Path(folder)
        if folder not in self._cleaned:
            remove_orphan_partial_files(folder)
            self._cleaned.add(folder)

    def load_checkpoint(self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None):
        if weights_only is False:
            log.warning("weights_only=False ignored: mtp reads checkpoints without running pickled code")
        return read_lightning_checkpoint(path)

    def remove_checkpoint(self, path: str | Path) -> None:
        Path(path).unlink(missing_ok=True)
