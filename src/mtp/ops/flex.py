"""Attention with a position bias computed inside the kernel (FlexAttention ``score_mod``), and its dense twin.

:func:`score_mod_attention` computes ``softmax(scale * q.k + bias(b, h, i, j)) v`` where the bias is given
as a ``score_mod`` function of the score and its indices (batch ``b``, head ``h``, query ``i``, key ``j``)
plus the tensors it reads (``buffers``). The bias is never materialised on the FlexAttention path:

* CUDA, with FlexAttention and Triton available: ``torch.nn.attention.flex_attention.flex_attention``,
  compiled (one fused Triton kernel per direction; the gradients of the buffers come out of the same
  backward kernel). Under an enclosing ``torch.compile`` the call is traced in place.
* Everywhere else (CPU, or shapes FlexAttention refuses): the same ``score_mod`` evaluated densely on
  broadcast index tensors, float32 scores and softmax, under activation checkpointing, so that autograd
  keeps what the fused kernel keeps (q, k, v and the buffers, not the (L, S) scores) and the backward
  recomputes the scores, as the kernel does. FlexAttention on CPU has no backward in torch 2.14
  ("FlexAttention does not support backward on CPU"), and its eager CPU forward materialises the
  scores anyway.

The score mods of the ViT+RVSA backbone (docs/CONVENTIONS.md#vitrvsa): :func:`decomposed_rel_pos_score`
(global blocks: ``<q, R_h[qh - kh]> + <q, R_w[qw - kw]>``, the two terms precomputed per query by
:func:`mtp.ops.rel_pos.decomposed_rel_pos_flat`) and :func:`window_rel_pos_score` (RVSA windows: the same
plus the Swin-style per-head table bias).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = [
    "decomposed_rel_pos_score",
    "flex_attention_available",
    "score_mod_attention",
    "window_rel_pos_score",
]

ScoreMod = Callable[..., Tensor]


def decomposed_rel_pos_score(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor, rel_h, rel_w):
    """``score + rel_h[b, h, i, kh] + rel_w[b, h, i, kw]`` for key ``kv_idx = kh * W + kw``.

    ``rel_h``: (B, heads, L, H), ``rel_w``: (B, heads, L, W) decomposed terms of every query.
    """
    width = rel_w.shape[-1]
    return score + rel_h[b, h, q_idx, kv_idx // width] + rel_w[b, h, q_idx, kv_idx % width]


def window_rel_pos_score(score, b, h, q_idx, kv_idx, rel_h, rel_w, table_bias):
    """:func:`decomposed_rel_pos_score` plus ``table_bias[h, i, j]`` ((heads, L, S), shared by the batch)."""
    return decomposed_rel_pos_score(score, b, h, q_idx, kv_idx, rel_h, rel_w) + table_bias[h, q_idx, kv_idx]


@functools.cache
def flex_attention_available() -> bool:
    """True where the fused FlexAttention kernels can run: PyTorch with FlexAttention and Triton."""
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return importlib.util.find_spec("triton") is not None


@functools.cache
def _compiled_flex_attention() -> Callable:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


def _use_flex_kernel(q: Tensor) -> bool:
    # 16 <= head dim, power of two: the shapes the Triton templates take without padding tricks.
    hd = q.shape[-1]
    return q.is_cuda and hd >= 16 and hd & (hd - 1) == 0 and flex_attention_available()


def score_mod_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    score_mod: ScoreMod,
    buffers: Sequence[Tensor],
    scale: float,
    *,
    dense: bool | None = None,
) -> Tensor:
    """``softmax(scale * q k^T + score_mod) v`` without a materialised bias where the device allows.

    Args:
        q: (B, heads, L, E); k: (B, heads, S, E); v: (B, heads, S, Ev), one dtype; the last dimension
            contiguous (permuted views are fine).
        score_mod: ``score_mod(score, b, h, q_idx, kv_idx, *buffers) -> score``, built from indexing
            and element-wise ops only (it runs inside the Triton kernel on CUDA and on broadcast
            index tensors elsewhere).
        buffers: the tensors ``score_mod`` reads; gradients flow into those that require them.
        scale: multiplies q.k before ``score_mod``.
        dense: force the dense evaluation (True) or the FlexAttention kernel (False); None chooses
            the kernel on CUDA when FlexAttention and Triton are available.

    Returns:
        (B, heads, L, Ev) in the dtype of ``q``.
    """
    use_kernel = _use_flex_kernel(q) if dense is None else not dense
    if not use_kernel:
        tensors = (q, k, v, *buffers)
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return checkpoint(_dense_from_tensors, score_mod, scale, *tensors, use_reentrant=False)
        return _dense_score_mod_attention(q, k, v, score_mod, buffers, scale)
    from torch.nn.attention.flex_attention import flex_attention

    def bound(score, b, h, q_idx, kv_idx):
        return score_mod(score, b, h, q_idx, kv_idx, *buffers)

    attend = flex_attention if torch.compiler.is_compiling() else _compiled_flex_attention()
    return attend(q, k, v, score_mod=bound, scale=scale)


def _dense_from_tensors(score_mod: ScoreMod, scale: float, q: Tensor, k: Tensor, v: Tensor, *buffers: Tensor):
    return _dense_score_mod_attention(q, k, v, score_mod, buffers, scale)


def _dense_score_mod_attention(
    q: Tensor, k: Tensor, v: Tensor, score_mod: ScoreMod, buffers: Sequence[Tensor], scale: float
) -> Tensor:
    """Reference semantics of :func:`score_mod_attention`: float32 scores, bias from broadcast indices."""
    b, heads, length, _ = q.shape
    keys = k.shape[-2]
    device = q.device
    scores = torch.matmul(q, k.transpose(-2, -1)).float() * scale
    scores = score_mod(
        scores,
        torch.arange(b, device=device).view(b, 1, 1, 1),
        torch.arange(heads, device=device).view(1, heads, 1, 1),
        torch.arange(length, device=device).view(1, 1, length, 1),
        torch.arange(keys, device=device).view(1, 1, 1, keys),
        *buffers,
    )
    return torch.matmul(scores.softmax(-1).to(v.dtype), v).to(q.dtype)
