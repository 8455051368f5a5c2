"""``python -m mtp.cli`` (what torchrun / srun launch): the ``mtp`` command."""

from mtp.cli import main

raise SystemExit(main())
