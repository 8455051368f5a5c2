"""``mtp fit|validate|test|predict``: LightningCLI over the task modules and datamodules named in a YAML config."""

from __future__ import annotations

import sys
from collections.abc import Sequence

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run_lightning(argv: Sequence[str] | None) -> int:
    """Hand ``fit|validate|test|predict ...`` to LightningCLI (any LightningModule/DataModule).

    ``argv=None`` lets LightningCLI read ``sys.argv`` itself (the console entry point).
    """
    from lightning.pytorch.cli import LightningCLI

    saved_argv = sys.argv
    if argv is not None:
        sys.argv = sys.argv[:1]  # explicit arguments only (LightningCLI warns when both are present)
    try:
        LightningCLI(
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=None if argv is None else list(argv),
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    finally:
        sys.argv = saved_argv
    return 0
