"""The demo, end to end (``mtp demo``): data -> pretraining -> fine-tuning arms over seeds -> gains -> report.

:func:`run_study` returns the results dict that :mod:`mtp.demo.report` renders and writes ``results.json``,
``report.html`` and the tile pictures under ``out``; the exit code of ``mtp demo`` is 0 only when the verdict
passes (:func:`mtp.demo.stats.verdict`).
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from mtp.demo.data import DemoData, prepare_data
from mtp.demo.finetune import ArmJob, run_arm
from mtp.demo.pretrain import pretrain
from mtp.demo.settings import ARMS, DemoSettings, TaskSettings
from mtp.demo.stats import paired_gain, verdict
from mtp.inference.outputs import write_json

COLOURS = {"scratch": "#7f7f7f", "mtp": "#1f77b4", "mtp_decoder": "#2ca02c"}
TITLES = {
    "segmentation": "Semantic segmentation (LoveDA format, UperNet), {labelled} labelled tiles",
    "change_detection": "Change detection (LEVIR-CD format, Siamese UNet), {labelled} labelled pairs",
}
METRICS = {"segmentation": "mIoU", "change_detection": "changed F1"}
NOTES = {
    "segmentation": [
        "What transfers: the pretraining labels are SAMRS objects (vehicles, ships, planes, storage tanks; every other "
        "pixel is 'background'), while LoveDA's classes are land cover. The encoder therefore brings general "
        "features of this imagery, not the target classes, and the gain is modest. The official runs show the same "
        "shape at full scale: MTP adds +3 to +4 mAP on DIOR-R but changes SpaceNet mIoU by -0.15 to +0.07.",
        "Reused decoder: the UperNet decoder was trained to separate objects from 'background', the one class that "
        "LoveDA splits into six; starting from it is not better than a fresh decoder here.",
    ],
    "change_detection": [
        "Reported, not gated: building changes are outside the pretraining classes, the Siamese UNet decoder is "
        "new in every arm, and few-label change detection is noisy from seed to seed. The official LEVIR-CD "
        "results move by +0.01 (ViT-B) to +0.15 (ViT-L) F1 points with MTP.",
    ],
}


def _jobs(settings: DemoSettings, data: DemoData, out: Path, encoder: Path, decoder: Path) -> list[ArmJob]:
    roots = {"segmentation": (data.loveda_train, data.loveda_held_out),
             "change_detection": (data.levir_train, data.levir_held_out)}  # fmt: skip
    jobs = []
    for task in settings.tasks:
        for arm in task.arms:
            for seed in settings.seeds:
                jobs.append(ArmJob(
                    task, arm, seed, *roots[task.name], out / "runs" / task.name / arm / f"seed{seed}",
                    encoder=None if arm == "scratch" else encoder, decoder=decoder if arm == "mtp_decoder" else None,
                    tiles=out / "tiles" / task.name if seed == settings.seeds[0] else None,
                    grid_tiles=settings.grid_tiles,
                ))  # fmt: skip
    return jobs


def _run_all(jobs: list[ArmJob], parallel: int, say: Callable[[str], None]) -> list[dict]:
    def report(run: dict) -> None:
        say(f"  {run['task']:<17} {ARMS[run['arm']]:<29} seed {run['seed']}  "
            f"{run['value']:.3f}  ({run['seconds']:.0f} s)")  # fmt: skip

    runs = []
    if parallel <= 1:
        for job in jobs:
            runs.append(run_arm(job))
            report(runs[-1])
        return runs
    with ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("forkserver")) as pool:
        for future in as_completed([pool.submit(run_arm, job) for job in jobs]):
            runs.append(future.result())
            report(runs[-1])
    return runs


def _task_results(task: TaskSettings, runs: list[dict], grid_tiles: int) -> dict:
    by_arm = {arm: sorted((r for r in runs if r["task"] == task.name and r["arm"] == arm), key=lambda r: r["seed"])
              for arm in task.arms}  # fmt: skip
    arms = [{"name": arm, "label": ARMS[arm], "color": COLOURS[arm], "values": [r["value"] for r in rs],
             "curves": [{"seed": r["seed"], **r["curve"]} for r in rs],
             "loss": [{"seed": r["seed"], **r["loss"]} for r in rs],
             "seconds": [r["seconds"] for r in rs]} for arm, rs in by_arm.items()]  # fmt: skip
    scratch = by_arm["scratch"]
    gains = [{"arm": arm, **paired_gain([r["value"] for r in by_arm[arm]], [r["value"] for r in scratch],
                                        gated=task.gated and arm == "mtp")}
             for arm in task.arms if arm != "scratch"]  # fmt: skip
    tiles = Path("tiles") / task.name
    images = ["image_a", "image_b"] if task.name == "change_detection" else ["image"]
    columns = [name.replace("_", " ") for name in images] + ["truth"] + [ARMS[a] for a in task.arms]
    rows = [[str(tiles / f"{row}_{name}.png") for name in [*images, "truth", *task.arms]] for row in range(grid_tiles)]
    return {"name": task.name, "title": TITLES[task.name].format(labelled=task.labelled),
            "metric": METRICS[task.name], "gated": task.gated, "arms": arms, "gains": gains,
            "grid": {"columns": columns, "rows": rows},
            "notes": NOTES[task.name]}  # fmt: skip


def run_study(out: Path, settings: DemoSettings, *, fresh: bool = False, say: Callable[[str], None] = print) -> dict:
    """Run the whole demo into ``out``; returns the results dict (also written to ``out / 'results.json'``)."""
    from mtp.demo.report import write_report
    from mtp.models.checkpoint_writer import atomic_torch_save
    from mtp.models.pretraining.reuse import reuse_decoder

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    say(f"[1/4] synthetic data -> {out / 'data'}")
    data = prepare_data(out, settings)
    say(f"[2/4] three-task pretraining ({settings.pretrain_steps} steps) -> {out / 'pretrain'}")
    pre = pretrain(out, data.samrs, settings, fresh=fresh)
    say(f"      {'re-used (config, data and code unchanged)' if pre.cached else 'done'}: {pre.encoder}")
    decoder = atomic_torch_save({"state_dict": reuse_decoder(pre.whole, "ss")}, out / "pretrain" / "reuse_ss.pth")
    jobs = _jobs(settings, data, out, pre.encoder, decoder)
    say(f"[3/4] fine-tuning: {len(jobs)} runs ({len(settings.seeds)} seeds), {settings.jobs} at a time")
    runs = _run_all(jobs, settings.jobs, say)
    tasks = [_task_results(task, runs, settings.grid_tiles) for task in settings.tasks]
    results = {
        "settings": {**settings.to_dict(), "summary": settings.summary()},
        "pretraining": {"seconds": pre.seconds, "cached": pre.cached, "encoder": str(pre.encoder.relative_to(out))},
        "tasks": tasks,
        "verdict": verdict(tasks),
        "seconds": time.perf_counter() - start,
    }
    say("[4/4] report")
    write_json(strict_json(results), out / "results.json")
    results["report"] = str(write_report(results, out))
    return results


def strict_json(value):
    """``value`` with every NaN / ±inf float replaced by None (``results.json`` stays strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value
