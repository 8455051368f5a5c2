"""Render the results of the MTP demo (``make demo``): a terminal table and one self-contained HTML report.

The input is the JSON-serialisable ``results`` dict the demo produces (settings, pretraining info, one entry per
task with its fine-tuning arms, paired gains vs scratch, picture grid and notes, and the verdict). The HTML file
embeds everything: pictures as base64 ``data:`` URIs, charts as inline SVG, a little inline CSS, no JavaScript and
no external URL, so it can be mailed or opened offline.

Conventions: "mean ± std" is over seeds with the sample std (ddof=1; 0 for one seed); the gain column is the
paired mean difference arm - scratch ± its standard error, with the ratio in σ, all taken from ``task["gains"]``;
"info" marks a gain that is reported but not gated.
"""

from __future__ import annotations

import base64
import html
import math
import statistics
from pathlib import Path

from mtp.demo.stats import mean_std

__all__ = ["format_table", "svg_line_chart", "write_report"]

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}
_CSS = """body{font-family:sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-family:monospace}.banner{padding:.7em 1em;border-radius:6px;font-weight:bold}
.banner.pass{background:#d4edda;color:#155724}.banner.fail{background:#f8d7da;color:#721c24}
.PASS{color:#155724;font-weight:bold}.FAIL{color:#721c24;font-weight:bold}.charts{display:flex;flex-wrap:wrap;gap:1em}
.grid td{padding:2px}.grid img{width:128px;image-rendering:pixelated;display:block}.note{color:#666;font-style:italic}
footer{margin-top:2em;color:#666;font-size:.9em}"""
_HEADER = ["task", "arm", "metric", "mean ± std", "gain vs scratch", "result"]


def _mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    return "{:.3f} ± {:.3f}".format(*mean_std(values))


def _gain_cells(gain: dict | None) -> tuple[str, str]:
    """(``+0.017 ± 0.006 (2.8σ)``, ``PASS``/``FAIL``/``info``) for one gain entry; blanks without one."""
    if gain is None:
        return "", ""
    text = f"{gain['mean']:+.3f} ± {gain['se']:.3f}"
    sigmas = gain.get("sigmas")
    if sigmas is not None and not math.isnan(sigmas):  # ±inf when every seed gained exactly the same
        text += f" ({sigmas:.1f}σ)" if math.isfinite(sigmas) else f" ({'+' if sigmas > 0 else '-'}∞σ)"
    return text, ("PASS" if gain.get("passed") else "FAIL") if gain.get("gated") else "info"


def _table_rows(results: dict) -> list[list[str]]:
    """One row of plain-text cells (see ``_HEADER``) per task × arm."""
    rows = []
    for task in results.get("tasks", []):
        gains = {g["arm"]: g for g in task.get("gains", [])}
        for arm in task.get("arms", []):
            gain = None if arm["name"] == "scratch" else gains.get(arm["name"])
            rows.append(
                [task["name"], arm["label"], task["metric"], _mean_std(arm.get("values", [])), *_gain_cells(gain)]
            )
    return rows


def _verdict_line(results: dict) -> str:
    verdict = results.get("verdict", {})
    return f"verdict: {'PASS' if verdict.get('passed') else 'FAIL'} — {verdict.get('reason', '')}"


def format_table(results: dict) -> str:
    """The plain-text results table for the terminal (one row per task × arm) followed by the verdict line."""
    rows = [_HEADER, *_table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, _verdict_line(results)])


def _nice_ticks(lo: float, hi: float) -> list[float]:
    """4-6 evenly spaced round ticks (step 1, 2, 2.5 or 5 × 10^k) whose first/last enclose [lo, hi], tightest first."""
    if not hi > lo:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    top = math.floor(math.log10(hi - lo))
    best: tuple | None = None
    for exp in range(top - 2, top + 2):
        for mantissa in (1, 2, 2.5, 5):
            step = mantissa * 10.0**exp
            a, b = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
            n = b - a + 1
            key = (0 if 4 <= n <= 6 else abs(n - 5), (b - a) * step, abs(n - 5))
            if best is None or key < best[0]:
                best = (key, step, a, b)
    assert best is not None
    _, step, a, b = best
    return [round(i * step, 12) for i in range(a, b + 1)]


def _tick_label(value: float, step: float) -> str:
    decimals = next((d for d in range(9) if abs(step * 10**d - round(step * 10**d)) < 1e-6), 9)
    return f"{value:.{decimals}f}"


