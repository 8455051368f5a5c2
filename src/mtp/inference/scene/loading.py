"""Building the task model of a run config, as ``mtp test`` does, without its data or trainer.

:func:`load_task` reads the ``model`` section of a LightningCLI YAML config (``class_path`` + ``init_args``),
applies ``--model.KEY VALUE`` overrides (e.g. ``--model.load_from official.pth``: an official fine-tuned file,
loaded by the task itself), instantiates it with jsonargparse (the parser LightningCLI uses, so the same types
and defaults apply) and loads ``ckpt_path`` (an ``mtp fit`` checkpoint) with the safe reader
(:func:`mtp.models.checkpoint_reader.read_checkpoint`, ``weights_only``). The ``data`` and ``trainer`` sections
are ignored: no dataset needs to exist. Class names stored in the checkpoint's hyper-parameters are restored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import yaml
from torch import nn

from mtp.inference.scene.reader import SceneInputError
from mtp.models.checkpoint_reader import CheckpointError, extract_state_dict, read_checkpoint

__all__ = ["load_task", "parse_model_overrides"]

log = logging.getLogger(__name__)


def parse_model_overrides(args: Sequence[str]) -> list[tuple[str, str]]:
    """``['--model.load_from', 'x.pth', '--model.init_args.tta_flip=true']`` -> [('load_from', 'x.pth'), ...].
    Anything else raises ValueError naming the argument."""
    pairs, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--model."):
            raise ValueError(f"unrecognised argument {arg!r} (model settings are given as --model.KEY VALUE)")
        key, eq, value = arg[len("--model.") :].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ValueError(f"{arg} needs a value")
            value, i = args[i + 1], i + 1
        pairs.append((key.removeprefix("init_args."), value))
        i += 1
    return pairs


def _model_section(config: Path) -> dict:
    if not config.is_file():
        raise SceneInputError(f"{config}: config file not found")
    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SceneInputError(f"{config}: not a readable YAML config ({err})") from None
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or "class_path" not in model:
        raise SceneInputError(f"{config}: no 'model: {{class_path: ..., init_args: ...}}' section")
    return {"class_path": model["class_path"], "init_args": dict(model.get("init_args") or {})}


def load_task(config: str | Path, ckpt_path: str | Path | None = None,
              overrides: Sequence[tuple[str, str]] = ()) -> nn.Module:  # fmt: skip
    """The task module of ``config`` with ``overrides`` applied and ``ckpt_path`` loaded (see the module docstring)."""
    import lightning as L
    from jsonargparse import ArgumentParser

    config = Path(config)
    section = _model_section(config)
    for key, value in overrides:
        section["init_args"][key] = yaml.safe_load(value) if value.strip() else value
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningModule, "model", required=True)
    try:
        cfg = parser.parse_object({"model": section})
        task = parser.instantiate_classes(cfg).model
    except CheckpointError:
        raise
    except Exception as err:  # jsonargparse / the task constructor: show the reason, name the config
        message = str(err).strip().splitlines()
        raise SceneInputError(f"{config}: cannot build the model {section['class_path']} "
                              f"({message[0] if message else type(err).__name__})") from None  # fmt: skip
    if ckpt_path is not None:
        ckpt = read_checkpoint(ckpt_path)
        state = extract_state_dict(ckpt, ckpt_path)
        try:
            result = task.load_state_dict(state, strict=False)
        except RuntimeError as err:
            reason = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err)[:200])
            raise CheckpointError(f"{ckpt_path}: does not fit the model of {config} ({reason})") from None
        problems = [k for k in result.missing_keys] + [k for k in result.unexpected_keys]
        if problems:
            raise CheckpointError(f"{ckpt_path}: does not fit the model of {config}: {len(result.missing_keys)} "
                                  f"missing and {len(result.unexpected_keys)} unexpected keys (first: {problems[0]})")
        hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
        names = hparams.get("class_names") if isinstance(hparams, dict) else None
        if names and not getattr(task, "class_names", None):
            task.class_names = list(names)
        if hasattr(task, "on_load_checkpoint") and isinstance(ckpt, dict):
            task.on_load_checkpoint(ckpt)
        log.info("loaded %s into %s", ckpt_path, type(task).__name__)
    return task
