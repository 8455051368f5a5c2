"""score_mod_attention: the dense evaluation against an explicit bias, and FlexAttention's own CPU code
(forward through the public API; forward and backward through its autograd, which the public API
refuses on CPU) against the dense evaluation, for both score mods of the ViT+RVSA backbone."""

from __future__ import annotations

import warnings

import pytest
import torch

from mtp.ops.flex import (
    decomposed_rel_pos_score,
    flex_attention_available,
    score_mod_attention,
    window_rel_pos_score,
)


def explicit(q, k, v, bias, scale):
    return ((q @ k.transpose(-2, -1)) * scale + bias).softmax(-1) @ v


def window_case(dtype=torch.float64, b=3, heads=2, ws=3, hd=8):
    n = ws * ws
    q, k, v = (torch.randn(b, heads, n, hd, dtype=dtype, requires_grad=True) for _ in range(3))
    rel_h = torch.randn(b, heads, n, ws, dtype=dtype, requires_grad=True)
    rel_w = torch.randn(b, heads, n, ws, dtype=dtype, requires_grad=True)
    table = torch.randn(heads, n, n, dtype=dtype, requires_grad=True)
    bias = (rel_h[..., :, None] + rel_w[..., None, :]).flatten(-2) + table
    return (q, k, v), (rel_h, rel_w, table), bias, window_rel_pos_score


def global_case(dtype=torch.float64, b=2, heads=3, hw=(3, 5), hd=8):
    h, w = hw
    n = h * w
    q, k, v = (torch.randn(b, heads, n, hd, dtype=dtype, requires_grad=True) for _ in range(3))
    rel_h = torch.randn(b, heads, n, h, dtype=dtype, requires_grad=True)
    rel_w = torch.randn(b, heads, n, w, dtype=dtype, requires_grad=True)
    bias = (rel_h[..., :, None] + rel_w[..., None, :]).flatten(-2)  # key j = kh * W + kw
    return (q, k, v), (rel_h, rel_w), bias, decomposed_rel_pos_score


CASES = {"window": window_case, "global": global_case}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dense_evaluation_equals_explicit_bias_with_gradients(case):
    qkv, buffers, bias, score_mod = CASES[case]()
    ref = explicit(*qkv, bias, 0.3)
    out = score_mod_attention(*qkv, score_mod, buffers, 0.3, dense=True)
    torch.testing.assert_close(out, ref)
    weights = torch.randn_like(ref)
    inputs = [*qkv, *buffers]
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * weights).sum(), inputs)
    for ours, theirs in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(ours, theirs)


def test_off_cuda_the_dense_evaluation_is_chosen():
    qkv, buffers, bias, score_mod = window_case(torch.float32)
    out = score_mod_attention(*qkv, score_mod, buffers, 0.5)  # CPU: no fused kernel with a backward
    torch.testing.assert_close(out, explicit(*qkv, bias, 0.5), rtol=1e-5, atol=1e-6)


def test_bfloat16_inputs_keep_their_dtype_and_float32_scores():
    qkv, buffers, bias, score_mod = global_case(torch.float32)
    low = [t.detach().bfloat16() for t in qkv]
    out = score_mod_attention(*low, score_mod, [t.detach().bfloat16() for t in buffers], 0.5, dense=True)
    assert out.dtype == torch.bfloat16
    ref = explicit(*[t.detach() for t in qkv], bias.detach(), 0.5)
    assert ((out.float() - ref).abs().max() / ref.abs().max()) < 3e-2


@pytest.mark.parametrize("case", sorted(CASES))
def test_flex_attention_public_forward_on_cpu_equals_dense(case):
    """The score mods run unchanged inside FlexAttention (its CPU forward, no gradients)."""
    from torch.nn.attention.flex_attention import flex_attention

    qkv, buffers, _, score_mod = CASES[case](torch.float32)
    q, k, v = (t.detach() for t in qkv)
    buffers = [t.detach() for t in buffers]

    def bound(score, b, h, q_idx, kv_idx):
        return score_mod(score, b, h, q_idx, kv_idx, *buffers)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile()"
        out = flex_attention(q, k, v, score_mod=bound, scale=0.4)
    torch.testing.assert_close(out, score_mod_attention(q, k, v, score_mod, buffers, 0.4, dense=True))


@pytest.mark.parametrize("case", sorted(CASES))
def test_flex_attention_autograd_equals_dense_including_buffer_gradients(case):
    """FlexAttention's autograd (the higher-order op, called with the buffers as explicit operands since the
    public API refuses a CPU backward) gives the dense gradients, those of the bias buffers included."""
    from torch._higher_order_ops.flex_attention import flex_attention as flex_attention_op
    from torch.nn.attention.flex_attention import _apply_kernel_options, _create_empty_block_mask

    qkv, buffers, _, score_mod = CASES[case](torch.float32)
    block_mask = _create_empty_block_mask(qkv[0], qkv[1]).as_tuple()
    options = _apply_kernel_options(*qkv, False, None, None)
    out = flex_attention_op(*qkv, score_mod, block_mask, 0.4, options, tuple(buffers), ())[0]
    ref = score_mod_attention(*qkv, score_mod, buffers, 0.4, dense=True)
    torch.testing.assert_close(out, ref)
    weights = torch.randn_like(ref)
    inputs = [*qkv, *buffers]
    for ours, theirs in zip(
        torch.autograd.grad((out * weights).sum(), inputs),
        torch.autograd.grad((ref * weights).sum(), inputs),
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_availability_reports_triton():
    import importlib.util

    assert flex_attention_available() == (importlib.util.find_spec("triton") is not None)


def test_dense_evaluation_keeps_what_the_kernel_keeps_for_backward():
    """Like the fused kernel, autograd keeps q, k, v and the buffers, never the (L, S) scores or probabilities."""
    qkv, buffers, _, score_mod = global_case(torch.float32, hw=(6, 8))
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = score_mod_attention(*qkv, score_mod, buffers, 0.5, dense=True)
    assert shapes and all(s[-2:] != (48, 48) for s in shapes), shapes
    out.sum().backward()
    assert all(t.grad is not None for t in [*qkv, *buffers])
