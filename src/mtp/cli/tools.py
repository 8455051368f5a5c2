"""The ``mtp tool NAME`` registry: name -> function(argv) -> exit code. Each tool parses its own arguments."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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

TOOLS: dict[str, Callable[[Sequence[str]], int]] = {
    "backbone-shapes": tool_backbone_shapes,
    "dior-to-coco": tool_dior_to_coco,
    "dota-eval": tool_dota_eval,
    "dota-split": tool_dota_split,
    "make-synthetic": tool_make_synthetic,
    "reuse-decoder": tool_reuse_decoder,
    "samrs-to-coco": tool_samrs_to_coco,
    "spacenet-to-masks": tool_spacenet_to_masks,
    "xview-to-coco": tool_xview_to_coco,
}


def tool_listing() -> str:
    """One line per tool: its name and the first line of its docstring."""
    return "\n".join(f"  {name}: {(fn.__doc__ or '').strip().splitlines()[0]}" for name, fn in sorted(TOOLS.items()))
