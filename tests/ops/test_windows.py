"""Oracle tests for mtp.ops.windows against hand-worked values and the official RVSA grid definition."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mtp.ops.windows import (
    pad_channels_last,
    rvsa_sampling_grid,
    symmetric_window_padding,
    window_partition,
    window_unpartition,
)

F64 = torch.float64

# ------------------------------------------------------------------ padding

OFFICIAL_PADDED = {28: 28, 32: 35, 14: 14, 16: 21, 50: 56, 64: 70, 26: 28, 24: 28}


@pytest.mark.parametrize(("size", "padded"), sorted(OFFICIAL_PADDED.items()))
def test_symmetric_window_padding_official_sizes(size: int, padded: int) -> None:
    """Padded extents match the official table for window 7 (height and width)."""
    left, right, top, bottom = symmetric_window_padding(size, size, 7)
    assert size + top + bottom == padded
    assert size + left + right == padded
    pad = padded - size
    assert (top, bottom) == (pad // 2, pad - pad // 2)
    assert (left, right) == (pad // 2, pad - pad // 2)


def test_symmetric_window_padding_split_and_order() -> None:
    """Returns (left, right, top, bottom); the smaller half goes first (16 -> top 2, bottom 3)."""
    assert symmetric_window_padding(16, 28, 7) == (0, 0, 2, 3)
    assert symmetric_window_padding(28, 16, 7) == (2, 3, 0, 0)
    assert symmetric_window_padding(50, 24, 7) == (2, 2, 3, 3)


def test_pad_channels_last_places_zeros() -> None:
    """(left, right, top, bottom) zero padding of a (B, H, W, C) map."""
    x = torch.randn(1, 2, 3, 4)
    out = pad_channels_last(x, (1, 2, 3, 0))
    assert out.shape == (1, 5, 6, 4)
    torch.testing.assert_close(out[:, 3:5, 1:4], x, rtol=0, atol=0)
    mask = torch.ones(1, 5, 6, 4, dtype=torch.bool)
    mask[:, 3:5, 1:4] = False
    assert torch.all(out[mask] == 0)
    assert pad_channels_last(x, (0, 0, 0, 0)) is x


# ------------------------------------------------------- partition / unpartition


def test_window_partition_layout_by_hand() -> None:
    """Window index row-major over (batch, window_row, window_col); tokens row-major inside."""
    b, hp, wp, c, ws = 2, 6, 9, 3, 3
    x = torch.arange(b * hp * wp * c, dtype=F64).reshape(b, hp, wp, c)
    win = window_partition(x, ws)
    assert win.shape == (b * 2 * 3, ws * ws, c)
    # batch 1, window row 1, window col 2 -> window 1*6 + 1*3 + 2 = 11; in-window (r=0, c=1) -> token 1.
    torch.testing.assert_close(win[11, 1], x[1, 3, 7], rtol=0, atol=0)
    for bi in range(b):
        for i in range(2):
            for j in range(3):
                for r in range(ws):
                    for cc in range(ws):
                        w_idx = bi * 6 + i * 3 + j
                        assert torch.equal(win[w_idx, r * ws + cc], x[bi, i * ws + r, j * ws + cc])


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3),
    nh=st.integers(1, 4),
    nw=st.integers(1, 4),
    ws=st.integers(1, 5),
    c=st.integers(1, 4),
)
def test_window_round_trip(b: int, nh: int, nw: int, ws: int, c: int) -> None:
    """unpartition(partition(x)) == x for random sizes."""
    hp, wp = nh * ws, nw * ws
    x = torch.randn(b, hp, wp, c)
    win = window_partition(x, ws)
    assert win.shape == (b * nh * nw, ws * ws, c)
    torch.testing.assert_close(window_unpartition(win, ws, (hp, wp)), x, rtol=0, atol=0)
    # The other direction too.
    torch.testing.assert_close(window_partition(window_unpartition(win, ws, (hp, wp)), ws), win, rtol=0, atol=0)


# ------------------------------------------------------------ rvsa_sampling_grid


def _loop_grid(offsets, scales, angles, hp: int, wp: int, ws: int) -> torch.Tensor:
    """Official RVSA sampling-grid definition written as explicit loops."""
    n, _, nh, nw = offsets.shape
    lin_y = torch.linspace(-1, 1, hp, dtype=F64)
    lin_x = torch.linspace(-1, 1, wp, dtype=F64)
    bx = torch.arange(ws, dtype=F64) * 2 / (wp - 1)
    bx = bx - bx.mean()
    by = torch.arange(ws, dtype=F64) * 2 / (hp - 1)
    by = by - by.mean()
    grid = torch.empty(n, hp, wp, 2, dtype=F64)
    for ni in range(n):
        for i in range(nh):
            ref_y = lin_y[i * ws : (i + 1) * ws].mean().item()
            for j in range(nw):
                ref_x = lin_x[j * ws : (j + 1) * ws].mean().item()
                t = angles[ni, 0, i, j].item()
                sx, sy = scales[ni, 0, i, j].item(), scales[ni, 1, i, j].item()
                ox, oy = offsets[ni, 0, i, j].item(), offsets[ni, 1, i, j].item()
                for r in range(ws):
                    for c in range(ws):
                        x = bx[c].item() * (sx + 1)
                        y = by[r].item() * (sy + 1)
                        gx = ref_x + x * math.cos(t) - y * math.sin(t) + ox
                        gy = ref_y + x * math.sin(t) + y * math.cos(t) + oy
                        grid[ni, i * ws + r, j * ws + c, 0] = gx
                        grid[ni, i * ws + r, j * ws + c, 1] = gy
    return grid


@pytest.mark.parametrize(("n", "nh", "nw", "ws"), [(2, 2, 3, 7), (3, 2, 3, 3), (1, 3, 2, 4), (2, 1, 1, 5)])
def test_rvsa_sampling_grid_matches_loops(n: int, nh: int, nw: int, ws: int) -> None:
    """Random offsets/scales/angles on non-square padded maps match the loop oracle."""
    hp, wp = nh * ws, nw * ws
    offsets = torch.randn(n, 2, nh, nw, dtype=F64) * 0.3
    scales = torch.randn(n, 2, nh, nw, dtype=F64) * 0.5
    angles = torch.randn(n, 1, nh, nw, dtype=F64)
    grid = rvsa_sampling_grid(offsets, scales, angles, (hp, wp), ws)
    assert grid.shape == (n, hp, wp, 2)
    assert grid.dtype == F64
    torch.testing.assert_close(grid, _loop_grid(offsets, scales, angles, hp, wp, ws), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("nh", "nw", "ws"), [(2, 3, 7), (2, 3, 3), (3, 2, 4)])
def test_rvsa_sampling_grid_zero_params_is_pixel_grid(nh: int, nw: int, ws: int) -> None:
    """No offset/scale/angle -> grid[n, y, x] == (lin_x[x], lin_y[y]) and grid_sample is the identity."""
    n, hp, wp = 2, nh * ws, nw * ws
    zeros2 = torch.zeros(n, 2, nh, nw, dtype=F64)
    zeros1 = torch.zeros(n, 1, nh, nw, dtype=F64)
    grid = rvsa_sampling_grid(zeros2, zeros2, zeros1, (hp, wp), ws)
    lin_y = torch.linspace(-1, 1, hp, dtype=F64)
    lin_x = torch.linspace(-1, 1, wp, dtype=F64)
    expected = torch.stack(torch.meshgrid(lin_x, lin_y, indexing="xy"), dim=-1).expand(n, hp, wp, 2)
    assert expected[0, 1, 2, 0] == lin_x[2] and expected[0, 1, 2, 1] == lin_y[1]
    torch.testing.assert_close(grid, expected, rtol=0, atol=1e-12)
    img = torch.randn(n, 3, hp, wp, dtype=F64)
    sampled = F.grid_sample(img, grid, mode="bilinear", align_corners=True)
    torch.testing.assert_close(sampled, img, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("angle", "k"), [(math.pi / 2, 1), (-math.pi / 2, -1), (math.pi, 2)])
def test_rvsa_sampling_grid_rotation_direction(angle: float, k: int) -> None:
    """Angle t rotates every window about its centre.

    Output pixel (r, c) at offset (dx, dy) = (c - m, r - m) samples (dx cos t - dy sin t, dx sin t + dy cos t).
    For t = pi/2 that is (col, row) = (m - dr, m + dc), i.e. out[r, c] = in[c, ws-1-r] = rot90(in, k=1)[r, c].
    """
    n, nh, nw, ws = 1, 2, 2, 7
    hp = wp = nh * ws
    offsets = torch.zeros(n, 2, nh, nw, dtype=F64)
    scales = torch.zeros(n, 2, nh, nw, dtype=F64)
    angles = torch.full((n, 1, nh, nw), angle, dtype=F64)
    grid = rvsa_sampling_grid(offsets, scales, angles, (hp, wp), ws)
    img = torch.randn(n, 2, hp, wp, dtype=F64)
    sampled = F.grid_sample(img, grid, mode="bilinear", align_corners=True)
    for i in range(nh):
        for j in range(nw):
            src = img[..., i * ws : (i + 1) * ws, j * ws : (j + 1) * ws]
            out = sampled[..., i * ws : (i + 1) * ws, j * ws : (j + 1) * ws]
            torch.testing.assert_close(out, torch.rot90(src, k=k, dims=(-2, -1)), rtol=0, atol=1e-9)
    if k == 1:  # One element by hand: out[0, 0] == in[0, ws - 1] (top-right corner moves to top-left).
        torch.testing.assert_close(sampled[0, :, 0, 0], img[0, :, 0, ws - 1], rtol=0, atol=1e-9)
