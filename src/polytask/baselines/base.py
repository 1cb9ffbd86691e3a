"""What every baseline shares: one model per task, fitted on that task's labelled training rows,
its hyperparameters chosen on the validation split only, scored with the task kind's own metric
functions (the numbers a neural run reports for that task, from the same rows).

A baseline's raw output has the form the kind's metrics expect of a model: a logit for a binary
task, log-probabilities ``[N, C]`` for a multiclass one, a value in the target's standard units
for a regression one (the kind maps it back to the target's units, as it does for a network).
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import numpy as np

from polytask.baselines.data import TabularSplit
from polytask.tuning import Param


class Baseline:
    """A per-task model family. Subclasses set ``name`` and implement :meth:`space`,
    :meth:`candidates`, :meth:`fit` and :meth:`output`."""

    name: ClassVar[str]

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def space(self, task: Any) -> dict[str, Param]:
        """The hyperparameters ``--tune`` searches for ``task``."""
        raise NotImplementedError

    def candidates(self, task: Any) -> list[dict[str, Any]]:
        """The hyperparameters tried without ``--tune`` (the best on validation is kept)."""
        return [{}]

    def fit(self, task: Any, train: TabularSplit, validation: TabularSplit, params: dict[str, Any], seed: int) -> Any:
        """A model of ``task`` fitted on the labelled rows of ``train`` (``validation``'s labelled
        rows may steer early stopping, never the fit itself)."""
        raise NotImplementedError

    def output(self, model: Any, task: Any, split: TabularSplit) -> np.ndarray:
        """The raw output for every row of ``split`` (see the module docstring)."""
        raise NotImplementedError

    def describe(self, model: Any) -> dict[str, Any]:
        """What the fit decided beyond the given hyperparameters (e.g. the boosting rounds early
        stopping kept), recorded beside them."""
        return {}


def labelled(task: Any, split: TabularSplit) -> np.ndarray:
    """Indices of the rows of ``split`` that count for ``task`` (label present, inside ``where``)."""
    return np.flatnonzero(split.masks[task.name])


def task_scores(task: Any, output: np.ndarray, split: TabularSplit) -> dict[str, float]:
    """Every metric of ``task`` on ``split`` (its labelled rows only), as a neural run reports them."""
    import torch

    from polytask.metrics import task_metrics

    return task_metrics(task, torch.from_numpy(np.ascontiguousarray(output)).float(),
                        torch.from_numpy(split.labels[task.name]), torch.from_numpy(split.masks[task.name]))


def primary(task: Any) -> tuple[str, bool]:
    """The task kind's first metric (what a baseline is selected on) and its direction."""
    metric = task.spec.metrics()[0]
    return metric.name, metric.higher_is_better


def fit_baseline(
    baseline: Baseline,
    tasks: list[Any],
    splits: dict[str, TabularSplit],
    seed: int,
    *,
    tune: int = 0,
    fixed: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Fit ``baseline`` on every task and score it; a row in the form of
    :func:`polytask.compare.run_grid`'s (``validation``/``test`` metrics per task), plus the chosen
    hyperparameters per task, what each fit decided itself (``fitted``: boosting rounds) and, with
    ``tune`` > 0, every trial's validation score. ``fixed`` (``{task: hyperparameters}``, e.g. those
    a search on another seed chose) skips the choice."""
    from polytask.tuning import tune as search

    start = time.perf_counter()
    row: dict[str, Any] = {"model": baseline.name, "seed": seed, "validation": {}, "test": {},
                           "parameters": None, "seconds_per_epoch": None, "hyperparameters": {}, "fitted": {}}
    if tune:
        row["tuning"] = {}
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    for task in tasks:
        metric, higher = primary(task)

        def score(params: dict[str, Any], task: Any = task, metric: str = metric) -> tuple[float, Any]:
            model = baseline.fit(task, train, validation, params, seed)
            return task_scores(task, baseline.output(model, task, validation), validation)[metric], model

        if fixed is not None:
            chosen = dict(fixed[task.name])
            _, model = score(chosen)
        elif tune:
            result = search(lambda values: score(values)[0], baseline.space(task), tune, higher_is_better=higher,
                            seed=seed)
            chosen = result.best
            row["tuning"][task.name] = result.to_dict()
            _, model = score(chosen)
        else:
            best: tuple[float, dict[str, Any], Any] | None = None
            for params in baseline.candidates(task):
                value, model = score(params)
                better = best is None or (math.isfinite(value) and not math.isfinite(best[0])) or (
                    math.isfinite(value) and (value > best[0] if higher else value < best[0]))
                if better:
                    best = (value, params, model)
            assert best is not None
            _, chosen, model = best
        row["hyperparameters"][task.name] = chosen
        row["fitted"][task.name] = baseline.describe(model)
        row["validation"][task.name] = task_scores(task, baseline.output(model, task, validation), validation)
        row["test"][task.name] = task_scores(task, baseline.output(model, task, test), test)  # read once, at the end
    row["seconds"] = time.perf_counter() - start
    return row
