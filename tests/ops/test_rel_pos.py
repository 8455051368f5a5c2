"""Oracle tests for mtp.ops.rel_pos against brute-force loops and the official resize rule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mtp.ops.rel_pos import (
    decomposed_rel_pos,
    decomposed_rel_pos_flat,
    key_position_one_hot,
    rel_pos_bias,
    rel_pos_index,
    resize_pos_embed,
    resize_rel_pos_table,
)

F64 = torch.float64


# ---------------------------------------------------------------- rel_pos_index


@settings(max_examples=25, deadline=None)
@given(size=st.integers(min_value=1, max_value=20))
def test_rel_pos_index_matches_formula(size: int) -> None:
    """index[i, j] == i - j + k - 1, in range [0, 2k-2]."""
    idx = rel_pos_index(size, size)
    assert idx.shape == (size, size)
    for i in range(size):
        for j in range(size):
            assert idx[i, j].item() == i - j + size - 1
    assert idx.min().item() == 0
    assert idx.max().item() == 2 * size - 2


def test_rel_pos_index_rejects_unequal_extents() -> None:
    """Unequal query/key extents raise ValueError."""
    with pytest.raises(ValueError):
        rel_pos_index(3, 4)


# ------------------------------------------------------------ decomposed_rel_pos


def _loop_decomposed(q: torch.Tensor, table_h: torch.Tensor, table_w: torch.Tensor, h: int, w: int):
    """Brute-force rel_h (B, heads, H, W, H) and rel_w (B, heads, H, W, W)."""
    b, nh, _, c = q.shape
    rel_h = torch.zeros(b, nh, h, w, h, dtype=F64)
    rel_w = torch.zeros(b, nh, h, w, w, dtype=F64)
    for bi in range(b):
        for hi in range(nh):
            for qh in range(h):
                for qw in range(w):
                    t = qh * w + qw
                    for kh in range(h):
                        rel_h[bi, hi, qh, qw, kh] = sum(
                            q[bi, hi, t, ci].item() * table_h[qh - kh + h - 1, ci].item() for ci in range(c)
                        )
                    for kw in range(w):
                        rel_w[bi, hi, qh, qw, kw] = sum(
                            q[bi, hi, t, ci].item() * table_w[qw - kw + w - 1, ci].item() for ci in range(c)
                        )
    return rel_h, rel_w


@pytest.mark.parametrize("hw", [(3, 4), (4, 3), (3, 3), (1, 5)])
def test_decomposed_rel_pos_matches_loops(hw: tuple[int, int]) -> None:
    """Both terms equal explicit dot products with the gathered table rows (non-square grids too)."""
    h, w = hw
    b, nh, c = 2, 2, 5
    q = torch.randn(b, nh, h * w, c, dtype=F64)
    table_h = torch.randn(2 * h - 1, c, dtype=F64)
    table_w = torch.randn(2 * w - 1, c, dtype=F64)
    rel_h, rel_w = decomposed_rel_pos(q, table_h, table_w, (h, w))
    exp_h, exp_w = _loop_decomposed(q, table_h, table_w, h, w)
    assert rel_h.shape == (b, nh, h, w, h)
    assert rel_w.shape == (b, nh, h, w, w)
    torch.testing.assert_close(rel_h, exp_h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rel_w, exp_w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hw", [(3, 4), (4, 3), (7, 7), (1, 5)])
def test_decomposed_rel_pos_flat_matches_loops(hw: tuple[int, int]) -> None:
    """The lean (matmul + gather) form gives the same terms, flattened over the query grid."""
    h, w = hw
    q = torch.randn(2, 2, h * w, 5, dtype=F64)
    table_h = torch.randn(2 * h - 1, 5, dtype=F64)
    table_w = torch.randn(2 * w - 1, 5, dtype=F64)
    rel_h, rel_w = decomposed_rel_pos_flat(q, table_h, table_w, (h, w))
    exp_h, exp_w = _loop_decomposed(q, table_h, table_w, h, w)
    torch.testing.assert_close(rel_h, exp_h.reshape(2, 2, h * w, h), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rel_w, exp_w.reshape(2, 2, h * w, w), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ rel_pos_bias


@pytest.mark.parametrize("hw", [(3, 4), (2, 5)])
def test_rel_pos_bias_matches_loops(hw: tuple[int, int]) -> None:
    """bias[i, j] == rel_h[qh(i), qw(i), kh(j)] + rel_w[qh(i), qw(i), kw(j)]."""
    h, w = hw
    rel_h = torch.randn(2, 3, h, w, h, dtype=F64)
    rel_w = torch.randn(2, 3, h, w, w, dtype=F64)
    bias = rel_pos_bias(rel_h, rel_w)
    assert bias.shape == (2, 3, h * w, h * w)
    expected = torch.zeros(2, 3, h * w, h * w, dtype=F64)
    for i in range(h * w):
        qh, qw = divmod(i, w)
        for j in range(h * w):
            kh, kw = divmod(j, w)
            expected[..., i, j] = rel_h[..., qh, qw, kh] + rel_w[..., qh, qw, kw]
    torch.testing.assert_close(bias, expected, rtol=0, atol=0)


# ----------------------------------------------------------- key_position_one_hot


def test_key_position_one_hot_rows() -> None:
    """Row t = row*W + col is [onehot(row) | onehot(col)]."""
    h, w = 3, 4
    oh = key_position_one_hot((h, w), device="cpu", dtype=F64)
    assert oh.shape == (h * w, h + w)
    for t in range(h * w):
        kh, kw = divmod(t, w)
        expected = torch.zeros(h + w, dtype=F64)
        expected[kh] = 1
        expected[h + kw] = 1
        torch.testing.assert_close(oh[t], expected, rtol=0, atol=0)


@pytest.mark.parametrize("hw", [(3, 4), (5, 2), (4, 4)])
def test_key_position_one_hot_folding_trick(hw: tuple[int, int]) -> None:
    """[q | rel_h | rel_w] @ [k | onehot]^T == q @ k^T + full bias."""
    h, w = hw
    b, nh, c = 2, 2, 6
    q = torch.randn(b, nh, h * w, c, dtype=F64)
    k = torch.randn(b, nh, h * w, c, dtype=F64)
    rel_h = torch.randn(b, nh, h, w, h, dtype=F64)
    rel_w = torch.randn(b, nh, h, w, w, dtype=F64)
    oh = key_position_one_hot((h, w), device="cpu", dtype=F64)
    q_ext = torch.cat([q, rel_h.reshape(b, nh, h * w, h), rel_w.reshape(b, nh, h * w, w)], dim=-1)
    k_ext = torch.cat([k, oh.expand(b, nh, h * w, h + w)], dim=-1)
    folded = q_ext @ k_ext.transpose(-1, -2)
    expected = q @ k.transpose(-1, -2) + rel_pos_bias(rel_h, rel_w)
    torch.testing.assert_close(folded, expected, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------- resize_rel_pos_table


def _official_table_resize(table: torch.Tensor, n: int) -> torch.Tensor:
    length, c = table.shape
    out = F.interpolate(table.reshape(1, 1, length, c), size=(n, c), mode="bicubic", align_corners=False)
    return out.reshape(n, c)


@pytest.mark.parametrize(("length", "n"), [(13, 27), (27, 13), (13, 55), (55, 27), (7, 8)])
def test_resize_rel_pos_table_matches_official_rule(length: int, n: int) -> None:
    """Equals bicubic interpolate of the (1, 1, L, C) view to (n, C)."""
    table = torch.randn(length, 6)
    out = resize_rel_pos_table(table, n)
    assert out.shape == (n, 6)
    assert out.dtype == table.dtype
    torch.testing.assert_close(out, _official_table_resize(table, n))


def test_resize_rel_pos_table_float64_close_to_official() -> None:
    """Float64 input keeps its dtype and matches the rule (computed in float32 internally)."""
    table = torch.randn(13, 4, dtype=F64)
    out = resize_rel_pos_table(table, 27)
    assert out.dtype == F64
    torch.testing.assert_close(out, _official_table_resize(table, 27), rtol=1e-5, atol=1e-5)


def test_resize_rel_pos_table_identity() -> None:
    """Same length returns the table unchanged."""
    table = torch.randn(13, 5)
    torch.testing.assert_close(resize_rel_pos_table(table, 13), table, rtol=0, atol=0)


def _keys_cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """Keys cubic-convolution weights for taps at offsets -1, 0, 1, 2 (PyTorch uses a = -0.75)."""

    def near(x: float) -> float:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _loop_bicubic_1d(table: torch.Tensor, n: int) -> torch.Tensor:
    """1-D bicubic resampling along dim 0 with align_corners=False and clamped border taps, as loops."""
    length, c = table.shape
    out = torch.empty(n, c, dtype=F64)
    for i in range(n):
        src = (i + 0.5) * length / n - 0.5
        base = math.floor(src)
        weights = _keys_cubic_weights(src - base)
        for ch in range(c):
            out[i, ch] = sum(
                wk * table[min(max(base + k, 0), length - 1), ch].item()
                for wk, k in zip(weights, (-1, 0, 1, 2), strict=True)
            )
    return out


@pytest.mark.parametrize(("length", "n"), [(13, 27), (27, 13), (7, 8)])
def test_resize_rel_pos_table_matches_keys_cubic_loops(length: int, n: int) -> None:
    """Independent loop oracle: Keys cubic (a = -0.75) along L, align_corners=False, clamped borders."""
    table = torch.randn(length, 3, dtype=F64)
    torch.testing.assert_close(resize_rel_pos_table(table, n), _loop_bicubic_1d(table, n), rtol=1e-5, atol=1e-5)


def test_resize_rel_pos_table_reproduces_constants() -> None:
    """The bicubic weights sum to one: a constant table stays constant, borders included."""
    table = torch.tensor([0.5, -2.0, 3.0]).expand(13, 3).contiguous()
    out = resize_rel_pos_table(table, 27)
    torch.testing.assert_close(out, table[:1].expand(27, 3), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("length", "n"), [(13, 27), (13, 55), (27, 13)])
def test_resize_rel_pos_table_linear_interior_approximately_linear(length: int, n: int) -> None:
    """A table linear in l stays (approximately) linear in the interior: out[i] ~= a*src(i) + b.

    PyTorch's bicubic uses the Keys kernel with a = -0.75, which reproduces constants but not linear
    functions exactly (only a = -0.5 does): the interior deviation is at most ~0.0481 * |slope|.
    """
    a = torch.tensor([0.3, -1.2, 2.0])
    b0 = torch.tensor([1.0, 0.5, -0.7])
    table = torch.arange(length, dtype=torch.float32)[:, None] * a + b0
    out = resize_rel_pos_table(table, n)
    checked = 0
    for i in range(n):
        src = (i + 0.5) * length / n - 0.5  # align_corners=False source coordinate
        base = math.floor(src)
        if base - 1 < 0 or base + 2 > length - 1:
            continue  # the 4-tap stencil touches a clamped border sample
        dev = (out[i] - (a * src + b0)).abs()
        assert torch.all(dev <= 0.0482 * a.abs() + 1e-5), (i, dev)
        if src == base:  # integer source position: exact sample
            torch.testing.assert_close(out[i], a * src + b0, rtol=1e-6, atol=1e-6)
        checked += 1
    assert checked >= n // 2
    # Global linear trend: a least-squares line through the interior has slope a * L / n.
    idx = torch.arange(n // 4, 3 * n // 4, dtype=torch.float32)
    interior = out[n // 4 : 3 * n // 4]
    slope = ((idx - idx.mean())[:, None] * (interior - interior.mean(0))).sum(0) / ((idx - idx.mean()) ** 2).sum()
    torch.testing.assert_close(slope, a * length / n, rtol=2e-2, atol=1e-3)


# -------------------------------------------------------------- resize_pos_embed


def _official_pos_resize(pos: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    c = pos.shape[-1]
    grid = pos.reshape(1, src[0], src[1], c).permute(0, 3, 1, 2)
    out = F.interpolate(grid, size=dst, mode="bicubic", align_corners=False)
    # Row-major flatten: token index = row * Wd + col.
    flat = torch.empty(1, dst[0] * dst[1], c, dtype=out.dtype)
    for r in range(dst[0]):
        for col in range(dst[1]):
            flat[0, r * dst[1] + col] = out[0, :, r, col]
    return flat


@pytest.mark.parametrize(("src", "dst"), [((14, 14), (16, 16)), ((14, 14), (12, 20)), ((4, 6), (7, 5))])
def test_resize_pos_embed_matches_official_rule(src: tuple[int, int], dst: tuple[int, int]) -> None:
    """Bicubic over the (C, Hs, Ws) grid, flattened row-major, non-square destinations too."""
    c = 5
    pos = torch.randn(1, src[0] * src[1], c)
    out = resize_pos_embed(pos, src, dst)
    assert out.shape == (1, dst[0] * dst[1], c)
    torch.testing.assert_close(out, _official_pos_resize(pos, src, dst))


def test_resize_pos_embed_identity() -> None:
    """Matching sizes return the embedding unchanged."""
    pos = torch.randn(1, 3 * 5, 4)
    torch.testing.assert_close(resize_pos_embed(pos, (3, 5), (3, 5)), pos, rtol=0, atol=0)


def test_resize_pos_embed_token_layout() -> None:
    """A constant-per-row embedding stays constant along destination rows (row-major layout)."""
    hs, ws, hd, wd = 4, 6, 8, 3
    rows = torch.arange(hs, dtype=torch.float32)
    pos = rows[:, None, None].expand(hs, ws, 2).reshape(1, hs * ws, 2)
    out = resize_pos_embed(pos, (hs, ws), (hd, wd)).reshape(hd, wd, 2)
    torch.testing.assert_close(out, out[:, :1].expand_as(out))
    assert not torch.allclose(out[0], out[-1])
