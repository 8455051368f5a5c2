"""The moving parts around the model: a reader pool that prefetches tile batches, and a progress report.

:class:`TileBatches` reads the batches of a list of tile rows with ``workers`` threads (rasterio releases the GIL
while GDAL reads and decompresses), ``depth`` batches ahead of the model, so that on a GPU reading never waits
for the model nor the model for reading. A batch never spans two tile rows. Tiles whose pixels are all no-data
are not sent to the model (``ran`` False).

:class:`Progress` shows tiles done / total, tiles/s and the ETA: a tqdm bar on a terminal, a log line every
``every`` seconds otherwise (logs, CI, files).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from mtp.inference.scene.grid import TileGrid

__all__ = ["Progress", "TileBatch", "TileBatches"]

log = logging.getLogger(__name__)

Reader = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class TileBatch:
    """Tiles of one step (tile row): ``tiles`` (row, col) corners, ``valid`` list of (T, T) bool masks, ``ran``
    which tiles have valid pixels, ``images`` float32 (n_ran, C, T, T) of those tiles (pinned for a CUDA device)."""

    row_index: int
    tiles: list[tuple[int, int]]
    valid: list[np.ndarray]
    ran: list[bool]
    images: torch.Tensor | None


class TileBatches:
    """Iterator over the :class:`TileBatch` es of the steps ``rows`` (prefetched; see the module docstring)."""

    def __init__(self, read: Reader, grid: TileGrid, rows: range, batch_size: int, *, workers: int = 2,
                 depth: int | None = None, pin_memory: bool = False) -> None:  # fmt: skip
        self.read, self.grid, self.pin = read, grid, pin_memory
        self.jobs = [(r, tiles[i : i + batch_size]) for r in rows
                     for tiles in [grid.step_tiles(r)] for i in range(0, len(tiles), batch_size)]  # fmt: skip
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="scene-read")
        self.depth = depth or max(2, workers)

    def _load(self, row_index: int, tiles: list[tuple[int, int]]) -> TileBatch:
        t = self.grid.tile
        batch: np.ndarray | None = None
        valid, ran, k = [], [], 0
        for y, x in tiles:
            image, ok = self.read(y, x, t, t)
            valid.append(ok)
            ran.append(bool(ok.any()))
            if ran[-1]:
                if batch is None:
                    batch = np.empty((len(tiles), *image.shape), np.float32)
                batch[k] = image
                k += 1
        tensor = torch.from_numpy(batch[:k]) if k else None
        if tensor is not None and self.pin:
            tensor = tensor.pin_memory()
        return TileBatch(row_index, tiles, valid, ran, tensor)

    def __iter__(self) -> Iterator[TileBatch]:
        queue: deque[Future] = deque()
        jobs = iter(self.jobs)
        try:
            for job in jobs:
                queue.append(self.pool.submit(self._load, *job))
                if len(queue) >= self.depth:
                    break
            while queue:
                batch = queue.popleft().result()
                nxt = next(jobs, None)
                if nxt is not None:
                    queue.append(self.pool.submit(self._load, *nxt))
                yield batch
        finally:
            for future in queue:
                future.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """Tiles done / total with rate and ETA (bar on a terminal, periodic log lines otherwise, nothing if disabled)."""

    def __init__(self, total: int, desc: str, enabled: bool | None = None, every: float = 10.0) -> None:
        self.total, self.done, self.every = total, 0, every
        self.start = self.last_log = time.monotonic()
        self.bar = None
        self.enabled = enabled is not False
        if self.enabled and (enabled or sys.stderr.isatty()):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="tile", dynamic_ncols=True, smoothing=0.1)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if self.enabled and (now - self.last_log >= self.every or self.done >= self.total):
            self.last_log = now
            rate = self.rate
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("tiles %d/%d (%.1f%%), %.2f tiles/s, ETA %s", self.done, self.total,
                     100.0 * self.done / max(self.total, 1), rate, _duration(eta) if rate > 0 else "?")  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
