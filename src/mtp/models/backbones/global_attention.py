"""Global (full) multi-head self-attention of the ViT+RVSA backbone.

Official behaviour (``Multi-Task_Pretrain/backbone/vit_win_rvsa_v3_wsz7.py``; docs/CONVENTIONS.md#vitrvsa): q is
multiplied by head_dim**-0.5 first, then logits = q.k + decomposed relative-position terms computed with that
*scaled* q, using tables ``full_attn_rel_pos_h`` / ``full_attn_rel_pos_w`` of shape (2S-1, head_dim),
S = img_size / 16.
The detection copy (``RVSA_MTP_branches``) has no tables: plain attention.

Beyond the official code, any token grid works: the tables are resized (official bicubic rule)
to (2H-1) and (2W-1) for the actual (H, W) grid; resized tables are cached while gradients are
off (inference), and recomputed (differentiably) while training.

Paths (``attn_impl``; ``"auto"`` is resolved per device by
:func:`mtp.models.backbones.rvsa_attention.resolve_attn_impl`): ``"flex"`` adds the decomposed terms inside
the FlexAttention kernel (:func:`mtp.ops.flex.decomposed_rel_pos_score`; head dim stays 64, off CUDA the
same score function runs densely); ``"sdpa"`` folds the decomposed terms into the dot product (queries get
[rel_h | rel_w] appended, keys the one-hot of their row and column, values zero-padded to the
same width), so no (N, N) bias is ever materialised and fused (flash) kernels stay usable;
``"reference"`` is the official explicit softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtp.models.backbones.rvsa_attention import resolve_attn_impl
from mtp.ops.flex import decomposed_rel_pos_score, score_mod_attention
from mtp.ops.rel_pos import (
    decomposed_rel_pos,
    decomposed_rel_pos_flat,
    key_position_one_hot,
    rel_pos_bias,
    resize_rel_pos_table,
)


class GlobalAttention(nn.Module):
    """Full attention over a (B, H*W, C) token map.

    Args:
        dim: channels C; num_heads: heads; qkv_bias: bias of the qkv projection.
        rel_pos_size: S for the tables (2S-1, head_dim), or ``None`` for no relative positions
            (the detection copy).
        attn_impl: ``"auto"``, ``"sdpa"``, ``"flex"`` or ``"reference"``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        rel_pos_size: int | None = None,
        attn_impl: str = "auto",
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_impl = attn_impl
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.has_rel_pos = rel_pos_size is not None
        if rel_pos_size is not None:
            self.full_attn_rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, self.head_dim))
            self.full_attn_rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, self.head_dim))
        self.proj = nn.Linear(dim, dim)
        self._table_cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def rel_pos_tables(self, hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Tables resized to the (H, W) grid: (2H-1, hd) and (2W-1, hd)."""
        th, tw = self.full_attn_rel_pos_h, self.full_attn_rel_pos_w
        if th.shape[0] == 2 * hw[0] - 1 and tw.shape[0] == 2 * hw[1] - 1:
            return th, tw
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return resize_rel_pos_table(th, 2 * hw[0] - 1), resize_rel_pos_table(tw, 2 * hw[1] - 1)
        key = (hw, th.device, th.dtype, th._version, tw._version, th.data_ptr(), tw.data_ptr())
        if key not in self._table_cache:
            self._table_cache.clear()
            self._table_cache[key] = (
                resize_rel_pos_table(th, 2 * hw[0] - 1),
                resize_rel_pos_table(tw, 2 * hw[1] - 1),
            )
        return self._table_cache[key]

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """x: (B, H*W, C) tokens of a (H, W) grid -> (B, H*W, C)."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, N, hd)
        impl = resolve_attn_impl(self.attn_impl, x.device)
        if impl == "reference":
            out = self._attend_reference(q, k, v, hw)
        elif not self.has_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v)
        elif impl == "flex":
            q = q * self.scale
            rel_h, rel_w = decomposed_rel_pos_flat(q, *self.rel_pos_tables(hw), hw)  # (B, heads, N, H|W)
            out = score_mod_attention(q, k, v, decomposed_rel_pos_score, (rel_h, rel_w), scale=1.0)
        else:
            q = q * self.scale
            rel_h, rel_w = decomposed_rel_pos_flat(q, *self.rel_pos_tables(hw), hw)  # (B, heads, N, H|W)
            extra = hw[0] + hw[1]
            pad = (-(self.head_dim + extra)) % 8  # keep the folded head dim a multiple of 8
            q_fold = torch.cat([q, rel_h, rel_w], -1)
            k_keys = key_position_one_hot(hw, x.device, k.dtype).expand(b, self.num_heads, n, extra)
            k_fold = torch.cat([k, k_keys], -1)
            # Fused kernels want one head dim for q, k and v: zero-pad v, slice the output.
            width = self.head_dim + extra + pad
            q_fold, k_fold = F.pad(q_fold, (0, pad)), F.pad(k_fold, (0, pad))
            v_fold = F.pad(v, (0, width - self.head_dim))
            out = F.scaled_dot_product_attention(q_fold, k_fold, v_fold, scale=1.0)[..., : self.head_dim]
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def _attend_reference(self, q: Tensor, k: Tensor, v: Tensor, hw: tuple[int, int]) -> Tensor:
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
        if self.has_rel_pos:
            rel_h, rel_w = decomposed_rel_pos(q, *self.rel_pos_tables(hw), hw)
            attn = attn + rel_pos_bias(rel_h, rel_w)
        return attn.softmax(dim=-1) @ v
