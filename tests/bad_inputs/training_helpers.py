"""Helpers of the training / checkpoint / command-line corpus: tiny configs on synthetic data, callbacks that
simulate faults (SIGKILL, Ctrl-C) inside a real ``mtp fit`` process, and a recorder of the state a resumed run
starts from. The callbacks are named by ``class_path`` in the YAML configs the tests write."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from tests.conftest import REPO

TINY_LOVEDA = REPO / "configs" / "segmentation" / "tiny-loveda-cpu.yaml"
QUIET = {"enable_progress_bar": False, "logger": False, "enable_model_summary": False}


def tiny_loveda_config(
    path: Path, root: Path, work: Path, *, callbacks: list[dict] | None = None, every_n_train_steps: int = 2, **model
) -> Path:
    """configs/segmentation/tiny-loveda-cpu.yaml on ``root`` (LoveDA release layout), outputs under ``work``,
    batch 2, no workers, checkpoints every ``every_n_train_steps`` (+ last.ckpt), extra ``callbacks``."""
    config = yaml.safe_load(TINY_LOVEDA.read_text())
    trainer = config["trainer"]
    trainer.update(QUIET, default_root_dir=str(work), max_steps=4)
    every = {"dirpath": str(work / "checkpoints"), "every_n_train_steps": every_n_train_steps}
    checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {**every, "save_last": True, "save_top_k": -1}}  # fmt: skip
    trainer["callbacks"] = [checkpoint, *(callbacks or [])]
    config["model"]["init_args"].update(output_dir=str(work / "test"), save_predictions=False, **model)
    data = config["data"]["init_args"]
    for split in ("train", "test"):
        data[split]["init_args"]["root"] = str(root)
    data.update(batch_size=2, num_workers=0, persistent_workers=False)
    path.write_text(yaml.safe_dump(config))
    return path


def run_in_process(capsys, *args: str | os.PathLike) -> tuple[int, str]:
    """``mtp ARGS`` through :func:`mtp.cli.main` in this process (the CLI code path, without the seconds of a
    fresh interpreter); returns (exit code, stdout + stderr)."""
    from mtp.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


class KillAtStep(L.Callback):
    """SIGKILL this process when batch ``step + 1`` starts, i.e. right after the step-``step`` checkpoint."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAtStep(L.Callback):
    """Send ``signum`` (default SIGINT, i.e. Ctrl-C) to this process at the end of optimizer step ``step``."""

    def __init__(self, step: int, signum: int = int(signal.SIGINT)) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class RecordRunStart(L.Callback):
    """Save what a (resumed) run starts from to ``out``: global step, optimizer and scheduler state, weights and
    the checkpoint plugin's class name."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_train_start(self, trainer, pl_module) -> None:
        record: dict[str, Any] = {
            "global_step": trainer.global_step,
            "optimizer": trainer.optimizers[0].state_dict(),
            "scheduler": trainer.lr_scheduler_configs[0].scheduler.state_dict(),
            "state_dict": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
            "checkpoint_io": type(trainer.strategy.checkpoint_io).__name__,
        }
        torch.save(record, self.out)


def assert_same_tensors(a: Any, b: Any, where: str = "") -> None:
    """Nested dicts / lists of tensors and numbers are exactly equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))}"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def tiny_config(config: str, path: Path, root: Path, work: Path, **data_options) -> Path:
    """``configs/<config>`` with every dataset split's ``root`` set to ``root``, outputs under ``work``, no
    workers, quiet; ``data_options`` update the datamodule's init_args."""
    loaded = yaml.safe_load((REPO / "configs" / config).read_text())
    loaded["trainer"].update(QUIET, default_root_dir=str(work), max_steps=2)
    loaded["trainer"].pop("callbacks", None)
    data = loaded["data"]["init_args"]
    for split in ("train", "val", "test", "predict"):
        if isinstance(data.get(split), dict):
            data[split]["init_args"]["root"] = str(root)
    data.update(num_workers=0, persistent_workers=False, **data_options)
    if "output_dir" in loaded["model"]["init_args"]:
        loaded["model"]["init_args"]["output_dir"] = str(work / "test")
    path.write_text(yaml.safe_dump(loaded))
    return path
