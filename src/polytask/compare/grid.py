"""Train models over seeds in this process and collect one comparison row per run (used by the
benchmarks and ``polytask demo``; ``polytask compare`` runs its cells through :mod:`.job`)."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


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


def run_row(label: str, seed: int, run: Any) -> dict[str, Any]:
    """The comparison row of a trained :class:`~polytask.run.Run`: its validation score (the
    config's ``train.monitor``), validation and test metrics, best epoch, size and speed."""
    from polytask.train.trainer import parse_monitor

    monitor = parse_monitor(run.config.train.monitor, run.tasks, run.model.loss_task_names())
    val = run.metrics.get("validation", {})
    first = run.history[0].get("initial_validation_loss") if run.history else None  # relative_loss
    try:
        score = monitor.score(val, first)
    except (KeyError, TypeError):
        score = float("nan")
    epochs = run.history
    return {
        "model": label,
        "seed": seed,
        "validation_score": score,
        "higher_is_better": monitor.higher_is_better,
        "best_epoch": run.metrics.get("best_epoch"),
        "epochs": len(epochs),
        "seconds_per_epoch": sum(r.get("train_seconds", 0.0) for r in epochs) / max(len(epochs), 1),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "validation": val,
        "test": run.metrics.get("test", {}),
    }


def _slug(label: str) -> str:
    """A label as a folder name: letters, digits, ``.``, ``_`` and ``-`` kept, the rest ``_``."""
    return re.sub(r"[^\w.-]+", "_", label).strip("_") or "run"


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
    out: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Train every model (label -> config overrides, merged into ``base``) with every seed.

    ``seed_keys`` are the config keys set to the seed (add ``data.params.seed`` to regenerate
    synthetic data per seed). ``search`` is a tuning budget shared by all models: each candidate
    override is trained for every (model, seed) and the one with the best *validation* score
    (the config's ``train.monitor``) is kept; its test metrics are the result. Returns one row per
    (model, seed): label, seed, chosen candidate, validation and test metrics, best epoch, seconds
    per epoch. ``callbacks`` go to each run's trainer (called after every epoch). With ``out``, the
    kept run of each (model, seed) is saved as ``<out>/<label>-seed<k>`` (replacing a run there;
    the row's ``directory``), e.g. for ``polytask report``.
    """
    from polytask.api import fit

    rows = []
    for label, override in models.items():
        for seed in seeds:
            best: dict[str, Any] | None = None
            for candidate in search:
                cfg = merge(merge(base, override), candidate)
                for key in seed_keys:
                    _set(cfg, key, seed)
                run = fit(cfg, data_dir=data_dir, callbacks=list(callbacks))
                row = {**run_row(label, seed, run), "candidate": dict(candidate)}
                higher = row.pop("higher_is_better")
                score = row["validation_score"]
                key_score = -score if higher else score
                if best is None or (key_score == key_score and not key_score >= best["_key"]):
                    best = {**row, "_key": key_score, "_run": run}
            assert best is not None
            best.pop("_key")
            kept = best.pop("_run")
            if out is not None:
                directory = Path(out) / f"{_slug(label)}-seed{seed}"
                kept.save(directory, overwrite=True)
                best["directory"] = str(directory)
            rows.append(best)
            if on_result is not None:
                on_result(best)
    return rows
