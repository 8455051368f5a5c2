"""Helpers shared by the task benchmarks: switch the ViT+RVSA attention path of a whole task model, write results.

``--attn-impls auto reference`` in a task benchmark measures the default path ("auto": what ``mtp`` runs on
that device, see ``mtp.models.backbones.rvsa_attention.resolve_attn_impl``) against the reference path
(the official arithmetic) in the same run; ``benchmarks/gpu_suite.sh`` passes it to every task benchmark.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mtp.models.backbones.rvsa_attention import ATTN_IMPLS, resolve_attn_impl
from mtp.models.backbones.vit_rvsa import ViTRVSA


def set_attn_impl(model: nn.Module, attn_impl: str) -> int:
    """Set ``attn_impl`` on every ViT+RVSA backbone inside ``model``; returns how many were switched."""
    if attn_impl not in ATTN_IMPLS:
        raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
    backbones = [m for m in model.modules() if isinstance(m, ViTRVSA)]
    for backbone in backbones:
        backbone.set_attn_impl(attn_impl)
    return len(backbones)


def describe_impl(attn_impl: str, device: torch.device) -> str:
    """``"auto"`` -> ``"auto=sdpa"`` (what it resolves to here), others unchanged."""
    resolved = resolve_attn_impl(attn_impl, device)
    return attn_impl if resolved == attn_impl else f"{attn_impl}={resolved}"


def write_json(path: Path | None, records: list[dict], **meta) -> None:
    """Write ``{"meta": ..., "results": records}`` atomically (temporary file + rename); no-op without a path."""
    if path is None:
        return
    meta = {
        "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        **meta,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": records}, indent=1, default=str))
    tmp.replace(path)
