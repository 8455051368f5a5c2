"""Box coders of Oriented R-CNN (mmrotate 1.x semantics, docs/RECIPES.md#oriented-r-cnn-model).

* :class:`MidpointOffsetCoder` (RPN, 6 deltas): horizontal anchor -> oriented proposal through the
  midpoint offsets (da, db) of the top and right vertices on the circumscribed box; decoding forms
  a parallelogram, rectifies it into a rectangle and regularises to le90.
* :class:`DeltaXYWHTCoder` (R-CNN, 5 deltas): proposal rbox -> rbox with centre deltas in the
  proposal frame (``proj_xy``), log sizes and an angle delta with edge swap (|dt| <= pi/4).

Rotated boxes: (cx, cy, w, h, theta), pixels, radians, y down (docs/CONVENTIONS.md#rotated-boxes). Hand-written: no kept
library provides these coders.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtp.ops.rotated.boxes import norm_angle, rbox2corners, rbox2hbox, regularize_rboxes

MAX_LOG_RATIO = abs(math.log(16 / 1000))  # 4.1352: clamp of dw, dh at decode


class MidpointOffsetCoder:
    """(x1, y1, x2, y2) anchors <-> le90 rboxes via 6 deltas (dx, dy, dw, dh, da, db).

    Normalisation: means 0, stds (1, 1, 1, 1, 0.5, 0.5). Proposals are not clipped to the image.
    """

    def __init__(self, stds: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 0.5, 0.5), tolerance: float = 0.1) -> None:
        self.stds = stds
        self.tolerance = tolerance  # pixels, for picking the top / right vertices

    def encode(self, anchors: Tensor, gt: Tensor) -> Tensor:
        """anchors (N, 4) xyxy, gt (N, 5) rboxes -> (N, 6) normalised deltas."""
        gt = regularize_rboxes(gt.float(), "le90")
        anchors = anchors.float()
        px, py = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
        pw, ph = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        hbox = rbox2hbox(gt)
        gx, gy = (hbox[:, 0] + hbox[:, 2]) / 2, (hbox[:, 1] + hbox[:, 3]) / 2
        gw, gh = hbox[:, 2] - hbox[:, 0], hbox[:, 3] - hbox[:, 1]
        corners = rbox2corners(gt)  # (N, 4, 2)
        xs, ys = corners[..., 0], corners[..., 1]
        near_top = (ys - ys.min(dim=1, keepdim=True).values).abs() <= self.tolerance
        near_right = (xs - xs.max(dim=1, keepdim=True).values).abs() <= self.tolerance
        ga = torch.where(near_top, xs, torch.full_like(xs, -math.inf)).max(dim=1).values
        gb = torch.where(near_right, ys, torch.full_like(ys, -math.inf)).max(dim=1).values
        deltas = torch.stack(
            [
                (gx - px) / pw,
                (gy - py) / ph,
                torch.log(gw / pw),
                torch.log(gh / ph),
                (ga - gx) / gw,
                (gb - gy) / gh,
            ],
            dim=1,
        )
        return deltas / deltas.new_tensor(self.stds)

    def decode(self, anchors: Tensor, deltas: Tensor) -> Tensor:
        """anchors (N, 4), deltas (N, 6) -> (N, 5) le90 rboxes."""
        d = deltas.float() * deltas.new_tensor(self.stds, dtype=torch.float32)
        anchors = anchors.float()
        px, py = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
        pw, ph = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        dw = d[:, 2].clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
        dh = d[:, 3].clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
        gw, gh = pw * dw.exp(), ph * dh.exp()
        gx, gy = px + pw * d[:, 0], py + ph * d[:, 1]
        x1, y1, x2, y2 = gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2
        da, db = d[:, 4].clamp(-0.5, 0.5), d[:, 5].clamp(-0.5, 0.5)
        vertices = torch.stack(
            [
                torch.stack([gx + da * gw, y1], -1),
                torch.stack([x2, gy + db * gh], -1),
                torch.stack([gx - da * gw, y2], -1),
                torch.stack([x1, gy - db * gh], -1),
            ],
            dim=1,
        )  # (N, 4, 2) parallelogram
        centre = torch.stack([gx, gy], -1)[:, None]
        vectors = vertices - centre
        lengths = vectors.norm(dim=-1, keepdim=True)
        longest = lengths.max(dim=1, keepdim=True).values
        rect = centre + vectors * torch.where(lengths > 0, longest / lengths.clamp_min(1e-12), 1.0)
        edge_w, edge_h = rect[:, 1] - rect[:, 0], rect[:, 2] - rect[:, 1]
        boxes = torch.stack(
            [gx, gy, edge_w.norm(dim=-1), edge_h.norm(dim=-1), torch.atan2(edge_w[:, 1], edge_w[:, 0])], dim=1
        )
        return regularize_rboxes(boxes, "le90")


class DeltaXYWHTCoder:
    """rbox proposals <-> rboxes via (dx, dy, dw, dh, dt); le90, edge swap, proj_xy.

    Normalisation: means 0, stds (0.1, 0.1, 0.2, 0.2, 0.1).
    """

    def __init__(self, stds: tuple[float, ...] = (0.1, 0.1, 0.2, 0.2, 0.1)) -> None:
        self.stds = stds

    def encode(self, proposals: Tensor, gt: Tensor) -> Tensor:
        """proposals (N, 5), gt (N, 5) -> (N, 5) normalised deltas."""
        p, g = proposals.float(), regularize_rboxes(gt.float(), "le90")
        cos, sin = torch.cos(p[:, 4]), torch.sin(p[:, 4])
        ddx, ddy = g[:, 0] - p[:, 0], g[:, 1] - p[:, 1]
        dx = (cos * ddx + sin * ddy) / p[:, 2]
        dy = (-sin * ddx + cos * ddy) / p[:, 3]
        t1 = norm_angle(g[:, 4] - p[:, 4], "le90")
        t2 = norm_angle(g[:, 4] - p[:, 4] + math.pi / 2, "le90")
        keep = t1.abs() < t2.abs()
        dt = torch.where(keep, t1, t2)
        dw = torch.where(keep, torch.log(g[:, 2] / p[:, 2]), torch.log(g[:, 3] / p[:, 2]))
        dh = torch.where(keep, torch.log(g[:, 3] / p[:, 3]), torch.log(g[:, 2] / p[:, 3]))
        deltas = torch.stack([dx, dy, dw, dh, dt], dim=1)
        return deltas / deltas.new_tensor(self.stds)

    def decode(self, proposals: Tensor, deltas: Tensor, max_hw: tuple[int, int] | None = None) -> Tensor:
        """proposals (N, 5), deltas (N, 5) -> (N, 5) le90 rboxes; centres clamped to the image
        (W-1, H-1) when ``max_hw`` is given (sizes are not)."""
        p = proposals.float()
        d = deltas.float() * deltas.new_tensor(self.stds, dtype=torch.float32)
        dw = d[:, 2].clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
        dh = d[:, 3].clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
        gw, gh = p[:, 2] * dw.exp(), p[:, 3] * dh.exp()
        cos, sin = torch.cos(p[:, 4]), torch.sin(p[:, 4])
        gx = p[:, 0] + d[:, 0] * p[:, 2] * cos - d[:, 1] * p[:, 3] * sin
        gy = p[:, 1] + d[:, 0] * p[:, 2] * sin + d[:, 1] * p[:, 3] * cos
        theta = norm_angle(p[:, 4] + d[:, 4], "le90")
        if max_hw is not None:
            gx, gy = gx.clamp(0, max_hw[1] - 1), gy.clamp(0, max_hw[0] - 1)
        wider = gw > gh
        return torch.stack(
            [
                gx,
                gy,
                torch.where(wider, gw, gh),
                torch.where(wider, gh, gw),
                torch.where(wider, theta, norm_angle(theta + math.pi / 2, "le90")),
            ],
            dim=1,
        )
