"""Compare models over several seeds: mean and std of every test metric, and Delta-m against the
single-task baseline. Used by the benchmarks and ``polytask demo``.

Each (model, seed) run selects its epoch on the validation split; only its final test metrics
enter the comparison. Delta-m is computed per seed against the baseline's run with the same seed
(same data and split), then averaged.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from polytask.metrics import delta_m


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    *head, last = dotted.split(".")
    for part in head:
        d = d.setdefault(part, {})
    d[last] = value


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``update`` wins)."""
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def run_grid(
    base: Mapping[str, Any],
    models: Mapping[str, Mapping[str, Any]],
    seeds: Sequence[int],
    *,
    seed_keys: Sequence[str] = ("train.seed",),
    data_dir: str | os.PathLike | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    callbacks: Sequence[Callable[..., None]] = (),
    search: Sequence[Mapping[str, Any]] = ({},),
) -> list[dict[str, Any]]:
    """Train every model (label -> config overrides, merged into ``base``) with every seed.

    ``seed_keys`` are the config keys set to the seed (add ``data.params.seed`` to regenerate
    synthetic data per seed). ``search`` is a tuning budget shared by all models: each candidate
    override is trained for every (model, seed) and the one with the best *validation* score
    (the config's ``train.monitor``) is kept; its test metrics are the result. Returns one row per
    (model, seed): label, seed, chosen candidate, validation and test metrics, best epoch, seconds
    per epoch. ``callbacks`` go to each run's trainer (called after every epoch).
    """
    from polytask.api import fit
    from polytask.train.trainer import parse_monitor

    rows = []
    for label, override in models.items():
        for seed in seeds:
            best: dict[str, Any] | None = None
            for candidate in search:
                cfg = merge(merge(base, override), candidate)
                for key in seed_keys:
                    _set(cfg, key, seed)
                run = fit(cfg, data_dir=data_dir, callbacks=list(callbacks))
                monitor = parse_monitor(run.config.train.monitor, run.tasks, run.model.loss_task_names())
                higher = monitor.higher_is_better
                val = run.metrics.get("validation", {})
                first = run.history[0].get("initial_validation_loss") if run.history else None  # relative_loss
                try:
                    score = monitor.score(val, first)
                except (KeyError, TypeError):
                    score = float("nan")
                key_score = -score if higher else score
                epochs = run.history
                row = {
                    "model": label,
                    "seed": seed,
                    "candidate": dict(candidate),
                    "validation_score": score,
                    "best_epoch": run.metrics.get("best_epoch"),
                    "epochs": len(epochs),
                    "seconds_per_epoch": sum(r["train_seconds"] for r in epochs) / max(len(epochs), 1),
                    "parameters": sum(p.numel() for p in run.model.parameters()),
                    "validation": val,
                    "test": run.metrics.get("test", {}),
                }
                if best is None or (key_score == key_score and not key_score >= best["_key"]):
                    best = {**row, "_key": key_score}
            assert best is not None
            best.pop("_key")
            rows.append(best)
            if on_result is not None:
                on_result(best)
    return rows


def _stats(values: list[float]) -> dict[str, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def summarize(
    rows: Sequence[Mapping[str, Any]],
    tasks: Sequence[str],
    metrics: Mapping[str, Sequence[str]],
    *,
    baseline: str | None = "single_task",
    split: str = "test",
) -> dict[str, dict[str, Any]]:
    """Per model: ``{task: {metric: {mean, std, n}}}``, ``delta_m`` (vs ``baseline``, paired by
    seed, over the given ``metrics``), ``parameters`` and ``seconds_per_epoch``."""
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    base_by_seed = {r["seed"]: r[split] for r in by_model.get(baseline, [])} if baseline else {}
    out: dict[str, dict[str, Any]] = {}
    for label, runs in by_model.items():
        entry: dict[str, Any] = {
            t: {m: _stats([r[split][t][m] for r in runs]) for m in metrics[t]} for t in tasks
        }
        deltas = [delta_m(r[split], base_by_seed[r["seed"]], metrics) for r in runs if r["seed"] in base_by_seed]
        entry["delta_m"] = _stats(deltas)
        entry["parameters"] = runs[0]["parameters"]
        entry["seconds_per_epoch"] = _stats([r["seconds_per_epoch"] for r in runs])
        out[label] = entry
    return out


def markdown_table(
    summary: Mapping[str, Mapping[str, Any]],
    tasks: Sequence[str],
    metrics: Mapping[str, Sequence[str]],
    *,
    digits: int = 4,
    extra: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """A markdown table: one row per model, ``mean ± std`` per task metric, Delta-m, parameters."""
    extra_cols = sorted({c for cols in (extra or {}).values() for c in cols})
    header = ["model"] + [f"{t} {m}" for t in tasks for m in metrics[t]] + ["Δm % (vs STL)", "params"] + extra_cols
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, entry in summary.items():
        cells = [label]
        for t in tasks:
            for m in metrics[t]:
                s = entry[t][m]
                cells.append(f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}")
        d = entry["delta_m"]
        cells.append("—" if d["n"] == 0 else f"{d['mean']:+.2f} ± {d['std']:.2f}")
        cells.append(f"{entry['parameters']:,}")
        cells += [(extra or {}).get(label, {}).get(c, "") for c in extra_cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
