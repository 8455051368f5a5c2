"""Compact in-memory annotation store and RLE decoding for the SAMRS datasets.

Why: a full SAMRS split holds millions of instance RLEs. Kept as Python dicts / strings, every DataLoader worker
would gradually copy them (reference counting writes to the pages: the copy-on-write problem of forked
workers), multiplying the memory by the number of workers × datasets. :class:`SAMRSStore` packs everything
into a few flat numpy arrays per split (RLE ``counts`` bytes concatenated with offsets, boxes, labels, rboxes,
per-image index ranges), which workers share without copying; a sample's RLE dicts are rebuilt on access.

RLE helpers: :func:`coded_rle` (any COCO RLE dict → pycocotools' compressed form), :func:`decode_rles` (full
masks), :func:`rle_counts` (the run lengths of a compressed string) and :func:`decode_rle_columns` (decode only
a column range — a crop needs ~1/25 of the work of a full 1024² decode).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtp.data.datasets.samrs_formats import SAMRSRecord

__all__ = ["SAMRSStore", "coded_rle", "decode_rle_columns", "decode_rles", "rle_counts"]


def coded_rle(seg: dict) -> dict:
    """A COCO RLE dict (``counts`` str / bytes = compressed, list = uncompressed) → pycocotools' compressed form
    (``counts`` bytes)."""
    from pycocotools import mask as mask_utils

    counts = seg["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(seg, *seg["size"])
    return {"size": list(seg["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_rles(rles: list[dict], hw: tuple[int, int]) -> np.ndarray:
    """COCO RLE dicts → uint8 (N, H, W) {0, 1} masks (pycocotools)."""
    from pycocotools import mask as mask_utils

    if not rles:
        return np.zeros((0, *hw), np.uint8)
    with warnings.catch_warnings():  # pycocotools' numpy-2 DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        masks = mask_utils.decode([coded_rle(seg) for seg in rles])  # (H, W, N), Fortran order
    if masks.shape[:2] != tuple(hw):
        raise ValueError(f"RLE of size {masks.shape[:2]} for an image of size {tuple(hw)}")
    return np.ascontiguousarray(masks.transpose(2, 0, 1))


def rle_counts(seg: dict) -> np.ndarray:
    """Run lengths (int64) of a COCO RLE dict, alternating 0-runs and 1-runs in column-major order; compressed
    ``counts`` strings are decoded with the COCO LEB128-like scheme (5 bits per character, offset 48, sign bit
    0x10, continuation bit 0x20; from the third value on, each value is a delta to the value two places back)."""
    counts = seg["counts"]
    if isinstance(counts, list):
        return np.asarray(counts, np.int64)
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    out: list[int] = []
    p, n = 0, len(data)
    while p < n:
        value, shift, more = 0, 0, True
        while more:
            c = data[p] - 48
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(out) > 2:
            value += out[-2]
        out.append(value)
    return np.asarray(out, np.int64)


def decode_rle_columns(seg: dict, c0: int, c1: int) -> np.ndarray:
    """Columns ``c0 .. c1 - 1`` of a COCO RLE mask as uint8 (H, c1 - c0) {0, 1}, without decoding the rest (the
    runs are clipped to the column range; exact, same values as ``pycocotools.mask.decode(rle)[:, c0:c1]``)."""
    h = int(seg["size"][0])
    runs = rle_counts(seg)
    ends = np.cumsum(runs)
    starts = ends - runs
    lo, hi = c0 * h, c1 * h
    lengths = np.clip(ends, lo, hi) - np.clip(starts, lo, hi)
    values = (np.arange(len(runs)) % 2).astype(np.uint8)
    flat = np.repeat(values, lengths)
    if flat.size != hi - lo:  # runs shorter than the image: the rest is background
        flat = np.concatenate([flat, np.zeros(hi - lo - flat.size, np.uint8)])
    return flat.reshape(c1 - c0, h).T


def _strings(values: Sequence) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=str)


@dataclass
class SAMRSStore:
    """A split's annotations in flat numpy arrays (module docstring). Image i owns the instances
    ``inst_start[i]:inst_start[i + 1]`` (rows of ``boxes`` (N, 4) float32 xyxy, ``labels`` (N,) int64, RLE bytes
    ``rle_bytes[rle_start[k]:rle_start[k + 1]]``) and the rotated boxes ``rot_start[i]:rot_start[i + 1]`` (rows of
    ``rboxes`` (M, 5) float32 le90, ``rlabels`` (M,) int64)."""

    image_paths: np.ndarray
    gray_paths: np.ndarray
    box_paths: np.ndarray
    image_ids: np.ndarray
    hw: np.ndarray
    inst_start: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    rle_bytes: np.ndarray
    rle_start: np.ndarray
    rot_start: np.ndarray
    rboxes: np.ndarray
    rlabels: np.ndarray

    @classmethod
    def pack(cls, records: Sequence[SAMRSRecord]) -> SAMRSStore:
        """Pack read records; rotated quads become le90 rboxes (:func:`mtp.ops.rotated.boxes.poly2rbox`)."""
        from mtp.ops.rotated.boxes import poly2rbox

        counts = [coded_rle(seg)["counts"] for r in records for seg in r.rles]
        polys = np.concatenate([np.zeros((0, 8), np.float32), *(r.polys for r in records)])
        rboxes = poly2rbox(torch.from_numpy(polys).double()).float().numpy() if len(polys) else polys[:, :5]
        ids = [r.image_id for r in records]
        all_int = all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        return cls(
            image_paths=_strings(r.image_path for r in records),
            gray_paths=_strings(r.gray_path for r in records),
            box_paths=_strings(r.box_path for r in records),
            image_ids=np.asarray(ids, np.int64) if all_int else _strings(ids),
            hw=np.asarray([r.hw for r in records], np.int64).reshape(-1, 2),
            inst_start=np.cumsum([0, *(len(r.labels) for r in records)]).astype(np.int64),
            boxes=np.concatenate([np.zeros((0, 4), np.float32), *(r.boxes for r in records)]),
            labels=np.concatenate([np.zeros(0, np.int64), *(r.labels for r in records)]),
            rle_bytes=np.frombuffer(b"".join(counts), np.uint8).copy(),
            rle_start=np.cumsum([0, *(len(c) for c in counts)]).astype(np.int64),
            rot_start=np.cumsum([0, *(len(r.rlabels) for r in records)]).astype(np.int64),
            rboxes=np.ascontiguousarray(rboxes, np.float32),
            rlabels=np.concatenate([np.zeros(0, np.int64), *(r.rlabels for r in records)]),
        )

    def __len__(self) -> int:
        return len(self.image_paths)

    def rles(self, i: int) -> list[dict]:
        """The RLE dicts (compressed ``counts`` bytes) of image i's instances."""
        h, w = (int(v) for v in self.hw[i])
        a, b = self.inst_start[i], self.inst_start[i + 1]
        data, start = self.rle_bytes, self.rle_start
        return [{"size": [h, w], "counts": data[start[k] : start[k + 1]].tobytes()} for k in range(a, b)]

    def record(self, i: int) -> SAMRSRecord:
        """Image i as a :class:`SAMRSRecord` (``polys`` are not kept: empty; see ``rboxes``)."""
        a, b = self.inst_start[i], self.inst_start[i + 1]
        r0, r1 = self.rot_start[i], self.rot_start[i + 1]
        return SAMRSRecord(
            image_path=Path(self.image_paths[i]),
            gray_path=Path(self.gray_paths[i]),
            box_path=Path(self.box_paths[i]),
            image_id=self.image_ids[i].item(),
            hw=(int(self.hw[i, 0]), int(self.hw[i, 1])),
            boxes=self.boxes[a:b].copy(),
            labels=self.labels[a:b].copy(),
            rles=self.rles(i),
            rlabels=self.rlabels[r0:r1].copy(),
        )

    def rotated(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(rboxes (M, 5) float32 le90, rlabels (M,) int64) of image i (copies)."""
        r0, r1 = self.rot_start[i], self.rot_start[i + 1]
        return self.rboxes[r0:r1].copy(), self.rlabels[r0:r1].copy()
