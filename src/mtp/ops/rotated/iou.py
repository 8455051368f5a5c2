"""Exact rotated-box IoU / IoF, batched and chunked (docs/CONVENTIONS.md#rotated-iou-nms-and-roialign).

Hand-written: no maintained library offers batched rotated IoU in PyTorch (torchvision 0.29 has
rotated box formats but no rotated IoU; mmcv/detectron2 ship compiled kernels that are not used here).
The algorithm follows the semantics of mmcv's ``box_iou_rotated`` but is written as dense tensor algebra:

1. re-centre each pair on the mean of the two centres (precision at large coordinates);
2. corners of both boxes (boxes.rbox2corners, theta clockwise on screen, radians);
3. candidates: the 16 edge-edge intersections (pairs with |det| <= 1e-14 are parallel and skipped,
   both edge parameters inclusive in [0, 1]) and the 8 corners lying inside the other box (inclusive);
   unlike mmcv, the inclusive bounds are widened by a relative 1e-9 (float64) / 1e-5 (float32) so that
   corners shared by coincident edges survive rounding;
4. every valid candidate lies on the boundary of the convex intersection, so sorting them by angle
   around their mean and applying the shoelace formula gives its area (invalid candidates sort last and
   are replaced by the first sorted point, so they add zero area);
5. boxes with w * h < 1e-14 have IoU 0 with everything (not NaN); iou = I / (A1 + A2 - I), iof = I / A1.

Works on CPU and CUDA in float32 or float64 (integer and half-precision input is computed in float32).
Pair matrices are computed in chunks of at most ``chunk_size`` pairs; there is no Python loop over boxes. Pairs whose
circumscribed circles are disjoint have IoU 0 exactly; ``skip_disjoint`` computes only the other pairs
(a gather/scatter with one host sync per chunk: a large saving on CPU, off by default on CUDA).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["intersection_areas", "rbox_overlaps_for_assigner", "rotated_iou"]

from mtp.ops.rotated.boxes import rbox_corner_xy

# Exact pairs per chunk (about 2 KB of float32 temporaries per pair): small enough to stay in cache on
# CPU (measured fastest around 2^12, single thread), larger on accelerators to amortise launches (~1 GB).
CPU_CHUNK_SIZE = 1 << 12
DEVICE_CHUNK_SIZE = 1 << 19
_MASK_BLOCK = 1 << 20  # pair-mask entries per block of the circle prefilter (a few bytes each)
_EPS_AREA = 1e-14
_EPS_DET = 1e-14
# Relative widening of the inclusive [0, 1] parameter tests. Shared corners of (nearly) coincident edges
# are otherwise lost to rounding (e.g. theta vs theta + pi gives IoU 0.53 instead of 1 with exact
# comparisons); including a point at most tol * edge length outside changes the area by O(tol).
_TOL_F64 = 1e-9
_TOL_F32 = 1e-5


def _tolerance(dtype: torch.dtype) -> float:
    return _TOL_F64 if dtype == torch.float64 else _TOL_F32


def _inside(px: Tensor, py: Tensor, cx: Tensor, cy: Tensor) -> Tensor:
    """Points (..., 4) inside-or-on the rectangle with corners (..., 4) -> (..., 4) bool.

    Projects A->P on the two edges A->B and A->D leaving corner A (inclusive bounds widened by the
    relative rounding tolerance), as mmcv does.
    """
    tol = _tolerance(px.dtype)
    ax, ay = cx[..., :1], cy[..., :1]
    abx, aby = cx[..., 1:2] - ax, cy[..., 1:2] - ay
    adx, ady = cx[..., 3:4] - ax, cy[..., 3:4] - ay
    apx, apy = px - ax, py - ay
    pab, pad = apx * abx + apy * aby, apx * adx + apy * ady
    lab, lad = abx * abx + aby * aby, adx * adx + ady * ady
    return (pab >= -tol * lab) & (pab <= (1 + tol) * lab) & (pad >= -tol * lad) & (pad <= (1 + tol) * lad)


def intersection_areas(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Exact intersection areas of broadcastable rbox tensors (..., 5) and (..., 5) -> (...), pixels^2.

    Degenerate boxes are not special-cased here (their intersection is ~0); see :func:`rotated_iou`.
    Coordinates are kept as separate contiguous x / y tensors (faster than (..., 2) slices on CPU).
    """
    shape = torch.broadcast_shapes(boxes1.shape, boxes2.shape)
    boxes1, boxes2 = boxes1.expand(shape), boxes2.expand(shape)
    centre = (boxes1[..., :2] + boxes2[..., :2]) / 2
    x1, y1 = rbox_corner_xy(torch.cat((boxes1[..., :2] - centre, boxes1[..., 2:]), -1))  # (..., 4)
    x2, y2 = rbox_corner_xy(torch.cat((boxes2[..., :2] - centre, boxes2[..., 2:]), -1))
    ex1, ey1 = torch.roll(x1, -1, -1) - x1, torch.roll(y1, -1, -1) - y1  # edge k: corner k -> k + 1
    ex2, ey2 = torch.roll(x2, -1, -1) - x2, torch.roll(y2, -1, -1) - y2

    # 16 edge-edge candidates (edge i of box 1, edge j of box 2): p + t r == q + u s
    px, py, rx, ry = x1.unsqueeze(-1), y1.unsqueeze(-1), ex1.unsqueeze(-1), ey1.unsqueeze(-1)  # (..., 4, 1)
    dx, dy = x2.unsqueeze(-2) - px, y2.unsqueeze(-2) - py  # (..., 4, 4)
    sx, sy = ex2.unsqueeze(-2), ey2.unsqueeze(-2)
    det = rx * sy - ry * sx
    nonpar = det.abs() > _EPS_DET
    det = torch.where(nonpar, det, torch.ones_like(det))
    t = (dx * sy - dy * sx) / det
    u = (dx * ry - dy * rx) / det
    tol = _tolerance(t.dtype)
    ok_ee = nonpar & (t >= -tol) & (t <= 1 + tol) & (u >= -tol) & (u <= 1 + tol)

    xs = torch.cat(((px + t * rx).flatten(-2), x1, x2), dim=-1)  # (..., 24)
    ys = torch.cat(((py + t * ry).flatten(-2), y1, y2), dim=-1)
    valid = torch.cat((ok_ee.flatten(-2), _inside(x1, y1, x2, y2), _inside(x2, y2, x1, y1)), dim=-1)

    # all valid candidates lie on the convex intersection's boundary: sort by angle around their mean
    n = valid.sum(-1, keepdim=True)
    vf = valid.to(xs.dtype)
    denom = n.clamp_min(1).to(xs.dtype)
    xs = xs - (xs * vf).sum(-1, keepdim=True) / denom
    ys = ys - (ys * vf).sum(-1, keepdim=True) / denom
    key = torch.where(valid, torch.atan2(ys, xs), torch.full_like(xs, 8.0))  # invalid sort last
    key, order = torch.sort(key, dim=-1)
    xs, ys = xs.gather(-1, order), ys.gather(-1, order)
    ok = key < 8.0
    xs = torch.where(ok, xs, xs[..., :1])  # invalid -> first sorted point: zero-area closing edges
    ys = torch.where(ok, ys, ys[..., :1])
    area = 0.5 * (xs * torch.roll(ys, -1, -1) - ys * torch.roll(xs, -1, -1)).sum(-1)
    return torch.where(n.squeeze(-1) > 2, area.abs(), torch.zeros_like(area))


