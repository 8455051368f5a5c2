"""bilinear_gather against F.grid_sample (the oracle): values, gradients, layouts, dtypes, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtp.ops.bilinear import bilinear_gather


def grid_to_pixels(grid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """grid_sample (align_corners=True) coordinates -> pixel (x, y)."""
    return torch.stack([(grid[..., 0] + 1) / 2 * (w - 1), (grid[..., 1] + 1) / 2 * (h - 1)], -1)


def sample_channels_last(maps: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """maps (B, C, H, W), grid (B, Ho, Wo, 2) -> (B, C, Ho, Wo) through bilinear_gather on a channels-last table."""
    b, c, h, w = maps.shape
    points = grid.shape[1] * grid.shape[2]
    table = maps.permute(0, 2, 3, 1).reshape(-1, c)
    base = (torch.arange(b) * h * w).repeat_interleave(points)
    out = bilinear_gather(table, grid_to_pixels(grid, h, w).reshape(-1, 2), base, (h, w), (w, 1))
    return out.reshape(b, *grid.shape[1:3], c).permute(0, 3, 1, 2)


@pytest.mark.parametrize("size", [(6, 9), (1, 5), (7, 7)])
def test_values_and_gradients_equal_grid_sample(size):
    """Locations inside, on the border and far outside the map; float64 so that equality is tight."""
    h, w = size
    maps = torch.randn(2, 5, h, w, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(2, 4, 7, 2, dtype=torch.float64) * 3.2 - 1.6).requires_grad_()
    with torch.no_grad():
        grid[0, 0, :4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    weights = torch.randn(2, 5, 4, 7, dtype=torch.float64)
    ref = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    ref_grads = torch.autograd.grad((ref * weights).sum(), [maps, grid])
    out = sample_channels_last(maps, grid)
    grads = torch.autograd.grad((out * weights).sum(), [maps, grid])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def test_gradcheck():
    table = torch.randn(3 * 4 * 5, 3, dtype=torch.float64, requires_grad=True)
    # keep locations away from integer coordinates, where the bilinear gradient jumps
    loc = (torch.randint(-1, 5, (10, 2)) + 0.1 + 0.8 * torch.rand(10, 2)).double().requires_grad_()
    base = torch.randint(0, 3, (10,)) * 20
    torch.autograd.gradcheck(lambda t, p: bilinear_gather(t, p, base, (4, 5), (5, 1)), (table, loc))


def test_strided_rows_sample_heads_of_a_projection_output():
    """RVSA layout: the keys of head g are rows base + y * W * 3G + x * 3G of a (B*H*W*3*G, hd) table."""
    b, h, w, heads, hd = 2, 5, 6, 3, 4
    qkv = torch.randn(b, h * w, 3, heads, hd)
    keys = qkv[:, :, 1].permute(0, 2, 3, 1).reshape(b * heads, hd, h, w)  # NCHW per (batch, head)
    grid = torch.rand(b * heads, 3, 4, 2) * 2.4 - 1.2
    ref = F.grid_sample(keys, grid, align_corners=True)  # (B*heads, hd, 3, 4)
    loc = grid_to_pixels(grid, h, w).reshape(-1, 2)
    rows_per_token = 3 * heads
    base = (torch.arange(b)[:, None] * h * w * rows_per_token + heads + torch.arange(heads)).reshape(-1)
    base = base.repeat_interleave(12)
    out = bilinear_gather(qkv.reshape(-1, hd), loc, base, (h, w), (w * rows_per_token, rows_per_token))
    torch.testing.assert_close(out.reshape(b * heads, 3, 4, hd).permute(0, 3, 1, 2), ref)


def test_bfloat16_table_keeps_float32_locations_and_output_dtype():
    maps = torch.randn(1, 8, 9, 11)
    grid = torch.rand(1, 5, 5, 2) * 2 - 1
    ref = F.grid_sample(maps, grid, align_corners=True)
    out = sample_channels_last(maps.bfloat16(), grid)
    assert out.dtype == torch.bfloat16
    assert ((out.float() - ref).abs().max() / ref.abs().max()) < 2e-2


def test_gradients_under_autocast_are_float32_accurate():
    """The backward accumulates in the locations' dtype, whatever autocast is doing around it."""
    maps = torch.randn(1, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(1, 3, 3, 2, dtype=torch.float64) * 2 - 1).requires_grad_()
    ref = torch.autograd.grad(F.grid_sample(maps, grid, align_corners=True).sum(), [maps, grid])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sample_channels_last(maps, grid)
    assert out.dtype == torch.float64
    for ours, theirs in zip(torch.autograd.grad(out.sum(), [maps, grid]), ref, strict=True):
        torch.testing.assert_close(ours, theirs)


def test_nan_locations_do_not_index_out_of_bounds():
    table = torch.randn(20, 3)
    loc = torch.tensor([[float("nan"), 1.0], [1.5, float("inf")], [-1e30, 2.0]])
    out = bilinear_gather(table, loc, torch.zeros(3, dtype=torch.long), (4, 5), (5, 1))
    assert out.shape == (3, 3)
    assert (out[1:] == 0).all()


@pytest.mark.parametrize(
    "table,loc,base,match",
    [
        (torch.randn(4), torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), "expects"),
        (torch.randn(4, 2), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), "expects"),
        (torch.randn(4, 2), torch.zeros(2, 2), torch.zeros(3, dtype=torch.long), "expects"),
        (torch.randn(4, 2), torch.zeros(2, 2, dtype=torch.bfloat16), torch.zeros(2, dtype=torch.long), "float32"),
    ],
)
def test_bad_arguments_are_clear_errors(table, loc, base, match):
    with pytest.raises(ValueError, match=match):
        bilinear_gather(table, loc, base, (2, 2), (2, 1))
