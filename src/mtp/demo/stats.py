"""Stage 4 of the demo: paired gains over seeds and the 2σ verdict.

For an arm A and the scratch arm S run with the same seeds, the per-seed gain is ``g_s = A_s - S_s`` (same labelled
tiles, same crops and batch order, same new-layer initialisation: only the pretrained weights differ). The reported
gain is ``mean(g)`` and its σ is the standard deviation of that mean, ``sd(g) / sqrt(n)`` (sample sd, ddof 1). An
arm passes when ``mean(g) >= 2 σ`` and ``mean(g) > 0``; with one seed σ is undefined and the arm fails.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0.0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_gain(arm: Sequence[float], scratch: Sequence[float], *, gated: bool) -> dict:
    """Gain of ``arm`` over ``scratch`` (per-seed values in the same seed order); see the module docstring."""
    if len(arm) != len(scratch) or not arm:
        raise ValueError(f"paired gain needs the same non-zero number of seeds, got {len(arm)} and {len(scratch)}")
    per_seed = [float(a) - float(s) for a, s in zip(arm, scratch, strict=True)]
    mean, sd = mean_std(per_seed)
    se = sd / math.sqrt(len(per_seed)) if len(per_seed) > 1 else math.nan
    if len(per_seed) < 2:
        sigmas = math.nan
    elif se > 0:
        sigmas = mean / se
    else:
        sigmas = math.inf if mean > 0 else (0.0 if mean == 0 else -math.inf)
    passed = bool(len(per_seed) > 1 and mean > 0 and sigmas >= 2.0)
    return {"per_seed": per_seed, "mean": mean, "sd": sd, "se": se, "sigmas": sigmas, "gated": gated,
            "passed": passed}  # fmt: skip


def verdict(tasks: Sequence[dict]) -> dict:
    """``{"passed", "reason"}`` over every gated gain of every task (``task["gains"]`` as from :func:`paired_gain`
    plus ``"arm"``); passes only if there is at least one gated gain and all gated gains pass."""
    gated = [(t, g) for t in tasks for g in t["gains"] if g["gated"]]
    if not gated:
        return {"passed": False, "reason": "no gated comparison was run"}
    parts = [
        f"{t['name']}: {g['arm']} {g['mean']:+.3f} {t['metric']} = {g['sigmas']:.1f}σ "
        f"({'≥' if g['passed'] else 'below'} 2σ)"
        for t, g in gated
    ]
    return {"passed": all(g["passed"] for _, g in gated), "reason": "; ".join(parts)}