def _iou_from_parts(inter: Tensor, area1: Tensor, area2: Tensor, mode: str) -> Tensor:
    ok = (area1 >= _EPS_AREA) & (area2 >= _EPS_AREA)
    inter = torch.minimum(inter, torch.minimum(area1, area2))  # rounding never lifts IoU above 1
    denom = area1 if mode == "iof" else area1 + area2 - inter
    denom = torch.where(ok & (denom > 0), denom, torch.ones_like(denom))
    return torch.where(ok, inter / denom, torch.zeros_like(inter))


def _may_overlap(b1: Tensor, b2: Tensor) -> Tensor:
    """Broadcastable rboxes -> bool: circumscribed circles intersect and both areas are non-degenerate."""
    r1 = 0.5 * torch.hypot(b1[..., 2], b1[..., 3])
    r2 = 0.5 * torch.hypot(b2[..., 2], b2[..., 3])
    d2 = (b1[..., 0] - b2[..., 0]) ** 2 + (b1[..., 1] - b2[..., 1]) ** 2
    ok1 = b1[..., 2] * b1[..., 3] >= _EPS_AREA
    ok2 = b2[..., 2] * b2[..., 3] >= _EPS_AREA
    return (d2 <= (r1 + r2) ** 2 * (1 + 1e-6)) & ok1 & ok2


def _pairs_iou(b1: Tensor, b2: Tensor, mode: str, chunk_size: int) -> Tensor:
    """Aligned (P, 5) pairs -> (P,), chunked."""
    out = b1.new_empty(b1.shape[0])
    for start in range(0, b1.shape[0], chunk_size):
        x, y = b1[start : start + chunk_size], b2[start : start + chunk_size]
        inter = intersection_areas(x, y)
        out[start : start + chunk_size] = _iou_from_parts(inter, x[:, 2] * x[:, 3], y[:, 2] * y[:, 3], mode)
    return out


