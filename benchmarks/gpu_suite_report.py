"""Merge the outputs of ``benchmarks/gpu_suite.sh`` into one table of targets, anchors and measured values.

Reads the step log (``steps.tsv``), the JSON files the benchmarks wrote and the pytest JUnit file from
``--raw``; writes ``gpu_suite.md`` and ``gpu_suite.json`` under ``--out`` and prints the table. A value that
is missing says why (step failed, stopped at its time limit, not run within the budget).

    python benchmarks/gpu_suite_report.py --raw RAW_DIR --out OUT_DIR --device cuda
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import torch

from mtp.models.backbones.rvsa_attention import resolve_attn_impl

# Official code, H100, torch 2.11, 512², fwd+bwd+AdamW, batch 8 / inference batch 16 (issue 14), and the logs.
ANCHORS = {
    ("vit_b_rvsa", "train", "bf16"): (59.7, 8.5),
    ("vit_b_rvsa", "train", "fp32"): (66.6, 10.6),
    ("vit_l_rvsa", "train", "bf16"): (27.6, 19.5),
    ("vit_l_rvsa", "train", "fp32"): (26.3, 25.2),
    ("vit_b_rvsa", "infer", "bf16"): (255.0, None),
    ("vit_b_rvsa", "infer", "fp32"): (235.0, None),
    ("vit_l_rvsa", "infer", "bf16"): (103.0, None),
    ("vit_l_rvsa", "infer", "fp32"): (102.0, None),
}


def load(raw: Path, name: str) -> list[dict]:
    path = raw / f"{name}.json"
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text())["results"]
    except (json.JSONDecodeError, KeyError) as err:
        print(f"warning: {path}: {err}", file=sys.stderr)
        return []


def step_status(steps: dict[str, dict], name: str) -> str:
    """Why a step's numbers may be missing."""
    s = steps.get(name)
    if s is None:
        return "not run"
    if s["rc"] == "skipped":
        return "not run (budget)"
    if s["rc"] in ("124", "137"):
        return f"stopped at its {s['limit']} s limit"
    if s["rc"] != "0":
        return f"failed (exit {s['rc']}, see gpu_suite.log)"
    return "no result"


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def pick(rows: list[dict], **match) -> dict | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def impl_name(label: str) -> str:
    """'auto=sdpa' -> 'sdpa'; other labels unchanged."""
    return label.split("=", 1)[1] if "=" in label else label


def numerics_summary(raw: Path) -> dict:
    path = raw / "numerics.xml"
    if not path.exists():
        return {}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return {
        **total,
        "passed": total["tests"] - total["failures"] - total["errors"] - total["skipped"],
        "failed": failed,
    }