def svg_line_chart(
    series: list[dict], *, title: str, x_label: str, y_label: str, width: int = 480, height: int = 300
) -> str:
    """An inline SVG line chart (valid XML, no namespace URL) with one ``<polyline>`` per series.

    Each series is ``{"label", "color", "x", "y", "width", "opacity"}``; non-finite points are dropped. The axes span
    round ticks (4-6 each) that enclose every point, y padded by 5 % of its range (not across zero). The legend, below
    the plot, lists each distinct label once (so per-seed and mean lines of one arm share an entry).
    Raises ValueError when no series has a finite point.
    """
    cleaned = [
        [(x, y) for x, y in zip(s["x"], s["y"], strict=True) if math.isfinite(x) and math.isfinite(y)] for s in series
    ]
    xs = [p[0] for pts in cleaned for p in pts]
    ys = [p[1] for pts in cleaned for p in pts]
    if not xs:
        raise ValueError(f"svg_line_chart({title!r}): no finite point to draw")
    pad = 0.05 * (max(ys) - min(ys))
    y_lo = min(ys) - pad if min(ys) - pad >= 0 or min(ys) < 0 else 0.0
    y_hi = max(ys) + pad if max(ys) + pad <= 0 or max(ys) > 0 else 0.0
    x_ticks, y_ticks = _nice_ticks(min(xs), max(xs)), _nice_ticks(y_lo, y_hi)
    legend: dict[str, tuple[str, float]] = {}
    for s in series:
        if s["label"] and s["label"] not in legend:
            legend[s["label"]] = (s["color"], max(x["width"] for x in series if x["label"] == s["label"]))
    places, row, cursor = [], 0, 56.0
    for label in legend:  # flow the legend entries left to right, wrapping at the width (~6.5 px per character)
        item = 30 + 6.5 * len(label)
        if cursor + item > width and cursor > 56:
            row, cursor = row + 1, 56.0
        places.append((cursor, row))
        cursor += item
    left, right, top = 60.0, width - 14.0, 28.0
    bottom = height - 40.0 - 16.0 * (row + 1) * bool(legend)
    if bottom - top < 40:
        raise ValueError(f"svg_line_chart({title!r}): {width}x{height} is too small")

    def px(x: float) -> float:
        return left + (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * (bottom - top)

    esc = html.escape
    out = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2:.1f}" y="17" text-anchor="middle" font-size="13" font-weight="bold">{esc(title)}</text>',
    ]
    x_step, y_step = x_ticks[1] - x_ticks[0], y_ticks[1] - y_ticks[0]
    for t in y_ticks:
        out.append(f'<line x1="{left}" x2="{right}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#e6e6e6"/>')
        out.append(f'<text x="{left - 5}" y="{py(t) + 4:.1f}" text-anchor="end">{_tick_label(t, y_step)}</text>')
    for t in x_ticks:
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{bottom}" stroke="#e6e6e6"/>')
        out.append(f'<text x="{px(t):.1f}" y="{bottom + 14}" text-anchor="middle">{_tick_label(t, x_step)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#444"/>')
    for s, pts in zip(series, cleaned, strict=True):
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        style = f'stroke="{esc(s["color"])}" stroke-width="{s["width"]}" stroke-opacity="{s["opacity"]}"'
        tip = f"<title>{esc(s['label'])}</title>"
        out.append(f'<polyline fill="none" {style} stroke-linejoin="round" points="{points}">{tip}</polyline>')
        if len(pts) == 1:  # a single point draws no line: mark it
            out.append(f'<circle cx="{px(pts[0][0]):.1f}" cy="{py(pts[0][1]):.1f}" r="2.5" fill="{esc(s["color"])}"/>')
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{bottom + 30}" text-anchor="middle">{esc(x_label)}</text>')
    y_mid = (top + bottom) / 2
    out.append(f'<text transform="translate(14 {y_mid:.1f}) rotate(-90)" text-anchor="middle">{esc(y_label)}</text>')
    for (label, (color, line_width)), (x, row) in zip(legend.items(), places, strict=True):
        y = bottom + 46 + 16 * row
        line = f'stroke="{esc(color)}" stroke-width="{line_width}"'
        out.append(f'<line x1="{x}" x2="{x + 20}" y1="{y - 4}" y2="{y - 4}" {line}/>')
        out.append(f'<text x="{x + 25}" y="{y}">{esc(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _mean_curve(curves: list[dict]) -> tuple[list[float], list[float]]:
    """The mean over seeds at the steps every seed recorded."""
    tables = [dict(zip(c["step"], c["value"], strict=True)) for c in curves if c.get("step")]
    if not tables:
        return [], []
    steps = sorted(set.intersection(*(set(t) for t in tables)))
    return steps, [statistics.fmean(t[s] for t in tables) for s in steps]


def _chart_html(task: dict, key: str, title: str, y_label: str) -> str:
    """One chart (thin per-seed lines, a thick mean line per arm) or a short note when nothing was recorded."""
    thin, thick = [], []
    for arm in task.get("arms", []):
        curves = [c for c in arm.get(key) or [] if c.get("step")]
        base = {"label": arm["label"], "color": arm["color"]}
        thin += [{**base, "x": c["step"], "y": c["value"], "width": 1.0, "opacity": 0.35} for c in curves]
        steps, mean = _mean_curve(curves)
        if steps:
            thick.append({**base, "x": steps, "y": mean, "width": 2.5, "opacity": 1.0})
    try:
        return svg_line_chart(thin + thick, title=title, x_label="fine-tuning step", y_label=y_label)
    except ValueError:
        return f'<p class="note">{html.escape(title)}: no curve was recorded.</p>'


def _data_uri(out_dir: Path, rel: str) -> str:
    path = out_dir / rel
    if not path.is_file():
        raise FileNotFoundError(f"picture grid image not found: {path}")
    mime = _MIME.get(path.suffix.lower(), "image/png")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _grid_html(grid: dict, out_dir: Path) -> str:
    """The picture grid: a header of column names, then one row of embedded tiles per held-out sample."""
    columns = grid.get("columns", [])
    if not grid.get("rows"):
        return '<p class="note">No held-out tiles.</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(grid["rows"]):
        cells = []
        for j, rel in enumerate(row):
            alt = html.escape(f"{columns[j] if j < len(columns) else ''} {i}".strip())
            cells.append(f'<td><img alt="{alt}" src="{_data_uri(out_dir, rel)}"></td>' if rel else "<td></td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="grid"><tr>{head}</tr>{"".join(body)}</table>'


def _results_table_html(results: dict) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _HEADER)
    body = []
    for row in _table_rows(results):
        cells = [f"<td>{html.escape(c)}</td>" for c in row[:3]]
        cells += [f'<td class="num">{html.escape(c)}</td>' for c in row[3:5]]
        cells.append(f'<td class="{row[5]}">{html.escape(row[5])}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_report(results: dict, out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` (self-contained: embedded PNGs, inline SVG charts and CSS) and return its path.

    Grid pictures are read from paths relative to ``out_dir``; a missing one raises FileNotFoundError naming it
    (before anything is written). Tasks without curves get a short note instead of a chart.
    """
    out_dir = Path(out_dir)
    esc = html.escape
    settings, verdict = results.get("settings", {}), results.get("verdict", {})
    seeds = settings.get("seeds", [])
    status = "pass" if verdict.get("passed") else "fail"
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>MTP demo report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>MTP demo: few-label fine-tuning from scratch vs from the MTP-pretrained encoder</h1>",
        f"<p>{esc(settings.get('summary', ''))}</p>",
        f'<div class="banner {status}">{esc(_verdict_line(results))}</div>',
        "<h2>Results</h2>",
        f"<p>Mean ± sample std over {len(seeds)} seed(s) {esc(str(seeds))}; gains are paired per-seed differences"
        " vs scratch: mean ± standard error (σ = mean / SE).</p>",
        _results_table_html(results),
    ]
    for task in results.get("tasks", []):
        metric = task["metric"]
        parts += [
            f"<h2>{esc(task.get('title', task['name']))}</h2>",
            '<p class="note">Thin lines: one per seed; thick lines: mean over seeds.</p><div class="charts">',
            _chart_html(task, "curves", f"Held-out {metric}", metric),
            _chart_html(task, "loss", "Training loss", "loss"),
            "</div><h3>Held-out tiles</h3>",
            _grid_html(task.get("grid", {}), out_dir),
            *(f"<p>{esc(note)}</p>" for note in task.get("notes", [])),
        ]
    pre = results.get("pretraining", {})
    seconds = pre.get("seconds")
    took = f"{seconds:.1f} s" if isinstance(seconds, int | float) else "unknown time"
    origin = "cached, reused" if pre.get("cached") else "run now"
    parts.append(f"<footer>MTP pretraining: {took} ({origin}); encoder: {esc(str(pre.get('encoder', '?')))}</footer>")
    parts.append("</body></html>\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