def rotated_iou(
    boxes1: Tensor,
    boxes2: Tensor,
    *,
    mode: str = "iou",
    aligned: bool = False,
    chunk_size: int | None = None,
    skip_disjoint: bool | None = None,
) -> Tensor:
    """Rotated IoU (or IoF) between rboxes (cx, cy, w, h, theta): pixels, radians, clockwise on screen.

    Args:
        boxes1: (N, 5) rboxes.
        boxes2: (M, 5) rboxes ((N, 5) when ``aligned``).
        mode: 'iou' = I / (A1 + A2 - I) or 'iof' = I / A1 (intersection over the area of boxes1).
        aligned: compare boxes1[i] with boxes2[i] only.
        chunk_size: maximum number of pairs evaluated at once (bounds the temporary memory, roughly
            2 KB per pair in float32); None = 2^12 on CPU, 2^19 on other devices.
        skip_disjoint: evaluate only pairs whose circumscribed circles intersect (exactly the same
            values; faster for sparse overlaps). None = True on CPU, False on other devices (no host sync).

    Returns:
        (N, M) (or (N,) when aligned) tensor in the computation dtype (float64 if either input is
        float64, else float32). Boxes with w * h < 1e-14 give 0.
    """
    if mode not in ("iou", "iof"):
        raise ValueError(f"mode must be 'iou' or 'iof', got {mode!r}")
    if boxes1.shape[-1] != 5 or boxes2.shape[-1] != 5 or boxes1.dim() != 2 or boxes2.dim() != 2:
        raise ValueError(f"expected (N, 5) and (M, 5) rboxes, got {tuple(boxes1.shape)}, {tuple(boxes2.shape)}")
    dtype = torch.promote_types(boxes1.dtype, boxes2.dtype)
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    b1, b2 = boxes1.to(dtype), boxes2.to(dtype)
    if chunk_size is None:
        chunk_size = CPU_CHUNK_SIZE if b1.device.type == "cpu" else DEVICE_CHUNK_SIZE
    chunk_size = max(int(chunk_size), 1)
    if skip_disjoint is None:
        skip_disjoint = b1.device.type == "cpu"
    n, m = b1.shape[0], b2.shape[0]

    if aligned:
        if n != m:
            raise ValueError(f"aligned mode needs equal numbers of boxes, got {n} and {m}")
        if not skip_disjoint:
            return _pairs_iou(b1, b2, mode, chunk_size)
        out = b1.new_zeros(n)
        idx = _may_overlap(b1, b2).nonzero().squeeze(1)
        out[idx] = _pairs_iou(b1[idx], b2[idx], mode, chunk_size)
        return out

    out = b1.new_zeros((n, m))
    if n == 0 or m == 0:
        return out
    block = max(chunk_size, _MASK_BLOCK) if skip_disjoint else chunk_size
    cols = min(m, block)
    rows = max(1, block // cols)
    for r0 in range(0, n, rows):
        x = b1[r0 : r0 + rows]
        for c0 in range(0, m, cols):
            y = b2[c0 : c0 + cols]
            if skip_disjoint:
                ii, jj = _may_overlap(x.unsqueeze(1), y.unsqueeze(0)).nonzero(as_tuple=True)
                vals = _pairs_iou(x[ii], y[jj], mode, chunk_size)
                out[r0 + ii, c0 + jj] = vals
            else:
                xe, ye = x.unsqueeze(1), y.unsqueeze(0)
                inter = intersection_areas(xe, ye)
                area1, area2 = xe[..., 2] * xe[..., 3], ye[..., 2] * ye[..., 3]
                out[r0 : r0 + rows, c0 : c0 + cols] = _iou_from_parts(inter, area1, area2, mode)
    return out


def rbox_overlaps_for_assigner(
    boxes1: Tensor, boxes2: Tensor, *, mode: str = "iou", aligned: bool = False, **kwargs
) -> Tensor:
    """mmrotate's ``rbbox_overlaps`` wrapper used by the assigner: clamp w, h to >= 1e-3 and the centres to
    [-1e7, 1e7] before :func:`rotated_iou` (evaluation and NMS call rotated_iou without this clamp)."""

    def clamp(b: Tensor) -> Tensor:
        b = b.clone() if b.is_floating_point() else b.float()
        b[..., :2] = b[..., :2].clamp(-1e7, 1e7)
        b[..., 2:4] = b[..., 2:4].clamp_min(1e-3)
        return b

    return rotated_iou(clamp(boxes1), clamp(boxes2), mode=mode, aligned=aligned, **kwargs)
