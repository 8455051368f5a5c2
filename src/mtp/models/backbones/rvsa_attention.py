"""Rotated varied-size window attention (RVSA), numerically equal to the official MTP module.

Hand-written (no maintained library implements RVSA). Parameter names equal the official ones:
``qkv``, ``proj``, ``rel_pos_h``/``rel_pos_w`` (2*ws-1, head_dim), ``relative_position_bias_table``
((2*ws-1)**2, heads), buffer ``relative_position_index`` (ws*ws, ws*ws) and the three window
predictors ``sampling_{offsets,scales,angles}`` = AvgPool(ws) -> LeakyReLU -> Conv1x1.

Per window and head: queries are the regular ws x ws window; keys and values are bilinearly
resampled (``grid_sample``, zero padding, align_corners=True) on the scaled, rotated and shifted
window (see :mod:`mtp.ops.windows`). Logits = scale * q.k + decomposed rel-pos terms (computed
with the *unscaled* q) + the Swin-style table bias.

Execution paths, selected by ``attn_impl`` (:func:`resolve_attn_impl` turns ``"auto"``, the default, into
one of them per device):
* ``"sdpa"``: one float32 ``grid_sample`` for k and v together on a padded NCHW copy, the three predictors
  share one pooling, and attention runs through ``scaled_dot_product_attention`` with a materialised
  (B*nW, heads, 49, 49) bias;
* ``"flex"``: token-major end to end. Keys and values are sampled straight from the rows of the ``qkv``
  output (:func:`mtp.ops.bilinear.bilinear_gather`: no padding, no NCHW copy, k/v stay in the compute
  dtype, window-major order, so no window partition either), and attention runs through FlexAttention with
  the decomposed and table biases added inside the kernel (:func:`mtp.ops.flex.window_rel_pos_score`);
  off CUDA the same score function is evaluated densely;
* ``"reference"``: a literal transcription of the official arithmetic (explicit softmax), kept
  for tests and as the baseline of the benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtp.ops.bilinear import bilinear_gather
from mtp.ops.flex import flex_attention_available, score_mod_attention, window_rel_pos_score
from mtp.ops.rel_pos import decomposed_rel_pos, decomposed_rel_pos_flat, rel_pos_bias
from mtp.ops.windows import (
    pad_channels_last,
    rvsa_sampling_grid,
    symmetric_window_padding,
    window_partition,
    window_unpartition,
)

ATTN_IMPLS = ("auto", "sdpa", "flex", "reference")
# What "auto" means per device type. "flex" is not the CUDA default until benchmarks/gpu_suite.sh has
# measured it against "sdpa" on a GPU (docs/PERFORMANCE.md#attention-paths); elsewhere FlexAttention has
# no fused kernel with a backward.
AUTO_ATTN_IMPL = {"cuda": "sdpa"}


def resolve_attn_impl(attn_impl: str, device: torch.device) -> str:
    """The path ``attn_impl`` means on ``device``: ``"auto"`` -> ``AUTO_ATTN_IMPL[device.type]`` (``"sdpa"``
    where the table has no entry, or where it names ``"flex"`` but FlexAttention/Triton are missing)."""
    if attn_impl != "auto":
        return attn_impl
    impl = AUTO_ATTN_IMPL.get(device.type, "sdpa")
    return "sdpa" if impl == "flex" and not flex_attention_available() else impl


def _window_predictor(dim: int, out_channels: int, window: int) -> nn.Sequential:
    return nn.Sequential(
        nn.AvgPool2d(kernel_size=window, stride=window),
        nn.LeakyReLU(),
        nn.Conv2d(dim, out_channels, kernel_size=1),
    )


def swin_relative_position_index(window: int) -> Tensor:
    """(ws*ws, ws*ws) index into a ((2ws-1)**2, heads) table, Swin convention (row-major)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class RotatedVariedSizeWindowAttention(nn.Module):
    """RVSA over a (B, H*W, C) token map; any H, W (padded to a multiple of the window).

    Args:
        dim: channels C; num_heads: heads (head_dim = C // heads); window_size: ws (7 in MTP).
        qkv_bias: bias of the qkv projection; attn_impl: one of :data:`ATTN_IMPLS` (module docstring).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        qkv_bias: bool = True,
        attn_impl: str = "auto",
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.ws = dim, num_heads, window_size
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_impl = attn_impl
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * window_size - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * window_size - 1, self.head_dim))
        self.sampling_offsets = _window_predictor(dim, num_heads * 2, window_size)
        self.sampling_scales = _window_predictor(dim, num_heads * 2, window_size)
        self.sampling_angles = _window_predictor(dim, num_heads, window_size)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", swin_relative_position_index(window_size))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    # ------------------------------------------------------------------ window transform
    def _window_params(self, x_pad: Tensor, hw: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """Per-window (offsets, scales, angles) as (B*heads, 2|2|1, nh, nw), float32.

        ``x_pad``: (B, Hp, Wp, C) channels-last. The three official predictors share their
        AvgPool + LeakyReLU; pooling is a window mean (same as AvgPool2d on the zero-padded map)
        and the 1x1 convolutions are applied as linear maps on channels-last windows.
        """
        b, hp, wp, c = x_pad.shape
        ws, heads = self.ws, self.num_heads
        pooled = x_pad.reshape(b, hp // ws, ws, wp // ws, ws, c).mean(dim=(2, 4))  # (B, nh, nw, C)
        pooled = self.sampling_offsets[1](pooled)
        nh, nw = pooled.shape[1:3]

        def predict(seq: nn.Sequential, per_head: int) -> Tensor:
            conv = seq[2]
            out = F.linear(pooled, conv.weight.reshape(conv.out_channels, c), conv.bias)  # (B, nh, nw, heads*k)
            return out.float().permute(0, 3, 1, 2).reshape(b * heads, per_head, nh, nw)

        offsets = predict(self.sampling_offsets, 2)
        scales = predict(self.sampling_scales, 2)
        angles = predict(self.sampling_angles, 1)
        # Official rule: x-offset / (H // ws), y-offset / (W // ws) (transposed for non-square maps).
        # Maps smaller than one window would divide by zero there; we use 1 instead.
        divisor = offsets.new_tensor([max(hw[0] // self.ws, 1), max(hw[1] // self.ws, 1)])
        return offsets / divisor.reshape(1, 2, 1, 1), scales, angles

    def _table_bias(self) -> Tensor:
        """(heads, ws*ws, ws*ws) Swin-style bias."""
        n = self.ws * self.ws
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """x: (B, H*W, C) tokens of a (H, W) grid -> (B, H*W, C)."""
        impl = resolve_attn_impl(self.attn_impl, x.device)
        if impl == "reference":
            return self._forward_reference(x, hw)
        if impl == "flex":
            return self._forward_flex(x, hw)
        b, n, c = x.shape
        h, w = hw
        ws, heads, hd = self.ws, self.num_heads, self.head_dim
        padding = symmetric_window_padding(h, w, ws)
        hp, wp = h + padding[2] + padding[3], w + padding[0] + padding[1]

        x_pad = pad_channels_last(x.reshape(b, h, w, c), padding)
        offsets, scales, angles = self._window_params(x_pad, hw)
        grid = rvsa_sampling_grid(offsets, scales, angles, (hp, wp), ws)  # (B*heads, Hp, Wp, 2)

        qkv = pad_channels_last(self.qkv(x).reshape(b, h, w, 3 * c), padding)  # (B, Hp, Wp, 3C)
        q = window_partition(qkv[..., :c], ws)  # (B*nW, ws*ws, C)
        q = q.reshape(-1, ws * ws, heads, hd).transpose(1, 2).contiguous()  # (B*nW, heads, ws*ws, hd)
        # k and v of one head share the grid: sample them together (B*heads, 2*hd, Hp, Wp).
        kv = qkv[..., c:].reshape(b, hp, wp, 2, heads, hd).permute(0, 4, 3, 5, 1, 2)
        kv = kv.reshape(b * heads, 2 * hd, hp, wp)
        kv = F.grid_sample(kv.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        kv = kv.to(q.dtype).reshape(b, heads, 2 * hd, hp, wp).permute(0, 3, 4, 1, 2)
        kv = window_partition(kv.reshape(b, hp, wp, heads * 2 * hd), ws)  # (B*nW, ws*ws, heads*2*hd)
        kv = kv.reshape(-1, ws * ws, heads, 2, hd).permute(3, 0, 2, 1, 4)  # (2, B*nW, heads, ws*ws, hd)

        rel_h, rel_w = decomposed_rel_pos_flat(q, self.rel_pos_h, self.rel_pos_w, (ws, ws))  # (..., 49, 7)
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).flatten(-2) + self._table_bias().to(q.dtype)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=bias, scale=self.scale)

        out = out.transpose(1, 2).reshape(-1, ws * ws, c)
        out = window_unpartition(out, ws, (hp, wp))[:, padding[2] : padding[2] + h, padding[0] : padding[0] + w]
        return self.proj(out.reshape(b, n, c))

    def _forward_flex(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """Token-major path: k/v gathered from the qkv rows in window order, bias inside the attention kernel."""
        b, n, c = x.shape
        h, w = hw
        ws, heads, hd = self.ws, self.num_heads, self.head_dim
        left, right, top, bottom = padding = symmetric_window_padding(h, w, ws)
        hp, wp = h + top + bottom, w + left + right
        nh, nw = hp // ws, wp // ws

        offsets, scales, angles = self._window_params(pad_channels_last(x.reshape(b, h, w, c), padding), hw)
        grid = rvsa_sampling_grid(offsets, scales, angles, (hp, wp), ws)  # (B*heads, Hp, Wp, 2), normalised
        # pixels of the unpadded map (zero padding = neighbours outside it read zero), window-major order
        pixel_scale = grid.new_tensor([(wp - 1) / 2, (hp - 1) / 2])
        pixel_shift = grid.new_tensor([(wp - 1) / 2 - left, (hp - 1) / 2 - top])
        loc = torch.addcmul(pixel_shift, grid, pixel_scale).reshape(b, heads, nh, ws, nw, ws, 2)
        loc = loc.permute(0, 2, 4, 3, 5, 1, 6).reshape(1, -1, 2).expand(2, -1, 2).reshape(-1, 2)

        qkv = self.qkv(x)  # (B, N, 3 * heads * hd): rows of hd values, 3 * heads rows per token
        rows_per_token = 3 * heads
        kind = torch.arange(1, 3, device=x.device).view(2, 1, 1, 1) * heads  # k rows start at heads, v at 2 heads
        base = kind + torch.arange(b, device=x.device).view(1, b, 1, 1) * (n * rows_per_token)
        base = (base + torch.arange(heads, device=x.device)).expand(2, b, nh * nw * ws * ws, heads).reshape(-1)
        kv = bilinear_gather(qkv.reshape(-1, hd), loc, base, (h, w), (w * rows_per_token, rows_per_token))
        k, v = kv.view(2, b * nh * nw, ws * ws, heads, hd).transpose(2, 3)  # (B*nW, heads, ws*ws, hd) each

        q = pad_channels_last(qkv[..., :c].reshape(b, h, w, c), padding)
        q = q.reshape(b, nh, ws, nw, ws, heads, hd).permute(0, 1, 3, 5, 2, 4, 6).reshape(-1, heads, ws * ws, hd)
        rel_h, rel_w = decomposed_rel_pos_flat(q, self.rel_pos_h, self.rel_pos_w, (ws, ws))  # (..., 49, 7)
        buffers = (rel_h, rel_w, self._table_bias().to(q.dtype))
        out = score_mod_attention(q, k.to(q.dtype), v.to(q.dtype), window_rel_pos_score, buffers, self.scale)

        out = out.transpose(1, 2).reshape(-1, ws * ws, c)
        out = window_unpartition(out, ws, (hp, wp))[:, top : top + h, left : left + w]
        return self.proj(out.reshape(b, n, c))

    def _forward_reference(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """Literal official arithmetic: NCHW maps, two grid_samples, explicit softmax."""
        b, n, c = x.shape
        h, w = hw
        ws, heads, hd = self.ws, self.num_heads, self.head_dim
        left, right, top, bottom = symmetric_window_padding(h, w, ws)
        hp, wp = h + top + bottom, w + left + right
        nh, nw = hp // ws, wp // ws

        x_map = x.transpose(1, 2).reshape(b, c, h, w)
        x_pad = F.pad(x_map, (left, right, top, bottom))
        offsets = self.sampling_offsets(x_pad).reshape(b * heads, 2, nh, nw)
        offsets = torch.stack([offsets[:, 0] / max(h // ws, 1), offsets[:, 1] / max(w // ws, 1)], 1)
        scales = self.sampling_scales(x_pad).reshape(b * heads, 2, nh, nw)
        angles = self.sampling_angles(x_pad).reshape(b * heads, 1, nh, nw)
        grid = rvsa_sampling_grid(offsets, scales, angles, (hp, wp), ws)

        qkv = self.qkv(x).transpose(1, 2).reshape(b, 3, heads, hd, h, w).transpose(0, 1)
        qkv = F.pad(qkv.reshape(3 * b * heads, hd, h, w), (left, right, top, bottom))
        q, k, v = qkv.reshape(3, b * heads, hd, hp, wp)
        k = F.grid_sample(k, grid, padding_mode="zeros", align_corners=True)
        v = F.grid_sample(v, grid, padding_mode="zeros", align_corners=True)

        def windows(t: Tensor) -> Tensor:  # (B*heads, hd, Hp, Wp) -> (B*nW, heads, ws*ws, hd)
            t = t.reshape(b, heads, hd, nh, ws, nw, ws).permute(0, 3, 5, 1, 4, 6, 2)
            return t.reshape(b * nh * nw, heads, ws * ws, hd)

        q, k, v = windows(q), windows(k), windows(v)
        dots = (q @ k.transpose(-2, -1)) * self.scale
        rel_h, rel_w = decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, (ws, ws))
        dots = dots + rel_pos_bias(rel_h, rel_w) + self._table_bias()
        out = dots.softmax(dim=-1) @ v  # (B*nW, heads, ws*ws, hd)
        out = out.reshape(b, nh, nw, heads, ws, ws, hd).permute(0, 3, 6, 1, 4, 2, 5).reshape(b, c, hp, wp)
        out = out[:, :, top : top + h, left : left + w]
        return self.proj(out.permute(0, 2, 3, 1).reshape(b, n, c))
