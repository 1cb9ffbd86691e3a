"""The linear baseline: logistic / ridge per task over one-hot categoricals and standardised
numerics, regularisation chosen on validation; respects masks; refuses non-tabular data."""

from __future__ import annotations

import numpy as np
import pytest

from polytask.baselines import Linear, fit_baseline, unsupported
from polytask.baselines.linear import ALPHA_GRID, C_GRID
from polytask.data.schema import FeatureSpec
from polytask.tasks import Task


def test_learns_every_kind_on_the_labelled_rows_only(table):
    tasks, splits = table
    row = fit_baseline(Linear(), tasks, splits, seed=0)
    test = row["test"]
    assert test["a"]["auc"] > 0.95  # a linear rule with a one-hot category
    assert test["b"]["auc"] > 0.95  # the opposite rule lives outside `where`: never learnt from
    r_std = float(np.std(splits["test"].labels["r"])) * tasks[2].spec.std
    assert test["r"]["rmse"] < 0.2 * r_std  # linear target, noise 0.1
    assert test["m"]["accuracy"] > 0.8
    assert row["hyperparameters"]["a"]["C"] in C_GRID
    assert row["hyperparameters"]["r"]["alpha"] in ALPHA_GRID


def test_regularisation_is_chosen_on_validation(table):
    """The kept C is the grid value with the best validation AUC (not the test's)."""
    from polytask.baselines.base import task_scores

    tasks, splits = table
    a = tasks[0]
    model = Linear()
    scores = {c: task_scores(a, model.output(model.fit(a, splits["train"], splits["validation"], {"C": c}, 0), a,
                                            splits["validation"]), splits["validation"])["auc"] for c in C_GRID}
    row = fit_baseline(model, [a], splits, seed=0)
    assert row["validation"]["a"]["auc"] == pytest.approx(max(scores.values()))
    assert scores[row["hyperparameters"]["a"]["C"]] == max(scores.values())


def test_same_result_for_the_same_seed(table):
    tasks, splits = table
    assert fit_baseline(Linear(), tasks[:2], splits, seed=1)["test"] == fit_baseline(Linear(), tasks[:2], splits, seed=1)["test"]


def test_non_tabular_inputs_and_tasks_are_named():
    text = [FeatureSpec("x", "numeric"), FeatureSpec("words", "sequence")]
    assert "words (sequence)" in unsupported(text, [Task("a")])
    assert "t (multilabel)" in unsupported([FeatureSpec("x", "numeric")], [Task("t", kind="multilabel", labels=["p", "q"])])
    assert unsupported([FeatureSpec("x", "numeric"), FeatureSpec("c", "categorical")], [Task("a")]) is None
