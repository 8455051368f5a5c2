"""The ``mtp tool NAME`` registry: name -> function(argv) -> exit code. Each tool parses its own arguments.

Expected faults (a missing or bad input file: ``OSError`` / ``ValueError``, whose messages name the file) end a
tool with ``mtp tool NAME: error: MESSAGE`` and exit code 1 instead of a Python traceback; set ``MTP_TRACEBACK=1``
to see the traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence

from mtp.cli.check_data import tool_check_data
from mtp.cli.data_tools import (
    tool_dior_to_coco,
    tool_dota_split,
    tool_make_synthetic,
    tool_samrs_to_coco,
    tool_spacenet_to_masks,
    tool_xview_to_coco,
)
from mtp.cli.eval_tools import tool_dota_eval
from mtp.cli.model_tools import tool_backbone_shapes, tool_reuse_decoder


def clear_errors(name: str, tool: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str]], int]:
    """``tool`` with expected faults printed as one clear line (module docstring)."""

    @functools.wraps(tool)
    def run(argv: Sequence[str]) -> int:
        try:
            return tool(argv)
        except (OSError, ValueError) as e:
            if os.environ.get("MTP_TRACEBACK"):
                raise
            print(f"mtp tool {name}: error: {e}", file=sys.stderr)
            return 1

    return run


_TOOLS: dict[str, Callable[[Sequence[str]], int]] = {
    "backbone-shapes": tool_backbone_shapes,
    "check-data": tool_check_data,
    "dior-to-coco": tool_dior_to_coco,
    "dota-eval": tool_dota_eval,
    "dota-split": tool_dota_split,
    "make-synthetic": tool_make_synthetic,
    "reuse-decoder": tool_reuse_decoder,
    "samrs-to-coco": tool_samrs_to_coco,
    "spacenet-to-masks": tool_spacenet_to_masks,
    "xview-to-coco": tool_xview_to_coco,
}
TOOLS: dict[str, Callable[[Sequence[str]], int]] = {name: clear_errors(name, tool) for name, tool in _TOOLS.items()}


def tool_listing() -> str:
    """One line per tool: its name and the first line of its docstring."""
    return "\n".join(f"  {name}: {(fn.__doc__ or '').strip().splitlines()[0]}" for name, fn in sorted(TOOLS.items()))
