"""Map a whole scene with a task model: read tiles, run the model in batches, stitch or merge, write outputs.

:func:`predict_scene` runs one *part* of a scene (``part_index`` of ``num_parts`` contiguous bands of tile rows;
one part = the whole scene) and returns a :class:`SceneResult`. With several parts (one per process, see
:mod:`mtp.inference.scene.distributed`) each part writes its own files under ``DIR/.parts/`` and
:func:`mtp.inference.scene.parts.finalize_parts` joins them. A dense part starts one tile row early (not
written) so that its first rows get the overlap of the tile row above, exactly as in a single run.

Interrupting (Ctrl-C / SIGTERM) raises :class:`SceneInterrupted` after the outputs were closed in a valid state
(rasters with the rows done so far, no-data below; GeoJSON with the objects final so far) and the resume state was
saved; ``resume=True`` continues from the last tile row that reached the disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from mtp.inference.scene.bands import parse_bands, parse_scale
from mtp.inference.scene.dense import ClassificationGridOutput, DenseOutput, PartSpec
from mtp.inference.scene.grid import BLENDS, TileGrid, split_rows
from mtp.inference.scene.objects import ObjectsOutput
from mtp.inference.scene.pair import open_scene
from mtp.inference.scene.pipeline import Progress, TileBatches
from mtp.inference.scene.predictors import TaskInfo, build_predictor, task_info
from mtp.inference.scene.reader import SceneInputError
from mtp.inference.scene.state import ResumeState

__all__ = ["SceneInterrupted", "SceneOptions", "SceneResult", "predict_scene"]

log = logging.getLogger(__name__)
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed")


@dataclass
class SceneOptions:
    """Settings of a scene run (the ``mtp predict-scene`` options; None = the task's default).

    tile / overlap: tile size and overlap in scene pixels. batch_size: tiles per forward. bands: '3,2,1'.
    scale / nodata: :mod:`mtp.inference.scene.bands`. device: 'cpu', 'cuda', 'cuda:1' ... precision: one of
    ``PRECISIONS``. blend: 'mean' (official) | 'gaussian' | 'cosine'. probs: also write class probabilities.
    score_thr / merge_iou: detection filter and cross-tile NMS threshold (0.1: the DOTA rule). drop_cut: drop
    detections cut by an inner tile edge that the neighbouring tile sees whole (:mod:`.objects`). workers: reader
    threads. overviews: build internal overviews. progress: True bar, False silent, None (a bar on a terminal, log
    lines otherwise). resume: continue an interrupted run. class_names: override the task's. name: output stem.
    """

    tile: int | None = None
    overlap: int | None = None
    batch_size: int = 8
    bands: str | tuple[int, ...] | None = None
    scale: str = "auto"
    nodata: float | None = None
    device: str = "cpu"
    precision: str = "32-true"
    blend: str = "mean"
    probs: bool = False
    score_thr: float = 0.0
    merge_iou: float = 0.1
    drop_cut: bool = True
    workers: int = 2
    overviews: bool = True
    progress: bool | None = None
    resume: bool = False
    class_names: list[str] | None = None
    name: str | None = None


@dataclass
class SceneResult:
    """Output files (``paths``: kind -> path), the task family, tile counts and speed of one run/part."""

    family: str
    paths: dict[str, Path]
    tiles: int = 0
    tiles_run: int = 0
    seconds: float = 0.0
    info: TaskInfo | None = None
    extra: dict = field(default_factory=dict)

    @property
    def tiles_per_second(self) -> float:
        return self.tiles / self.seconds if self.seconds > 0 else 0.0


class SceneInterrupted(KeyboardInterrupt):
    """The run was interrupted; outputs are valid but partial and ``--resume`` can continue."""

    def __init__(self, state_file: Path) -> None:
        super().__init__(f"interrupted: partial outputs written; rerun with --resume to continue ({state_file})")
        self.state_file = state_file


def _autocast(device: torch.device, precision: str):
    if precision in ("32-true", "32"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def plan(task: nn.Module, input_a: str | Path, input_b: str | Path | None, options: SceneOptions):
    """Check the options against the task and inputs; returns ``(info, tile, overlap)``."""
    info = task_info(task, options.class_names)
    if info.family == "change_detection" and input_b is None:
        raise SceneInputError(f"{input_a}: a change-detection model needs a second date (--input-b)")
    if info.family != "change_detection" and input_b is not None:
        raise SceneInputError(f"{input_b}: --input-b is only for change detection; this is a {info.family} model")
    if options.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {options.precision!r}")
    if options.blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {options.blend!r}")
    tile = options.tile or info.tile
    overlap = options.overlap
    if overlap is None:  # the task's overlap, in proportion when the tile size is changed
        overlap = info.overlap if tile == info.tile else round(info.overlap * tile / info.tile)
    if info.family == "classification":
        overlap = 0
    if not 0 <= overlap < tile:
        raise ValueError(f"--overlap must be in [0, tile={tile}), got {overlap}")
    return info, tile, overlap


def part_spec(grid: TileGrid, out_dir: Path, name: str, part_index: int, num_parts: int) -> PartSpec:
    start, end = split_rows(grid.n_steps, num_parts)[part_index]
    whole = num_parts == 1
    prefix = out_dir / name if whole else out_dir / ".parts" / f"{name}.part{part_index}"
    y_start = grid.final_start(start) if start < grid.n_steps else grid.height
    y_end = grid.final_end(end - 1) if end > start else y_start
    return PartSpec(start, end, y_start, y_end, prefix, whole)


def predict_scene(task: nn.Module, input_a: str | Path, out_dir: str | Path, *, input_b: str | Path | None = None,
                  options: SceneOptions | None = None, part_index: int = 0, num_parts: int = 1,
                  fingerprint_extra: dict | None = None) -> SceneResult:  # fmt: skip
    """Map the scene ``input_a`` (and ``input_b`` for change detection) with ``task``; see the module docstring.

    ``task``: a task LightningModule (or a module :func:`~mtp.inference.scene.predictors.task_info` accepts).
    ``fingerprint_extra``: what else identifies the run for ``resume`` (the CLI passes the config and checkpoint).
    """
    options = options or SceneOptions()
    out_dir = Path(out_dir)
    info, tile, overlap = plan(task, input_a, input_b, options)
    name = options.name or Path(input_a).stem
    bands, scale = parse_bands(options.bands), parse_scale(options.scale)
    probe = open_scene(input_a, input_b, bands=bands, scale=parse_scale("none"), nodata=options.nodata)
    try:
        dense = info.family in ("segmentation", "change_detection")
        grid = TileGrid(probe.geometry.height, probe.geometry.width, tile, overlap, merge_snapped=dense)
        inputs = probe.describe()
    except ValueError as err:
        raise SceneInputError(f"{input_a}: {err}; use a smaller --tile") from None
    finally:
        probe.close()
    part = part_spec(grid, out_dir, name, part_index, num_parts)
    settings = {k: v for k, v in asdict(options).items() if k not in ("batch_size", "workers", "progress", "resume",
                                                                       "device", "name", "overviews")}  # fmt: skip
    fingerprint = {"family": info.family, "part": [part_index, num_parts], "settings": settings | {"tile": tile,
                   "overlap": overlap}, "inputs": inputs, **(fingerprint_extra or {})}  # fmt: skip
    state = ResumeState(part.prefix, fingerprint)
    saved = state.load() if options.resume else None
    if options.resume and saved is None:
        log.info("no resume state at %s: starting from the first tile row", state.path)
    scene = open_scene(input_a, input_b, bands=bands, scale=scale, nodata=options.nodata,
                       scaling=state.scaling() if saved is not None else None)  # fmt: skip
    try:
        return _run(task, info, grid, scene, part, options, state, saved)
    finally:
        scene.close()


def _handler(info: TaskInfo, grid: TileGrid, scene, part: PartSpec, options: SceneOptions, saved: dict | None):
    """The output handler, the first tile row to run and the first tile row whose outputs are new (rows in between
    are context: the overlap of the rows above a part or a resume point)."""
    if info.family in ("segmentation", "change_detection"):
        durable = int(saved["durable_rows"]) if saved else 0
        start = part.step_start
        if durable >= part.y_end - part.y_start:
            start = part.step_end
        elif durable > 0:
            start = grid.first_step_needing(part.y_start + durable)
        first = grid.context_step(start) if start < part.step_end else start
        out = DenseOutput(info, grid, scene.geometry, part, first_row=first, durable_rows=durable,
                          probs=options.probs, blend=options.blend, overviews=options.overviews)  # fmt: skip
        return out, first, start
    if info.family == "classification":
        durable = int(saved["durable_rows"]) if saved else 0
        out = ClassificationGridOutput(info, grid, scene.geometry, part, durable_rows=durable,
                                       geojson_resume=tuple(saved["geojson"]) if saved else None,
                                       overviews=options.overviews)  # fmt: skip
        start = part.step_start + durable
        return out, start, start
    start = int(saved["next_row"]) if saved else part.step_start
    out = ObjectsOutput(info, grid, scene.geometry, part, first_row=start, iou=options.merge_iou,
                        score_thr=options.score_thr, drop_cut=options.drop_cut, resume=saved)  # fmt: skip
    return out, start, start


def _run(task, info, grid, scene, part, options, state, saved) -> SceneResult:
    device = torch.device(options.device)
    task.eval().to(device)
    predictor = build_predictor(task, info, options.score_thr)
    out, first, counted = _handler(info, grid, scene, part, options, saved)
    total = sum(len(grid.step_tiles(s)) for s in range(counted, part.step_end))
    rows = range(first, part.step_end) if counted < part.step_end else range(0)
    progress = Progress(total, f"{part.prefix.name} ({info.family})", options.progress)
    batches = TileBatches(scene.read, grid, rows, options.batch_size, workers=options.workers,
                          pin_memory=device.type == "cuda")  # fmt: skip
    result = SceneResult(info.family, dict(out.paths), info=info)
    start_time = time.monotonic()
    current, interrupted = first, False
    try:
        with torch.no_grad(), _autocast(device, options.precision):
            for batch in batches:
                if batch.row_index != current:
                    _end_row(out, state, scene, current, counted)
                    current = batch.row_index
                outputs = predictor(batch.images.to(device, non_blocking=True)) if batch.images is not None else []
                k = 0
                for (y, x), valid, ran in zip(batch.tiles, batch.valid, batch.ran, strict=True):
                    out.add(y, x, outputs[k] if ran else None, valid)
                    k += int(ran)
                del outputs  # before the next batch is loaded
                if current >= counted:
                    progress.update(len(batch.tiles))
                    result.tiles += len(batch.tiles)
                    result.tiles_run += k
            if len(rows):
                _end_row(out, state, scene, current, counted)
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: closing the outputs and saving the resume state")
        raise SceneInterrupted(state.path) from None
    finally:
        progress.close()
        out.close(interrupted=interrupted)
        result.seconds = time.monotonic() - start_time
    state.remove()
    if part.whole:
        from mtp.inference.scene.parts import finish_outputs

        result.paths.update(finish_outputs(info, part.prefix, scene.geometry, part.prefix.name))
    return result


def _release_freed_memory() -> None:
    """Give freed heap pages back to the OS (glibc keeps the tiles' buffers otherwise; no-op elsewhere)."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def _end_row(out, state: ResumeState, scene, row: int, counted: int) -> None:
    out.finish_row()
    _release_freed_memory()
    if row >= counted:
        state.save(out.checkpoint(), scene.scaling())
