"""``mtp fit|validate|test|predict``: LightningCLI over the task modules and datamodules named in a YAML config.

On top of LightningCLI, for every task:

* checkpoints are written atomically and read without running pickled code
  (:class:`mtp.tasks.checkpoint_io.SafeCheckpointIO`, also for ``--ckpt_path``), orphan partial files of killed
  runs are removed, and Ctrl-C writes a resumable ``last.ckpt`` (:class:`mtp.tasks.callbacks.SafeInterrupt`);
* ``--ckpt_path`` is read safely before anything is built: a missing, empty, truncated or foreign file, or a
  checkpoint of another task, stops with one line;
* faults are reported plainly and last (``mtp fit: error: data.train (...LoveDA): <message>``, exit code 2 for
  bad input / config / checkpoints, 1 for a training failure, 130 after Ctrl-C), without a traceback;
  ``MTP_DEBUG=1`` or ``--debug`` shows the full traceback;
* start-up checks before any training: output and checkpoint folders writable, ``max_steps`` / ``max_epochs``
  not 0.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtp.cli.errors import UserFacingError, build_error_message, debug_enabled, refine_parser_message

SUBCOMMANDS = ("fit", "validate", "test", "predict")
log = logging.getLogger("mtp.cli")

# Exceptions that describe a problem with the user's data, config or files (not a bug): shown without traceback.
_EXPECTED_EXIT_CODES = {"NonFiniteLossError": 1}


def _cli_classes():
    """Build the LightningCLI / parser subclasses lazily (importing Lightning takes seconds)."""
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
    from lightning.pytorch.trainer.trainer import Trainer

    from mtp.models.checkpoint_reader import CheckpointError
    from mtp.tasks.callbacks import SafeInterrupt
    from mtp.tasks.checkpoint_io import SafeCheckpointIO, read_lightning_checkpoint

    class MTPArgumentParser(LightningArgumentParser):
        """Parse errors as one short line (``mtp fit: error: ...``) instead of the usage dump."""

        def error(self, message: str, ex: Exception | None = None):
            if not self.exit_on_error or debug_enabled():
                return super().error(message, ex)
            raise UserFacingError(refine_parser_message(message))

    class MTPLightningCLI(LightningCLI):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.safe_interrupt = SafeInterrupt()
            super().__init__(*args, parser_class=MTPArgumentParser, **kwargs)

        # ---------------------------------------------------------------- --ckpt_path
        def _parse_ckpt_path(self) -> None:
            """LightningCLI merges the checkpoint's hyper-parameters into the model config; do it with the safe
            reader, refuse a checkpoint of another task, drop what the class does not take."""
            subcommand = self.config.get("subcommand")
            if not subcommand:
                return
            ckpt_path = self.config[subcommand].get("ckpt_path")
            if not ckpt_path or str(ckpt_path) in ("last", "best", "hpc", "registry"):
                return
            if not Path(ckpt_path).is_file():
                raise CheckpointError(f"{ckpt_path}: checkpoint file not found (--ckpt_path)")
            hparams = dict(read_lightning_checkpoint(ckpt_path).get("hyper_parameters") or {})
            hparams.pop("_instantiator", None)
            written_by = hparams.pop("_class_path", None)
            model = self.config[subcommand].get("model")
            configured = model.get("class_path") if model is not None and hasattr(model, "get") else None
            if written_by and configured and written_by != configured:
                raise CheckpointError(
                    f"{ckpt_path}: written by {written_by}, but the config builds {configured}: a checkpoint of "
                    "another task cannot be resumed or evaluated here (use the config it was trained with)"
                )
            target = written_by or configured
            if not hparams or not target:
                return
            accepted = _init_parameters(target)
            dropped = [k for k in hparams if accepted is not None and k not in accepted]
            if dropped:
                log.warning("%s: hyper-parameters not taken by %s ignored: %s", ckpt_path, target, ", ".join(dropped))
            kept = {k: v for k, v in hparams.items() if k not in dropped and _plain(v)}
            self.config = self.parser.parse_object(
                {subcommand: {"model": {"class_path": target, "dict_kwargs": kept}}}, self.config
            )

        # ---------------------------------------------------------------- building
        def instantiate_classes(self) -> None:
            try:
                super().instantiate_classes()
            except UserFacingError:
                raise
            except Exception as err:
                if debug_enabled():
                    raise
                config = self.config.get(str(self.config.get("subcommand")), self.config)
                raise UserFacingError(build_error_message(err, config)) from err

        def instantiate_trainer(self, **kwargs: Any) -> Trainer:
            trainer = super().instantiate_trainer(**kwargs)
            if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # default; keep a user's own plugin
                trainer.strategy.checkpoint_io = SafeCheckpointIO()
            trainer.callbacks.append(self.safe_interrupt)
            return trainer

        # ---------------------------------------------------------------- start-up checks
        def before_fit(self) -> None:
            trainer = self.trainer
            for name in ("max_steps", "max_epochs"):
                value = getattr(trainer, name)
                if value == 0:
                    raise UserFacingError(
                        f"trainer.{name} is 0: fit would stop before the first training step and write no "
                        f"checkpoint. Set a positive --trainer.{name} (or -1 for no limit on {name.split('_')[1]})"
                    )
            folders = [(Path(trainer.default_root_dir), "trainer.default_root_dir")]
            for callback in trainer.checkpoint_callbacks:
                if getattr(callback, "dirpath", None):
                    folders.append((Path(callback.dirpath), f"{type(callback).__name__} dirpath"))
            _check_writable(folders + _model_output(self.model))

        def before_test(self) -> None:
            _check_writable(_model_output(self.model))

        before_predict = before_test

    return MTPLightningCLI


def _init_parameters(class_path: str) -> set[str] | None:
    import importlib

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        return set(inspect.signature(cls.__init__).parameters) - {"self"}
    except (ImportError, AttributeError, ValueError, TypeError):
        return None


def _plain(value: Any) -> bool:
    """Values that can go back into a config (no inert objects from unknown classes)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _model_output(model: Any) -> list[tuple[Path, str]]:
    option = getattr(model, "output_dir_option", None) or getattr(model, "output_dir", None)
    return [(Path(option), "model.output_dir")] if isinstance(option, str | Path) and option else []


