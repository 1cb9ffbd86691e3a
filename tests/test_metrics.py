"""Per-task metrics against scikit-learn on random data (with and without masks), and Delta-m."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, log_loss, mean_absolute_error, mean_squared_error, roc_auc_score

from polytask.metrics import compute_metrics, delta_m, higher_is_better, task_metrics
from polytask.tasks import Task

N = 400


def _mask(rng: np.random.Generator, n: int = N, p: float = 0.6) -> np.ndarray:
    return rng.random(n) < p


@pytest.mark.parametrize("masked", [False, True])
def test_binary_metrics_match_sklearn(masked):
    rng = np.random.default_rng(1)
    y = (rng.random(N) < 0.3).astype(np.float32)
    logits = (rng.normal(size=N) + 1.5 * y).astype(np.float32)
    logits[:40] = np.round(logits[:40])  # some ties
    mask = _mask(rng) if masked else np.ones(N, dtype=bool)
    res = task_metrics(Task("b", "binary"), torch.from_numpy(logits), torch.from_numpy(y), torch.from_numpy(mask))
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    assert res["count"] == int(mask.sum())
    assert res["auc"] == pytest.approx(roc_auc_score(y[mask], p[mask]), abs=1e-6)
    assert res["logloss"] == pytest.approx(log_loss(y[mask], p[mask]), rel=1e-5)


def test_masked_rows_do_not_count():
    """Garbage (even NaN) in unlabelled rows must not change any metric."""
    rng = np.random.default_rng(2)
    y = (rng.random(N) < 0.5).astype(np.float32)
    logits = rng.normal(size=N).astype(np.float32)
    mask = _mask(rng)
    dirty_logits, dirty_y = logits.copy(), y.copy()
    dirty_logits[~mask] = np.nan
    dirty_y[~mask] = 7.0
    task = Task("b", "binary")
    clean = task_metrics(task, torch.from_numpy(logits[mask]), torch.from_numpy(y[mask]), torch.ones(int(mask.sum()), dtype=torch.bool))
    dirty = task_metrics(task, torch.from_numpy(dirty_logits), torch.from_numpy(dirty_y), torch.from_numpy(mask))
    assert dirty == pytest.approx(clean)


@pytest.mark.parametrize("masked", [False, True])
def test_regression_metrics_match_sklearn(masked):
    rng = np.random.default_rng(3)
    y = rng.normal(size=N).astype(np.float32) * 3
    out = (y + rng.normal(size=N)).astype(np.float32)
    mask = _mask(rng) if masked else np.ones(N, dtype=bool)
    res = task_metrics(Task("r", "regression"), torch.from_numpy(out), torch.from_numpy(y), torch.from_numpy(mask))
    assert res["count"] == int(mask.sum())
    assert res["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y[mask], out[mask])), rel=1e-5)
    assert res["mae"] == pytest.approx(mean_absolute_error(y[mask], out[mask]), rel=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_multiclass_metrics_match_sklearn(masked):
    rng = np.random.default_rng(4)
    c = 5
    y = rng.integers(0, c, size=N)
    logits = rng.normal(size=(N, c)).astype(np.float32)
    logits[np.arange(N), y] += 1.0  # better than chance, not perfect
    mask = _mask(rng) if masked else np.ones(N, dtype=bool)
    task = Task("m", "multiclass", num_classes=c)
    res = task_metrics(task, torch.from_numpy(logits), torch.from_numpy(y), torch.from_numpy(mask))
    pred = logits.argmax(1)
    assert res["accuracy"] == pytest.approx(accuracy_score(y[mask], pred[mask]), abs=1e-6)
    assert res["macro_f1"] == pytest.approx(f1_score(y[mask], pred[mask], average="macro"), abs=1e-6)


def test_macro_f1_with_a_class_absent_matches_sklearn():
    """Class 3 appears in neither labels nor predictions; class 2 only in predictions."""
    y = np.array([0, 0, 1, 1, 1, 0])
    pred = np.array([0, 1, 1, 2, 1, 0])
    logits = np.full((6, 4), -1.0, dtype=np.float32)
    logits[np.arange(6), pred] = 1.0
    res = task_metrics(Task("m", "multiclass", num_classes=4), torch.from_numpy(logits), torch.from_numpy(y),
                       torch.ones(6, dtype=torch.bool))
    assert res["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-6)
    assert res["accuracy"] == pytest.approx(4 / 6, abs=1e-6)


def test_auc_known_answer():
    # positives score 0.9, 0.4; negatives 0.5, 0.1: of the 4 pairs, 3 are ordered right
    p = torch.tensor([0.9, 0.4, 0.5, 0.1])
    res = task_metrics(Task("b", "binary"), torch.logit(p), torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.ones(4, dtype=torch.bool))
    assert res["auc"] == pytest.approx(0.75)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_auc_with_one_class_is_nan_not_a_crash(value):
    out = torch.randn(10)
    res = task_metrics(Task("b", "binary"), out, torch.full((10,), value), torch.ones(10, dtype=torch.bool))
    assert math.isnan(res["auc"])
    assert math.isfinite(res["logloss"])


def test_auc_nan_when_mask_leaves_one_class():
    lab = torch.tensor([1.0, 0.0, 1.0, 0.0])
    mask = torch.tensor([True, False, True, False])
    res = task_metrics(Task("b", "binary"), torch.randn(4), lab, mask)
    assert math.isnan(res["auc"]) and res["count"] == 2


def test_no_labelled_rows_gives_nan_and_zero_count():
    res = task_metrics(Task("r", "regression"), torch.randn(5), torch.randn(5), torch.zeros(5, dtype=torch.bool))
    assert res["count"] == 0
    assert math.isnan(res["rmse"]) and math.isnan(res["mae"])


def test_compute_metrics_per_task():
    tasks = [Task("a", "binary"), Task("r", "regression")]
    outputs = {"a": torch.tensor([2.0, -2.0]), "r": torch.tensor([1.0, 3.0])}
    labels = {"a": torch.tensor([1.0, 0.0]), "r": torch.tensor([1.0, 1.0])}
    masks = {"a": torch.ones(2, dtype=torch.bool), "r": torch.tensor([False, True])}
    res = compute_metrics(tasks, outputs, labels, masks)
    assert set(res) == {"a", "r"}
    assert res["a"]["auc"] == 1.0
    assert res["r"]["rmse"] == pytest.approx(2.0) and res["r"]["count"] == 1


# -- Delta-m ------------------------------------------------------------------------------------
def test_higher_is_better_table():
    assert higher_is_better("auc") and higher_is_better("accuracy") and higher_is_better("macro_f1")
    assert not any(higher_is_better(m) for m in ("logloss", "rmse", "mae", "loss"))
    assert higher_is_better("auc", Task("b")) and not higher_is_better("rmse", Task("r", "regression"))


def test_delta_m_higher_is_better_metric():
    # +10% relative on AUC -> Delta-m = +10 (positive = better, the documented convention)
    assert delta_m({"a": {"auc": 0.88}}, {"a": {"auc": 0.8}}) == pytest.approx(10.0)
    assert delta_m({"a": {"auc": 0.72}}, {"a": {"auc": 0.8}}) == pytest.approx(-10.0)


def test_delta_m_lower_is_better_metric():
    # RMSE falls from 2.0 to 1.5: a 25% improvement -> +25
    assert delta_m({"r": {"rmse": 1.5}}, {"r": {"rmse": 2.0}}) == pytest.approx(25.0)
    assert delta_m({"r": {"rmse": 2.5}}, {"r": {"rmse": 2.0}}) == pytest.approx(-25.0)


def test_delta_m_averages_within_task_first():
    base = {"a": {"auc": 0.5, "logloss": 0.5}, "r": {"rmse": 1.0}}
    method = {"a": {"auc": 0.6, "logloss": 0.4}, "r": {"rmse": 1.1}}
    # task a: (+20% + +20%) / 2 = +20; task r: -10; mean over tasks = +5
    # (a flat mean over the three metrics would give (20 + 20 - 10) / 3 = 10)
    assert delta_m(method, base) == pytest.approx(5.0)


def test_delta_m_ignores_count_and_non_task_entries_and_metric_selection():
    base = {"a": {"auc": 0.5, "logloss": 0.5, "count": 100}, "loss": 0.7}
    method = {"a": {"auc": 0.6, "logloss": 0.6, "count": 100}, "loss": 0.1}
    assert delta_m(method, base) == pytest.approx(0.0)  # +20 and -20, count and loss ignored
    assert delta_m(method, base, metrics={"a": ["auc"]}) == pytest.approx(20.0)
    assert delta_m(method, base, metrics={"a": ["logloss"]}) == pytest.approx(-20.0)


def test_delta_m_identical_is_zero_and_nan_metrics_skipped():
    base = {"a": {"auc": 0.7, "logloss": 0.4}, "b": {"auc": float("nan")}}
    assert delta_m(base, base) == pytest.approx(0.0)
    method = {"a": {"auc": 0.77, "logloss": 0.4}, "b": {"auc": 0.9}}
    assert delta_m(method, base) == pytest.approx(5.0)  # task b has no usable metric and is left out
    assert math.isnan(delta_m({"a": {"auc": float("nan")}}, {"a": {"auc": 0.5}}))
