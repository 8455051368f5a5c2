"""ViT+RVSA numerics on CUDA: the fused kernels (FlexAttention, bilinear gather, regional compile) against the
reference path. Marked ``gpu``; skipped without CUDA. Run by ``benchmarks/gpu_suite.sh`` on a lent GPU:

    python -m pytest -p no:cacheprovider -m gpu tests/models/backbones/test_vit_rvsa_cuda.py

Head dim 64 (as ViT-B/L) so that the FlexAttention templates see the production shapes; TF32 is off for the
float32 comparisons.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtp.models import create_backbone
from mtp.ops.bilinear import bilinear_gather
from mtp.ops.flex import decomposed_rel_pos_score, flex_attention_available, score_mod_attention, window_rel_pos_score
from tests.models.backbones.test_vit_rvsa import (
    assert_bf16_errors_like_reference,
    assert_matches_golden,
    golden_model,
    randomise_position_terms,
    relative_error,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
SMALL = dict(embed_dim=128, depth=4, num_heads=2, interval=2, out_indices=(0, 1, 2, 3), drop_path_rate=0.0)


@pytest.fixture(autouse=True)
def _no_tf32():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def outputs_and_gradients(model, x, impl, dtype=torch.float32):
    model.zero_grad()
    model.set_attn_impl(impl)
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        feats = model(x)
    weights = [torch.linspace(0, 1, f.numel(), device=x.device).reshape(f.shape) for f in feats]
    sum((f.float() * w).sum() for f, w in zip(feats, weights, strict=True)).backward()
    return [f.detach().float() for f in feats], {n: p.grad.clone() for n, p in model.named_parameters()}


def test_flex_kernels_are_available():
    assert flex_attention_available(), "FlexAttention or Triton missing: the flex path would run densely"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["window", "global"])
def test_flex_kernel_equals_dense_evaluation_with_buffer_gradients(kind, dtype):
    b, heads, hd = 6, 3, 64
    h, w = (7, 7) if kind == "window" else (12, 20)
    n = h * w
    make = lambda *shape: torch.randn(*shape, device="cuda", dtype=dtype, requires_grad=True)  # noqa: E731
    q, k, v = make(b, heads, n, hd), make(b, heads, n, hd), make(b, heads, n, hd)
    buffers = [make(b, heads, n, h), make(b, heads, n, w)]
    score_mod = decomposed_rel_pos_score
    if kind == "window":
        buffers.append(make(heads, n, n))
        score_mod = window_rel_pos_score
    inputs = [q, k, v, *buffers]
    out = score_mod_attention(q, k, v, score_mod, buffers, 0.125, dense=False)
    ref = score_mod_attention(
        *[t.float() for t in (q, k, v)], score_mod, [t.float() for t in buffers], 0.125, dense=True
    )
    tol = 2e-3 if dtype == torch.float32 else 2e-2  # float32: in case the kernel's dots run in TF32
    assert relative_error(out.float(), ref) < tol
    weights = torch.randn_like(ref)
    grads = torch.autograd.grad((out.float() * weights).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * weights).sum(), inputs)
    for name, ours, theirs in zip(["q", "k", "v", "rel_h", "rel_w", "table"], grads, ref_grads, strict=False):
        assert relative_error(ours.float(), theirs) < 5 * tol, name


def test_bilinear_gather_equals_grid_sample_on_cuda():
    maps = torch.randn(3, 64, 20, 27, device="cuda", dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(3, 9, 11, 2, device="cuda", dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
    ref = F.grid_sample(maps, grid, align_corners=True)
    b, c, h, w = maps.shape
    loc = torch.stack([(grid[..., 0] + 1) / 2 * (w - 1), (grid[..., 1] + 1) / 2 * (h - 1)], -1).reshape(-1, 2)
    base = (torch.arange(b, device="cuda") * h * w).repeat_interleave(99)
    out = bilinear_gather(maps.permute(0, 2, 3, 1).reshape(-1, c), loc, base, (h, w), (w, 1))
    out = out.reshape(b, 9, 11, c).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, ref)
    weights = torch.randn_like(ref)
    for ours, theirs in zip(
        torch.autograd.grad((out * weights).sum(), [maps, grid]),
        torch.autograd.grad((ref * weights).sum(), [maps, grid]),
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("impl", ["sdpa", "flex"])
def test_golden_outputs_on_cuda(golden, impl):
    entry = golden["seg_288"]
    model = golden_model(entry).cuda()
    model.set_attn_impl(impl)
    with torch.no_grad():
        outputs = model(entry["input"].cuda())
    assert_matches_golden(tuple(o.cpu() for o in outputs), entry["outputs"])


@pytest.mark.parametrize("impl", ["sdpa", "flex"])
def test_fast_paths_match_reference_in_float32_across_sizes(impl):
    """Forward and every gradient; the second size changes every kernel shape (recompiles, padded windows)."""
    torch.manual_seed(0)
    model = create_backbone("vit_b_rvsa", img_size=64, **SMALL).cuda()
    randomise_position_terms(model)
    for size in [(96, 160), (128, 128)]:
        x = torch.randn(2, 3, *size, device="cuda")
        ref_out, ref_grad = outputs_and_gradients(model, x, "reference")
        out, grad = outputs_and_gradients(model, x, impl)
        for a, b in zip(out, ref_out, strict=True):
            assert relative_error(a, b) < 2e-3
        for name in ref_grad:
            assert relative_error(grad[name], ref_grad[name]) < 1e-2, name


@pytest.mark.parametrize("impl", ["sdpa", "flex"])
def test_fast_paths_stay_within_bf16_tolerance_of_the_reference_path(impl):
    """bf16 autocast: the fast path errs against the float32 result no more than the reference path in bf16."""
    torch.manual_seed(0)
    model = create_backbone("vit_b_rvsa", img_size=64, **SMALL).cuda()
    randomise_position_terms(model)
    x = torch.randn(2, 3, 96, 160, device="cuda")
    truth = outputs_and_gradients(model, x, "reference")
    ref_low = outputs_and_gradients(model, x, "reference", torch.bfloat16)
    assert_bf16_errors_like_reference(outputs_and_gradients(model, x, impl, torch.bfloat16), ref_low, truth)


def test_regional_compilation_with_inductor_matches_eager_and_reuses_code_across_batch_sizes():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    eager = create_backbone("vit_b_rvsa", img_size=64, **SMALL).cuda()
    compiled = create_backbone("vit_b_rvsa", img_size=64, **SMALL).cuda()
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_blocks()
    for batch in (2, 3):
        x = torch.randn(batch, 3, 96, 96, device="cuda")
        out, grad = outputs_and_gradients(compiled, x, "auto", torch.bfloat16)
        ref_out, ref_grad = outputs_and_gradients(eager, x, "auto", torch.bfloat16)
        for a, b in zip(out, ref_out, strict=True):
            assert relative_error(a, b) < 2e-2
        for name in ref_grad:
            assert relative_error(grad[name], ref_grad[name]) < 5e-2, name
    assert counters["stats"]["unique_graphs"] == 2  # window + global block, shared by both batch sizes
    torch._dynamo.reset()
