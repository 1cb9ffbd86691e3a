"""Regression targets: standardised on the training split for the loss, raw units outside it
(predictions and metrics), saved with the task, and old runs without the state unchanged."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec
from polytask.metrics import task_metrics
from polytask.tasks import Task
from polytask.tasks.regression import mae, rmse

Y = np.array([100.0, 300.0, np.nan, 500.0, 700.0])
TABLE = pa.table({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": Y})


def fitted(**options) -> Preprocessor:
    return Preprocessor([FeatureSpec("x")], [Task("y", "regression", **options)]).fit(TABLE, "t")


def test_fit_learns_mean_and_std_of_the_labelled_training_values():
    task = fitted().tasks[0]
    seen = Y[~np.isnan(Y)]
    assert task.spec.mean == pytest.approx(seen.mean()) and task.spec.std == pytest.approx(seen.std())
    table = fitted().transform(TABLE, "t")
    lab, mask = table.labels["y"], table.masks["y"]
    assert mask.tolist() == [True, True, False, True, True]
    np.testing.assert_allclose(lab[mask].numpy(), (seen - seen.mean()) / seen.std(), rtol=1e-6)
    assert lab[~mask].tolist() == [0.0]


def test_standardize_false_keeps_raw_units():
    pre = fitted(standardize=False)
    assert pre.tasks[0].spec.mean is None
    lab = pre.transform(TABLE, "t").labels["y"]
    assert lab.tolist() == [100.0, 300.0, 0.0, 500.0, 700.0]


def test_predict_and_metrics_are_in_raw_units():
    task = fitted().tasks[0]
    mean, std = task.spec.mean, task.spec.std
    raw_label = torch.tensor([100.0, 300.0, 500.0, 700.0])
    raw_out = torch.tensor([110.0, 280.0, 520.0, 650.0])
    out_std, lab_std = (raw_out - mean) / std, (raw_label - mean) / std
    torch.testing.assert_close(task.predict(out_std), raw_out, rtol=1e-5, atol=1e-3)
    got = task_metrics(task, out_std, lab_std, torch.ones(4, dtype=torch.bool))
    assert got["rmse"] == pytest.approx(rmse(raw_out, raw_label), rel=1e-5)
    assert got["mae"] == pytest.approx(mae(raw_out, raw_label), rel=1e-5)
    # the loss is in standard units: a raw error of one std costs 1
    one_std = task.loss(lab_std + 1.0, lab_std, torch.ones(4, dtype=torch.bool))
    assert float(one_std) == pytest.approx(1.0, rel=1e-5)


def test_state_is_saved_with_the_task_and_reloads():
    pre = fitted()
    again = Preprocessor.from_dict(pre.to_dict())
    assert again.tasks[0].spec.mean == pre.tasks[0].spec.mean and again.tasks[0].spec.std == pre.tasks[0].spec.std
    np.testing.assert_array_equal(again.transform(TABLE, "t").labels["y"].numpy(), pre.transform(TABLE, "t").labels["y"].numpy())


def test_a_run_saved_before_standardisation_behaves_as_before():
    old = Task(**{"name": "y", "kind": "regression", "label": "y", "weight": 1.0})  # no mean/std saved
    assert old.spec.mean is None
    out = torch.tensor([3.0, 4.0])
    assert old.predict(out).tolist() == [3.0, 4.0]
    pre = Preprocessor.from_dict({"features": [{"spec": FeatureSpec("x").to_dict(), "state": {"center": 0.0, "scale": 1.0, "fill": 0.0, "indicator": False}}],
                                  "tasks": [old.to_dict()]})
    assert pre.transform(TABLE, "t").labels["y"].tolist() == [100.0, 300.0, 0.0, 500.0, 700.0]


def test_constant_target_gets_unit_scale():
    pre = Preprocessor([FeatureSpec("x")], [Task("y", "regression")]).fit(pa.table({"x": [1.0, 2.0], "y": [5.0, 5.0]}), "t")
    assert pre.tasks[0].spec.std == 1.0
    with pytest.raises(ValueError, match="std must be > 0"):
        Task("y", "regression", mean=0.0, std=0.0)
