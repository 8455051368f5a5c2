"""Decomposed relative-position terms (MViTv2 style) and position-table resizing.

The official RVSA backbone adds, for a query at grid position (qh, qw) and a key at (kh, kw),

    <q, R_h[qh - kh + K_h - 1]> + <q, R_w[qw - kw + K_w - 1]>

to the attention logits, with tables ``R_h`` of shape (2*K_h - 1, C) and ``R_w`` of shape
(2*K_w - 1, C). These helpers gather the tables, compute the two terms, and fold them into the
query/key vectors so that fused attention kernels (no materialised bias) can be used.

Resizing follows the official checkpoint-loading rule: bicubic interpolation with
``align_corners=False`` (1-D along the table length for relative tables, 2-D over the token grid
for absolute position embeddings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rel_pos_index(q_size: int, k_size: int, device: torch.device | None = None) -> Tensor:
    """Index table (q_size, k_size) into a relative table of length q_size + k_size - 1.

    Only equal query/key extents are used by RVSA (window 7 -> table 13; global S -> 2S-1), in
    which case ``index[i, j] = i - j + k_size - 1``.
    """
    if q_size != k_size:
        raise ValueError(f"rel_pos_index: query extent {q_size} != key extent {k_size}")
    q = torch.arange(q_size, device=device)[:, None]
    k = torch.arange(k_size, device=device)[None, :]
    return q - k + (k_size - 1)


def decomposed_rel_pos(
    q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, grid_hw: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Height and width relative-position terms for queries on a (H, W) grid.

    Args:
        q: (..., H*W, C) query vectors (whatever scaling the caller wants applied to the terms).
        rel_pos_h: (2H-1, C) table; rel_pos_w: (2W-1, C) table.
        grid_hw: (H, W) of the query (= key) grid.

    Returns:
        rel_h (..., H, W, H) with rel_h[..., qh, qw, kh] = <q[qh, qw], R_h[qh - kh + H - 1]> and
        rel_w (..., H, W, W) likewise along the width.
    """
    h, w = grid_hw
    r_h = rel_pos_h[rel_pos_index(h, h, q.device)]  # (H, H, C)
    r_w = rel_pos_w[rel_pos_index(w, w, q.device)]  # (W, W, C)
    q_grid = q.reshape(*q.shape[:-2], h, w, q.shape[-1])
    rel_h = torch.einsum("...hwc,hkc->...hwk", q_grid, r_h.to(q.dtype))
    rel_w = torch.einsum("...hwc,wkc->...hwk", q_grid, r_w.to(q.dtype))
    return rel_h, rel_w


def decomposed_rel_pos_flat(
    q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, grid_hw: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Same terms as :func:`decomposed_rel_pos`, flattened over the query grid, computed lean.

    One matmul of q (..., H*W, C) with both tables, then a gather of the needed diagonals: autograd
    keeps q itself (shared with the attention) instead of permuted copies.

    Returns:
        rel_h (..., H*W, H) and rel_w (..., H*W, W).
    """
    h, w = grid_hw
    scores = q @ torch.cat([rel_pos_h, rel_pos_w]).to(q.dtype).transpose(0, 1)  # (..., N, 2H-1 + 2W-1)
    rows = torch.arange(h, device=q.device).repeat_interleave(w)  # qh of every query
    cols = torch.arange(w, device=q.device).repeat(h)  # qw of every query
    idx_h = rows[:, None] - torch.arange(h, device=q.device)[None, :] + (h - 1)  # (N, H)
    idx_w = cols[:, None] - torch.arange(w, device=q.device)[None, :] + (w - 1) + (2 * h - 1)  # (N, W)
    lead = scores.shape[:-2]
    rel_h = torch.gather(scores, -1, idx_h.expand(*lead, h * w, h))
    rel_w = torch.gather(scores, -1, idx_w.expand(*lead, h * w, w))
    return rel_h, rel_w


def rel_pos_bias(rel_h: Tensor, rel_w: Tensor) -> Tensor:
    """Expand the two decomposed terms to a full additive bias (..., H*W, H*W)."""
    *lead, h, w, _ = rel_h.shape
    bias = rel_h[..., :, None] + rel_w[..., None, :]  # (..., H, W, Hk, Wk)
    return bias.reshape(*lead, h * w, h * w)


def key_position_one_hot(grid_hw: tuple[int, int], device, dtype) -> Tensor:
    """(H*W, H+W) one-hot rows [onehot(kh) | onehot(kw)] for keys on a (H, W) grid.

    Appending these to the keys and ``[rel_h | rel_w]`` to the queries makes the plain dot
    product equal ``q.k + rel_h[kh] + rel_w[kw]`` (the bias folding trick that keeps fused
    attention kernels usable).
    """
    h, w = grid_hw
    eye_h = torch.eye(h, device=device, dtype=dtype)
    eye_w = torch.eye(w, device=device, dtype=dtype)
    rows_h = eye_h[:, None, :].expand(h, w, h)
    rows_w = eye_w[None, :, :].expand(h, w, w)
    return torch.cat([rows_h, rows_w], dim=-1).reshape(h * w, h + w)


def resize_rel_pos_table(table: Tensor, length: int) -> Tensor:
    """Resize a (L, C) relative table to (length, C): the official bicubic rule.

    The official loaders interpolate a (1, 1, L, C) view to (length, C) with bicubic,
    align_corners=False, which is a 1-D bicubic resampling along L (C is unchanged).
    """
    if table.shape[0] == length:
        return table
    resized = F.interpolate(
        table.reshape(1, 1, *table.shape).float(),
        size=(length, table.shape[1]),
        mode="bicubic",
        align_corners=False,
    )
    return resized.reshape(length, table.shape[1]).to(table.dtype)


def resize_pos_embed(pos_embed: Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Tensor:
    """Resize an absolute position embedding (1, Hs*Ws, C) to (1, Hd*Wd, C).

    Bicubic, align_corners=False over the token grid, as the official loaders do.
    """
    if tuple(src_hw) == tuple(dst_hw):
        return pos_embed
    c = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, src_hw[0], src_hw[1], c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(dst_hw), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, dst_hw[0] * dst_hw[1], c).to(pos_embed.dtype)
