"""LightGBM per task: learns easy rules, respects masks (labels missing or outside ``where``), is
deterministic per seed, and tunes on validation."""

from __future__ import annotations

import numpy as np

from polytask.baselines import GBDT, fit_baseline
from polytask.baselines.base import labelled


def test_learns_every_kind_on_the_labelled_rows_only(table):
    tasks, splits = table
    row = fit_baseline(GBDT(), tasks, splits, seed=0)
    test = row["test"]
    assert test["a"]["auc"] > 0.95
    # b's rows outside `where` hold the opposite rule: learning from them would pull AUC to ~0.5
    assert test["b"]["auc"] > 0.95
    assert test["b"]["count"] == len(labelled(tasks[1], splits["test"]))
    assert test["b"]["count"] < splits["test"].num_rows * 0.6  # where g == 1 and labelled only
    r_std = float(np.std(splits["test"].labels["r"])) * tasks[2].spec.std  # the target's own units
    assert test["r"]["rmse"] < 0.5 * r_std
    assert test["m"]["accuracy"] > 0.9
    assert row["fitted"]["a"]["rounds"] >= 1  # early stopping on validation chose the rounds


def test_mask_is_what_keeps_the_misleading_rows_out(table, load_tasks):
    """The same fit on training rows whose mask ignores b's `where` (every labelled row) is misled,
    scored on the same validation and test rows: the check above passes for the right reason."""
    tasks, splits = table
    _, unmasked = load_tasks([{"name": "b"}])  # same seeded split, no sample space
    assert unmasked["train"].masks["b"].sum() > 1.5 * splits["train"].masks["b"].sum()
    row = fit_baseline(GBDT(), [tasks[1]], {**splits, "train": unmasked["train"]}, seed=0)
    assert row["test"]["b"]["auc"] < 0.8


def test_deterministic_per_seed(table):
    tasks, splits = table
    one = fit_baseline(GBDT(), tasks[:1], splits, seed=3)
    two = fit_baseline(GBDT(), tasks[:1], splits, seed=3)
    assert one["test"] == two["test"]


def test_tune_runs_the_trials_and_keeps_the_best_on_validation(table):
    tasks, splits = table
    row = fit_baseline(GBDT(), tasks[:1], splits, seed=0, tune=3)
    trials = row["tuning"]["a"]["trials"]
    assert len(trials) == 3
    best = max(trials, key=lambda t: t["validation_score"])
    assert row["hyperparameters"]["a"] == best["values"]
    assert set(best["values"]) == {"num_leaves", "learning_rate", "min_child_samples"}
    assert row["validation"]["a"]["auc"] == best["validation_score"]
