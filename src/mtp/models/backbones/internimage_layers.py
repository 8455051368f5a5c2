"""Building blocks of InternImage (official names: ``Multi-Task_Pretrain/backbone/intern_image.py``
and ``.../ops_dcnv3/modules/dcnv3.py``).

Inside the levels, tensors are channels-last (N, H, W, C), as in the official code. Norm layers
are ``nn.Sequential`` wrappers whose indices reproduce the official parameter names: a permute
(``torchvision.ops.Permute``) before/after the ``LayerNorm`` where the official
``build_norm_layer`` converts formats (e.g. ``norm1.1.weight`` in the stem, ``norm1.0.weight`` in
a block). LayerNorm eps is 1e-6 everywhere.
"""

from __future__ import annotations

import torch
from timm.layers import DropPath, Mlp
from torch import Tensor, nn
from torchvision.ops import Permute

from mtp.ops.dcnv3 import DCN_IMPLS, dcnv3_core

ACTIVATIONS = {"GELU": nn.GELU, "ReLU": nn.ReLU, "SiLU": nn.SiLU}
_TO_LAST, _TO_FIRST = (0, 2, 3, 1), (0, 3, 1, 2)


def layer_norm(dim: int, in_format: str = "channels_last", out_format: str = "channels_last") -> nn.Sequential:
    """LayerNorm(eps 1e-6) over channels, converting (N, C, H, W) <-> (N, H, W, C) as requested."""
    layers: list[nn.Module] = [Permute(list(_TO_LAST))] if in_format == "channels_first" else []
    layers.append(nn.LayerNorm(dim, eps=1e-6))
    if out_format == "channels_first":
        layers.append(Permute(list(_TO_FIRST)))
    return nn.Sequential(*layers)


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"act_layer must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class DCNv3(nn.Module):
    """DCNv3 module (official ``DCNv3`` / ``DCNv3_pytorch``): (N, H, W, C) -> (N, H, W, C).

    ``input_proj`` gives the sampled values; offsets and masks come from the block input through
    ``dw_conv`` (depth-wise conv k x k -> LN -> activation), then ``offset`` (G*P*2 pixel offsets)
    and ``mask`` (G*P logits, softmax over the P points of each group). The core is
    :func:`mtp.ops.dcnv3.dcnv3_core`; ``output_proj`` mixes the groups.
    """

    def __init__(
        self,
        channels: int,
        group: int,
        kernel_size: int = 3,
        stride: int = 1,
        pad: int = 1,
        dilation: int = 1,
        offset_scale: float = 1.0,
        act_layer: str = "GELU",
        dw_kernel_size: int | None = None,
        remove_center: bool = False,
        impl: str = "gather",
    ) -> None:
        super().__init__()
        if channels % group:
            raise ValueError(f"channels ({channels}) must be divisible by group ({group})")
        if impl not in DCN_IMPLS:
            raise ValueError(f"impl must be one of {DCN_IMPLS}, got {impl!r}")
        dw_kernel_size = dw_kernel_size or kernel_size
        self.channels, self.group, self.kernel_size, self.stride = channels, group, kernel_size, stride
        self.pad, self.dilation, self.offset_scale, self.remove_center = pad, dilation, offset_scale, remove_center
        self.impl = impl
        points = kernel_size * kernel_size - int(remove_center)
        self.dw_conv = nn.Sequential(
            nn.Conv2d(channels, channels, dw_kernel_size, padding=(dw_kernel_size - 1) // 2, groups=channels),
            layer_norm(channels, "channels_first", "channels_last"),
            activation(act_layer),
        )
        self.offset = nn.Linear(channels, group * points * 2)
        self.mask = nn.Linear(channels, group * points)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official ``_reset_parameters``: zero offset/mask layers, xavier-uniform projections."""
        for layer in (self.offset, self.mask):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        for layer in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, h, w, _ = x.shape
        value = self.input_proj(x)
        hidden = self.dw_conv(x.permute(*_TO_FIRST))  # channels-last strides: no copy for the conv
        offset = self.offset(hidden)
        mask = self.mask(hidden).view(n, h, w, self.group, -1).softmax(-1).view(n, h, w, -1)
        out = dcnv3_core(
            value,
            offset,
            mask,
            kernel_size=self.kernel_size,
            stride=self.stride,
            pad=self.pad,
            dilation=self.dilation,
            group=self.group,
            offset_scale=self.offset_scale,
            remove_center=self.remove_center,
            impl=self.impl,
        )
        return self.output_proj(out)


class StemLayer(nn.Module):
    """(N, 3, H, W) -> (N, ceil(H/4), ceil(W/4), C): conv3x3 s2 -> LN -> act -> conv3x3 s2 -> LN."""

    def __init__(self, in_chans: int, out_chans: int, act_layer: str = "GELU") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans // 2, kernel_size=3, stride=2, padding=1)
        self.norm1 = layer_norm(out_chans // 2, "channels_first", "channels_first")
        self.act = activation(act_layer)
        self.conv2 = nn.Conv2d(out_chans // 2, out_chans, kernel_size=3, stride=2, padding=1)
        self.norm2 = layer_norm(out_chans, "channels_first", "channels_last")

    def forward(self, x: Tensor) -> Tensor:
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class DownsampleLayer(nn.Module):
    """(N, H, W, C) -> (N, ceil(H/2), ceil(W/2), 2C): conv3x3 s2 (no bias) -> LN."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = layer_norm(2 * channels, "channels_first", "channels_last")

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x.permute(*_TO_FIRST)))


class InternImageLayer(nn.Module):
    """One block (official ``InternImageLayer``) on (N, H, W, C).

    post_norm (XL):  x + dp(gamma1 * LN(DCN(x))),  then x + dp(gamma2 * LN(MLP(x)));
    pre-norm:        x + dp(gamma1 * DCN(LN(x))),  then x + dp(gamma2 * MLP(LN(x))).
    Without layer_scale the gammas are absent (factor 1).
    """

    def __init__(
        self,
        channels: int,
        groups: int,
        mlp_ratio: float,
        drop_path: float,
        layer_scale: float | None,
        offset_scale: float,
        post_norm: bool,
        act_layer: str = "GELU",
        dw_kernel_size: int | None = None,
        dcn_impl: str = "gather",
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.post_norm = post_norm
        self.norm1 = layer_norm(channels)
        self.dcn = DCNv3(
            channels,
            groups,
            offset_scale=offset_scale,
            act_layer=act_layer,
            dw_kernel_size=dw_kernel_size,
            impl=dcn_impl,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = layer_norm(channels)
        self.mlp = Mlp(channels, int(channels * mlp_ratio), act_layer=ACTIVATIONS[act_layer], drop=drop)
        self.layer_scale = layer_scale is not None
        if layer_scale is not None:
            self.gamma1 = nn.Parameter(torch.full((channels,), float(layer_scale)))
            self.gamma2 = nn.Parameter(torch.full((channels,), float(layer_scale)))

    def _scaled(self, x: Tensor, gamma: str) -> Tensor:
        return x * getattr(self, gamma) if self.layer_scale else x

    def forward(self, x: Tensor) -> Tensor:
        if self.post_norm:
            x = x + self.drop_path(self._scaled(self.norm1(self.dcn(x)), "gamma1"))
            return x + self.drop_path(self._scaled(self.norm2(self.mlp(x)), "gamma2"))
        x = x + self.drop_path(self._scaled(self.dcn(self.norm1(x)), "gamma1"))
        return x + self.drop_path(self._scaled(self.mlp(self.norm2(x)), "gamma2"))