def _check_writable(folders: Sequence[tuple[Path, str]]) -> None:
    """Create each folder and write a probe file in it; a failure stops before any work (exit 2)."""
    for folder, option in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".mtp-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            reason = err.strerror or str(err)
            raise UserFacingError(
                f"{option}: cannot write to {folder} ({reason}); nothing was run. Choose a writable folder "
                f"(e.g. --trainer.default_root_dir) or fix its permissions"
            ) from err


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    return [a for a in argv if a != "--debug"], "--debug" in argv


def _config_files(argv: Sequence[str]) -> list[str]:
    files = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def _report(subcommand: str, message: str, argv: Sequence[str]) -> None:
    configs = _config_files(argv)
    context = f"config: {', '.join(configs)}; " if configs else ""
    sys.stderr.flush()
    print(f"mtp {subcommand}: error: {message}", file=sys.stderr)
    print(f"({context}run with MTP_DEBUG=1 or --debug for the full traceback)", file=sys.stderr)


def run_lightning(argv: Sequence[str] | None) -> int:
    """Run ``fit|validate|test|predict ...`` through :class:`MTPLightningCLI`; returns the exit code.

    ``argv=None`` lets LightningCLI read ``sys.argv`` itself (the console entry point: DDP launchers re-run it).
    """
    from_command_line = argv is None
    args, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    if debug:
        os.environ["MTP_DEBUG"] = "1"  # inherited by DDP processes
    subcommand = next((a for a in args if a in SUBCOMMANDS), "fit")
    saved_argv = sys.argv
    sys.argv = [saved_argv[0], *args] if from_command_line else saved_argv[:1]
    cli = None
    try:
        cli_class = _cli_classes()
        cli = cli_class(
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=None if from_command_line else list(args),
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    except UserFacingError as err:
        if debug_enabled():
            raise
        _report(subcommand, str(err), args)
        return err.exit_code
    except Exception as err:  # faults raised while running (datasets, checkpoints, non-finite losses)
        if debug_enabled() or not _expected(err):
            raise
        _report(subcommand, build_error_message(err), args)
        return _EXPECTED_EXIT_CODES.get(type(err).__name__, 2)
    finally:
        sys.argv = saved_argv
    interrupt = getattr(cli, "safe_interrupt", None)
    if interrupt is not None and interrupt.interrupted_at is not None:
        print(
            f"mtp {subcommand}: interrupted; last.ckpt written at global step {interrupt.interrupted_at}: "
            f"resume with --ckpt_path {interrupt.checkpoint_path}",
            file=sys.stderr,
        )
        return 130
    return 0


def _expected(err: BaseException) -> bool:
    """Faults about the user's inputs, files or training numerics (shown as one message)."""
    import torch

    from mtp.models.checkpoint_reader import CheckpointError
    from mtp.tasks.base import NonFiniteLossError

    with contextlib.suppress(AttributeError):
        if isinstance(err, torch.OutOfMemoryError):
            return False
    return isinstance(err, CheckpointError | NonFiniteLossError | ValueError | OSError | KeyError)
