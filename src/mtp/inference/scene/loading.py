"""Building the task model of a run config, as ``mtp test`` does, without its data or trainer.

:func:`load_task` reads the ``model`` section of a LightningCLI YAML config (``class_path`` + ``init_args``),
applies ``--model.KEY VALUE`` overrides (e.g. ``--model.load_from official.pth``: an official fine-tuned file,
loaded by the task itself), instantiates it with jsonargparse (the parser LightningCLI uses, so the same types
and defaults apply) and loads ``ckpt_path`` (an ``mtp fit`` checkpoint) with the safe reader
(:func:`mtp.models.checkpoint_reader.read_checkpoint`, ``weights_only``). The ``data`` and ``trainer`` sections
are not instantiated: no dataset needs to exist. Class names come from the checkpoint's hyper-parameters, the
model's own ``class_names``, or the fixed class list of the dataset reader named in ``data`` (LoveDA, DOTA, ...).
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


def _known_classes(data: object, num_classes: int | None) -> tuple[list[str], list | None] | None:
    """Class names (and palette) of the first dataset of a config's ``data`` section whose reader has a fixed class
    list (LoveDA, SpaceNet v1, DOTA by version, DIOR-R, FAIR1M, DIOR, EuroSAT, RESISC-45) when it fits the model."""
    from mtp.data.datasets import horizontal, rotated, segmentation
    from mtp.data.datasets.classification import EUROSAT_CLASSES, RESISC45_CLASSES

    known = {
        "LoveDA": (segmentation.LOVEDA_CLASSES, segmentation.LOVEDA_PALETTE),
        "SpaceNetV1": (segmentation.SPACENET_CLASSES, segmentation.SPACENET_PALETTE),
        "DIORR": (rotated.DIOR_R_CLASSES, None), "FAIR1M": (rotated.FAIR1M_CLASSES, None),
        "DIOR": (horizontal.DIOR_CLASSES, None), "EuroSAT": (EUROSAT_CLASSES, None),
        "RESISC45": (RESISC45_CLASSES, None),
    }  # fmt: skip
    init = data.get("init_args", {}) if isinstance(data, dict) else {}
    for split in ("test", "predict", "val", "train"):
        entry = init.get(split) if isinstance(init, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("class_path"), str):
            continue
        name = entry["class_path"].rsplit(".", 1)[-1]
        args = entry.get("init_args") or {}
        found = (rotated.DOTA_CLASSES.get(str(args.get("version", "1.0"))), None) if name == "DOTA" else known.get(name)
        if found and found[0] and (num_classes is None or len(found[0]) == num_classes):
            return list(found[0]), [list(c) for c in found[1]] if found[1] else None
    return None


def _reason(err: Exception) -> str:
    """The informative lines of a jsonargparse error (what is wrong with the model's class_path / init_args)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("- Problem with given class_path")), None)
    if start is None:
        return lines[0] if lines else type(err).__name__
    stop = next((i for i in range(start, len(lines)) if lines[i].startswith("- ")), len(lines))
    return " ".join(lines[start:stop])


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
    init_args = dict(model.get("init_args") or {})
    return {"class_path": model["class_path"], "init_args": init_args, "data": data.get("data")}


def load_task(config: str | Path, ckpt_path: str | Path | None = None,
              overrides: Sequence[tuple[str, str]] = ()) -> nn.Module:  # fmt: skip
    """The task module of ``config`` with ``overrides`` applied and ``ckpt_path`` loaded (see the module docstring)."""
    import lightning as L
    from jsonargparse import ArgumentParser

    config = Path(config)
    section = _model_section(config)
    data = section.pop("data")
    for key, value in overrides:
        section["init_args"][key] = yaml.safe_load(value) if value.strip() else value
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningModule, "model", required=True)
    try:
        cfg = parser.parse_object({"model": section})
        task = (parser.instantiate if hasattr(parser, "instantiate") else parser.instantiate_classes)(cfg).model
    except CheckpointError:
        raise
    except Exception as err:  # jsonargparse / the task constructor: show the reason, name the config
        raise SceneInputError(f"{config}: cannot build the model {section['class_path']} ({_reason(err)})") from None
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
    if not getattr(task, "class_names", None):
        hparams = getattr(task, "hparams", {}) or {}
        found = _known_classes(data, hparams.get("num_classes") if hasattr(hparams, "get") else None)
        if found:
            task.class_names = found[0]
            if found[1] and not getattr(task, "palette", None):
                task.palette = [tuple(c) for c in found[1]]
    return task