def backbone_rows(raw: Path, steps: dict, default: str) -> tuple[list[dict], list[str]]:
    """Target rows for the backbone, and a table of every backbone measurement."""
    rows = [
        r
        for name in ("backbone_b", "backbone_b_fp32", "backbone_l", "backbone_l_fp32", "compile_b")
        for r in load(raw, name)
    ]
    table = [
        "| model | dtype | mode | batch | path | img/s | peak GiB | saved MiB | x ref. img/s | x ref. peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = pick(rows, model=r["model"], dtype=r["dtype"], mode=r["mode"], impl="reference")
        speed = r["img_per_s"] / ref["img_per_s"] if ref and ref["img_per_s"] else None
        mem = r["peak_mem_gib"] / ref["peak_mem_gib"] if ref and r["peak_mem_gib"] and ref["peak_mem_gib"] else None
        table.append(
            f"| {r['model']} | {r['dtype']} | {r['mode']} | {r['batch']} | {r['impl']} | {fmt(r['img_per_s'])} | "
            f"{fmt(r['peak_mem_gib'])} | {fmt(r['saved_mib'], 0)} | {fmt(speed)} | {fmt(mem)} |"
        )
    targets = []
    specs = [  # model, mode, target img/s, step
        ("vit_b_rvsa", "train", 300.0, "backbone_b"),
        ("vit_l_rvsa", "train", 130.0, "backbone_l"),
        ("vit_b_rvsa", "infer", 1000.0, "backbone_b"),
        ("vit_l_rvsa", "infer", None, "backbone_l"),
    ]
    for model, mode, absolute, step in specs:
        ref = pick(rows, model=model, dtype="bf16", mode=mode, impl="reference")
        fast = [
            r
            for r in rows
            if r["model"] == model
            and r["dtype"] == "bf16"
            and r["mode"] == mode
            and r["impl"] != "reference"
            and not math.isnan(r["img_per_s"])
        ]
        dflt = pick(fast, impl=default)
        best = max(fast, key=lambda r: r["img_per_s"], default=None)
        anchor_ips, anchor_mem = ANCHORS[(model, mode, "bf16")]
        row = dict(
            target=f"{model} {mode} bf16 512² b{8 if mode == 'train' else 16}, img/s",
            anchor=anchor_ips,
            reference=ref and ref["img_per_s"],
            default=dflt and dflt["img_per_s"],
            best=best and best["img_per_s"],
            best_path=best and best["impl"],
            goal=(f">= {absolute:.0f} img/s and " if absolute else "") + ">= 4x reference",
            status=step_status(steps, step),
        )
        if dflt and ref:
            ok = dflt["img_per_s"] >= 4 * ref["img_per_s"] and (absolute is None or dflt["img_per_s"] >= absolute)
            row["status"] = f"{'met' if ok else 'not met'} ({dflt['img_per_s'] / ref['img_per_s']:.2f}x)"
        targets.append(row)
        if mode == "train":
            mem = dict(
                target=f"{model} train bf16 512² b8, peak GiB",
                anchor=anchor_mem,
                reference=ref and ref["peak_mem_gib"],
                default=dflt and dflt["peak_mem_gib"],
                best=best and best["peak_mem_gib"],
                best_path=best and best["impl"],
                goal="<= 0.5x reference",
                status=step_status(steps, step),
            )
            if dflt and ref and dflt["peak_mem_gib"] and ref["peak_mem_gib"]:
                ratio = dflt["peak_mem_gib"] / ref["peak_mem_gib"]
                mem["status"] = f"{'met' if ratio <= 0.5 else 'not met'} ({ratio:.2f}x)"
            targets.append(mem)
    return targets, table


def task_rows(raw: Path, steps: dict) -> list[dict]:
    """Target rows of the task steps: default path ('auto=...') against the reference path, bf16."""
    out = []
    specs = [  # step, key, unit, higher is better, anchor, goal
        ("segmentation", "train_img_per_s", "UperNet 512² b8 train, img/s", True, None, "faster than reference"),
        ("rotated_detection", "train_s_per_iter", "Oriented R-CNN 1024² b2 train, s/iter", False, 1.19, "<= 0.35 s"),
        (
            "change_detection",
            "train_pairs_per_s",
            "change detection 256² b8 train, pairs/s",
            True,
            None,
            "faster than reference",
        ),
        (
            "classification",
            "train_img_per_s",
            "classification 224² b64 train, img/s",
            True,
            None,
            "faster than reference",
        ),
        ("detection", "train_s_per_iter", "Faster R-CNN 800² b2 train, s/iter", False, None, "faster than reference"),
    ]
    for step, key, label, higher, anchor, goal in specs:
        rows = [r for r in load(raw, step) if key in r and r.get("dtype") == "bf16"]
        ref = pick(rows, attn_impl="reference")
        dflt = next((r for r in rows if r["attn_impl"].startswith("auto")), None)
        row = dict(
            target=label,
            anchor=anchor,
            reference=ref and ref[key],
            default=dflt and dflt[key],
            best=None,
            best_path=dflt and dflt["attn_impl"],
            goal=goal,
            status=step_status(steps, step),
        )
        if ref and dflt:
            ratio = dflt[key] / ref[key] if higher else ref[key] / dflt[key]
            ok = dflt[key] <= 0.35 if step == "rotated_detection" else ratio > 1
            row["status"] = f"{'met' if ok else 'not met'} ({ratio:.2f}x reference)"
        out.append(row)
    rows = load(raw, "pretraining")
    ref = pick(rows, mode="fp32", attn_impl="reference")
    dflt = next((r for r in rows if r["mode"] == "bf16" and r["attn_impl"].startswith("auto")), None)
    row = dict(
        target="MTP pretraining 448², 3 datasets x 3 images, s/iter (default: bf16; reference: fp32)",
        anchor=0.187,
        reference=ref and ref["s_per_iter"],
        default=dflt and dflt["s_per_iter"],
        best=None,
        best_path=dflt and dflt["attn_impl"],
        goal=">= 2x the fp32 reference path",
        status=step_status(steps, "pretraining"),
    )
    if ref and dflt:
        ratio = ref["s_per_iter"] / dflt["s_per_iter"]
        row["status"] = f"{'met' if ratio >= 2 else 'not met'} ({ratio:.2f}x)"
    out.append(row)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    with open(args.raw / "steps.tsv", newline="") as f:
        steps = {r["step"]: r for r in csv.DictReader(f, delimiter="\t")}
    default = resolve_attn_impl("auto", torch.device(args.device))
    targets, backbone_table = backbone_rows(args.raw, steps, default)
    targets += task_rows(args.raw, steps)
    numerics = numerics_summary(args.raw)
    env = (args.out / "env.txt").read_text() if (args.out / "env.txt").exists() else ""

    lines = [
        f"Device: {args.device}{' (dry run, tiny sizes: the numbers mean nothing)' if args.tiny else ''}; "
        f"default path (attn_impl='auto') = {default!r}.",
        "",
        "| target | anchor (official) | reference path | default path | best fast path (which) | goal | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in targets:
        best = f"{fmt(t['best'])} ({t['best_path']})" if t["best"] is not None else f"- ({t['best_path'] or '-'})"
        lines.append(
            f"| {t['target']} | {fmt(t['anchor'])} | {fmt(t['reference'])} | {fmt(t['default'])} | {best} | "
            f"{t['goal']} | {t['status']} |"
        )
    if numerics:
        lines += [
            "",
            f"CUDA numerics tests: {numerics['passed']} passed, {numerics['failures']} failed, "
            f"{numerics['errors']} errors, {numerics['skipped']} skipped.",
        ]
        lines += [f"- FAILED {name}" for name in numerics["failed"]]
    else:
        lines += ["", f"CUDA numerics tests: {step_status(steps, 'numerics')}."]
    lines += ["", "Backbone, every path (x reference: same model, dtype and mode):", "", *backbone_table]
    cost = load(args.raw, "cost_b")
    if cost:
        lines += [
            "",
            "| model | path | GFLOP (attention) | saved MiB | compute ops | copies | CUDA kernels |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in cost:
            lines.append(
                f"| {r['model']} | {r['attn_impl']} | {fmt(r['gflop'], 1)} ({fmt(r['attention_gflop'], 1)}) | "
                f"{fmt(r['saved_mib'], 0)} | {r['compute_ops']} | {r['copies']} | {r.get('cuda_kernels', '-')} |"
            )
    lines += ["", "| step | exit | seconds | limit |", "|---|---|---|---|"]
    lines += [f"| {s['step']} | {s['rc']} | {s['seconds']} | {s['limit']} |" for s in steps.values()]
    text = "\n".join(lines) + "\n"
    (args.out / "gpu_suite.md").write_text(text)
    merged = {name: load(args.raw, name) for name in steps}
    (args.out / "gpu_suite.json").write_text(
        json.dumps(
            {
                "env": env,
                "default_attn_impl": default,
                "steps": steps,
                "targets": targets,
                "numerics": numerics,
                "results": merged,
            },
            indent=1,
            default=str,
        )
    )
    print(text)
    failed = [s for s in steps.values() if s["rc"] not in ("0", "skipped")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
