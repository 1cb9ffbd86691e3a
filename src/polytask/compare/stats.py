"""Statistics of a comparison over seeds: Student-t intervals of every mean, and Delta-m against the
single-task baseline paired by seed (a difference is *within noise* when the 95% interval of its
per-seed values includes 0)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from polytask.metrics import delta_m


#: the reference every cell is compared with; added to the grid when not asked for
SINGLE_TASK = "single_task"
#: confidence level of every interval
LEVEL = 0.95


def confidence_interval(values: Sequence[float], level: float = LEVEL) -> dict[str, float]:
    """``{mean, std, n, ci, low, high}`` of ``values`` (None/NaN left out): ``ci`` is the
    half-width of the Student-t interval of the mean, ``t_{(1+level)/2, n-1} * std / sqrt(n)``
    (NaN with fewer than 2 values)."""
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    n = len(kept)
    if n == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "n": 0, "ci": nan, "low": nan, "high": nan}
    mean = statistics.fmean(kept)
    std = statistics.stdev(kept) if n > 1 else 0.0
    half = t_quantile((1 + level) / 2, n - 1) * std / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": mean, "std": std, "n": n, "ci": half, "low": mean - half, "high": mean + half}


#: t_{0.975, df} for df = 1..30 (the 95% two-sided quantile), for installs without scipy
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788, 2.1604,
         2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555,
         2.0518, 2.0484, 2.0452, 2.0423)


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (scipy's; without scipy,
    a table for p = 0.975 and df <= 30, else the Cornish-Fisher expansion around the normal)."""
    try:
        from scipy.stats import t
    except ImportError:
        if p == 0.975 and df <= len(_T975):
            return _T975[df - 1]
        z = statistics.NormalDist().inv_cdf(p)
        return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    return float(t.ppf(p, df))


def within_noise(interval: Mapping[str, float]) -> bool | None:
    """Whether a paired difference's interval includes 0 (None: too few seeds to say)."""
    if interval["n"] < 2 or math.isnan(interval["ci"]):
        return None
    return bool(interval["low"] <= 0.0 <= interval["high"])


def summarize(
    rows: Sequence[Mapping[str, Any]],
    tasks: Sequence[str],
    metrics: Mapping[str, Sequence[str]],
    *,
    baseline: str | None = "single_task",
    split: str = "test",
    delta_metrics: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per model: ``{task: {metric: {mean, std, n, ci, low, high}}}``, ``delta_m`` (vs
    ``baseline``, paired by seed, over ``delta_metrics``, default ``metrics``) with its interval
    and ``within_noise``, ``parameters`` and ``seconds_per_epoch``.

    With a baseline, every metric also gets ``vs_baseline``: the interval of the per-seed
    difference (model - baseline, same seed) and ``within_noise`` (that interval includes 0; None
    with fewer than 2 paired seeds); ``better`` says whether the mean difference goes the metric's
    good way."""
    from polytask.metrics import known_directions

    directions = known_directions()
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    base_by_seed = {r["seed"]: r[split] for r in by_model.get(baseline, [])} if baseline else {}
    out: dict[str, dict[str, Any]] = {}
    for label, runs in by_model.items():
        entry: dict[str, Any] = {}
        paired = [r for r in runs if r["seed"] in base_by_seed]
        for t in tasks:
            entry[t] = {}
            for m in metrics[t]:
                stats = confidence_interval([_metric(r[split], t, m) for r in runs])
                if base_by_seed and label != baseline:
                    diff = confidence_interval([_metric(r[split], t, m) - _metric(base_by_seed[r["seed"]], t, m) for r in paired])
                    up = directions.get(m)
                    stats["vs_baseline"] = {
                        **diff, "within_noise": within_noise(diff),
                        "better": None if up is None or math.isnan(diff["mean"]) else bool((diff["mean"] > 0) == up),
                    }
                entry[t][m] = stats
        deltas = [delta_m(r[split], base_by_seed[r["seed"]], delta_metrics or metrics) for r in paired]
        entry["delta_m"] = confidence_interval(deltas)
        entry["delta_m"]["within_noise"] = within_noise(entry["delta_m"])
        entry["parameters"] = runs[0].get("parameters")
        entry["seconds_per_epoch"] = confidence_interval([r.get("seconds_per_epoch") for r in runs])
        out[label] = entry
    return out


def _metric(per_task: Mapping[str, Any], task: str, metric: str) -> float:
    value = per_task.get(task, {}).get(metric)
    return float("nan") if value is None else float(value)
