"""InternImage backbone as used by MTP (``Multi-Task_Pretrain/backbone/intern_image.py``), with the
official parameter names and numerics.

Structure: stem (two conv3x3 stride-2 + LN, stride 4) -> 4 levels. Level i works on channels-last
(N, H, W, C * 2**i) maps with ``groups[i]`` DCNv3 groups: ``depths[i]`` blocks
(:class:`~mtp.models.backbones.internimage_layers.InternImageLayer`), then a final LN only
without post-norm, then (levels 0-2) a conv3x3 stride-2 downsample. Each level's output
*before* its downsample is returned, as NCHW.

Input: float (N, 3, H, W), normalised RGB (DESIGN.md), any H, W: the stride-2 convolutions
(k3, p1) give ceil(H/2) at each step, so level i has ceil(H / 2**(i+2)) rows.
Output: tuple of (N, C * 2**i, H_i, W_i) for i in ``out_indices`` (strides 4, 8, 16, 32).

Only the options InternImage-XL uses are implemented; the InternImage-H/G options of the
official class (``level2_post_norm``, ``res_post_norm``, ``center_feature_scale``) are accepted
when off and rejected when on. ``dcn_impl`` selects the DCNv3 core path (:mod:`mtp.ops.dcnv3`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mtp.models.backbones.internimage_layers import (
    DCNv3,
    DownsampleLayer,
    InternImageLayer,
    StemLayer,
    activation,
    layer_norm,
)
from mtp.ops.dcnv3 import DCN_IMPLS


class InternImageLevel(nn.Module):
    """Official ``InternImageBlock``: blocks, (LN without post-norm), optional downsample."""

    def __init__(
        self,
        channels: int,
        depth: int,
        groups: int,
        drop_path: Sequence[float],
        downsample: bool,
        **block_kwargs,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            InternImageLayer(channels, groups, drop_path=drop_path[i], **block_kwargs) for i in range(depth)
        )
        self.norm = None if block_kwargs["post_norm"] else layer_norm(channels)
        self.downsample = DownsampleLayer(channels) if downsample else None

    def forward(self, x: Tensor, use_checkpoint: bool = False) -> tuple[Tensor, Tensor]:
        """(N, H, W, C) -> (downsampled map or the same map, map before the downsample)."""
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
        if self.norm is not None:
            x = self.norm(x)
        return (self.downsample(x) if self.downsample is not None else x), x


class InternImage(nn.Module):
    """InternImage (see the module docstring).

    Args:
        channels: width of level 0 (level i has channels * 2**i).
        depths, groups: blocks and DCNv3 groups per level.
        mlp_ratio: MLP hidden width / channels.
        drop_path_rate: stochastic depth, linear from 0 over all blocks (official ``torch.linspace``).
        layer_scale: initial gamma value, or None for no layer scale.
        offset_scale: DCNv3 offset (and kernel-grid) scale.
        post_norm: block norms after the branches (XL) instead of before; without post-norm every
            level ends with a LN.
        out_indices: levels whose maps are returned (levels after the last one are not run).
        use_checkpoint: activation checkpointing of every block while training.
        dcn_impl: ``"gather"`` (default) or ``"reference"``.
        norm_layer, act_layer: ``"LN"`` (the only norm implemented); ``"GELU"``, ``"ReLU"`` or ``"SiLU"``.
        dw_kernel_size: kernel of the offset/mask depth-wise conv (None: 3).
        drop_path_type: ``"linear"`` or ``"uniform"`` (every block gets ``drop_path_rate``).
        drop_rate: dropout after the stem and in the MLPs (0 in every MTP config).
        with_cp: the official name of ``use_checkpoint`` (either may be given).
        core_op: the official core name, ``"DCNv3"`` or ``"DCNv3_pytorch"`` (same arithmetic; the
            path is chosen by ``dcn_impl``).
        level2_post_norm, level2_post_norm_block_ids, res_post_norm, center_feature_scale:
            InternImage-H/G options, must stay off (the ids alone are ignored, as officially).
    """

    def __init__(
        self,
        channels: int = 64,
        depths: Sequence[int] = (3, 4, 18, 5),
        groups: Sequence[int] = (3, 6, 12, 24),
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.2,
        layer_scale: float | None = None,
        offset_scale: float = 1.0,
        post_norm: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        use_checkpoint: bool = False,
        dcn_impl: str = "gather",
        norm_layer: str = "LN",
        act_layer: str = "GELU",
        dw_kernel_size: int | None = None,
        drop_path_type: str = "linear",
        drop_rate: float = 0.0,
        with_cp: bool | None = None,
        core_op: str = "DCNv3",
        level2_post_norm: bool = False,
        level2_post_norm_block_ids: Sequence[int] | None = None,
        res_post_norm: bool = False,
        center_feature_scale: bool = False,
    ) -> None:
        super().__init__()
        depths, groups = [int(d) for d in depths], [int(g) for g in groups]
        if len(depths) != 4 or len(groups) != 4 or min(depths) < 1:
            raise ValueError(f"depths and groups need 4 levels (depths >= 1), got {depths}, {groups}")
        indices = [int(i) for i in out_indices]
        if not indices or indices != sorted(set(indices)) or indices[0] < 0 or indices[-1] > 3:
            raise ValueError(f"out_indices must be increasing level indices in [0, 4), got {list(out_indices)}")
        if norm_layer != "LN":
            raise ValueError(f"norm_layer {norm_layer!r}: only 'LN' (every MTP InternImage) is implemented")
        if dcn_impl not in DCN_IMPLS:
            raise ValueError(f"dcn_impl must be one of {DCN_IMPLS}, got {dcn_impl!r}")
        if core_op not in ("DCNv3", "DCNv3_pytorch"):
            raise ValueError(f"core_op must be 'DCNv3' or 'DCNv3_pytorch', got {core_op!r}")
        if with_cp is not None and use_checkpoint and not with_cp:
            raise ValueError("use_checkpoint=True contradicts with_cp=False (with_cp is its official name)")
        if drop_path_type not in ("linear", "uniform"):
            raise ValueError(f"drop_path_type must be 'linear' or 'uniform', got {drop_path_type!r}")
        unsupported = {
            "level2_post_norm": level2_post_norm,  # its block ids are ignored without it, as officially
            "res_post_norm": res_post_norm,
            "center_feature_scale": center_feature_scale,
        }
        if any(unsupported.values()):
            on = [name for name, value in unsupported.items() if value]
            raise ValueError(f"{', '.join(on)}: InternImage-H/G options, not used by MTP's InternImage-XL")
        activation(act_layer)  # validates the name
        self.channels, self.depths, self.groups = channels, depths, groups
        self.out_indices = tuple(indices)
        self.post_norm, self.use_checkpoint = post_norm, bool(use_checkpoint or with_cp)

        self.patch_embed = StemLayer(3, channels, act_layer)
        self.pos_drop = nn.Dropout(drop_rate)
        total = sum(depths)
        if drop_path_type == "uniform":
            dpr = [float(drop_path_rate)] * total
        else:
            dpr = torch.linspace(0, drop_path_rate, total, device="cpu").tolist()
        self.levels = nn.ModuleList()
        for i in range(4):
            start = sum(depths[:i])
            self.levels.append(
                InternImageLevel(
                    channels * 2**i,
                    depths[i],
                    groups[i],
                    drop_path=dpr[start : start + depths[i]],
                    downsample=i < 3,
                    mlp_ratio=mlp_ratio,
                    layer_scale=layer_scale,
                    offset_scale=offset_scale,
                    post_norm=post_norm,
                    act_layer=act_layer,
                    dw_kernel_size=dw_kernel_size,
                    dcn_impl=dcn_impl,
                    drop=drop_rate,
                )
            )
        self.out_channels = [channels * 2**i for i in self.out_indices]
        self.strides = [4 * 2**i for i in self.out_indices]
        self._init_weights()

    def _init_weights(self) -> None:
        """Official init: trunc-normal(0.02) Linear weights, zero biases, LN 1/0, then the DCNv3
        reset (zero offset/mask layers, xavier-uniform projections). Convolutions keep PyTorch's."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, DCNv3):
                m.reset_parameters()

    def get_num_layers(self) -> int:
        """Number of blocks (the official layer-decay ``num_layers``: 39 for XL)."""
        return sum(self.depths)

    def set_dcn_impl(self, impl: str) -> None:
        """Switch every DCNv3 core between ``"gather"`` and ``"reference"``."""
        if impl not in DCN_IMPLS:
            raise ValueError(f"dcn_impl must be one of {DCN_IMPLS}, got {impl!r}")
        for m in self.modules():
            if isinstance(m, DCNv3):
                m.impl = impl

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """(N, 3, H, W) -> maps (N, C_i, H_i, W_i) for the levels in ``out_indices``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"InternImage expects a (N, 3, H, W) batch, got shape {tuple(x.shape)}")
        ckpt = self.use_checkpoint and self.training and torch.is_grad_enabled()
        x = self.pos_drop(self.patch_embed(x))
        outs = []
        for i, level in enumerate(self.levels):
            x, before = level(x, use_checkpoint=ckpt)
            if i in self.out_indices:
                outs.append(before.permute(0, 3, 1, 2).contiguous())
            if i == self.out_indices[-1]:
                break
        return tuple(outs)
