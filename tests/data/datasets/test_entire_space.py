"""Tests of the entire-space click -> conversion simulator and its truth-based metrics."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

import polytask
from polytask.analysis.entire_space import auc, entire_space_metrics
from polytask.data.datasets.base import DatasetBundle
from polytask.data.datasets.entire_space import CATEGORICAL, NUMERIC, TRUTH_COLUMNS, entire_space
from polytask.errors import ConfigError
from polytask.registry import DATASETS


@pytest.fixture(scope="module")
def default() -> DatasetBundle:
    return entire_space()  # 200,000 / 50,000 / 50,000 rows, seed 0


def _np(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).to_numpy()


def _bias_ratio(table: pa.Table) -> float:
    click = _np(table, "click").astype(bool)
    p_cvr = _np(table, "p_cvr")
    return float(p_cvr[click].mean() / p_cvr.mean())


def test_sizes_columns_features_and_tasks(default: DatasetBundle) -> None:
    assert (default.train.num_rows, default.validation.num_rows, default.test.num_rows) == (200_000, 50_000, 50_000)
    assert default.features == {"numeric": list(NUMERIC), "categorical": list(CATEGORICAL)}
    features = {c for cols in default.features.values() for c in cols}
    assert not features & set(TRUTH_COLUMNS)
    assert not features & {"click", "purchase", "ctcvr"}
    assert default.tasks == [
        {"name": "ctr", "kind": "binary", "label": "click"},
        {"name": "cvr", "kind": "binary", "label": "purchase", "where": "click == 1"},
        {"name": "ctcvr", "kind": "binary", "label": "ctcvr"},
    ]
    for t in (default.train, default.validation, default.test):
        assert t.column_names == [*CATEGORICAL, *NUMERIC, "click", "purchase", "ctcvr", *TRUTH_COLUMNS]
        assert all(t.schema.field(c).type == pa.int32() for c in CATEGORICAL)
        assert all(t.schema.field(c).type == pa.float32() for c in NUMERIC)
        assert all(t.schema.field(c).type == pa.int8() for c in ("click", "purchase", "ctcvr", "conversion_if_clicked"))
        assert all(t.schema.field(c).type == pa.float64() for c in ("p_click", "p_cvr", "p_ctcvr"))
    assert "selection bias" in default.notes and "not features" in default.notes


def test_label_identities(default: DatasetBundle) -> None:
    for t in (default.train, default.validation, default.test):
        click, converted = _np(t, "click"), _np(t, "conversion_if_clicked")
        np.testing.assert_array_equal(_np(t, "purchase"), click * converted)
        np.testing.assert_array_equal(_np(t, "ctcvr"), _np(t, "purchase"))
        np.testing.assert_allclose(_np(t, "p_ctcvr"), _np(t, "p_click") * _np(t, "p_cvr"), rtol=1e-12)
        for p in ("p_click", "p_cvr"):
            assert ((_np(t, p) > 0) & (_np(t, p) < 1)).all()
        pos = _np(t, "position")
        assert set(np.unique(pos)) == set(range(1, 11))
        # conversion outcomes exist for unclicked impressions too (entire space)
        assert converted[click == 0].sum() > 0


def test_rates_within_the_stated_ranges(default: DatasetBundle) -> None:
    for t in (default.train, default.validation, default.test):
        click = _np(t, "click").astype(bool)
        assert 0.05 <= click.mean() <= 0.10
        assert abs(click.mean() - 0.07) < 0.004  # the intercept is solved for click_rate=0.07
        cvr = _np(t, "purchase")[click].mean()
        assert 0.05 <= cvr <= 0.20 and abs(cvr - 0.10) < 0.012
        # the truth agrees with the draws
        assert abs(_np(t, "p_click").mean() - click.mean()) < 0.004
    b = entire_space(rows=50_000, click_rate=0.05, cvr_rate=0.2, seed=3)
    click = _np(b.train, "click").astype(bool)
    assert abs(click.mean() - 0.05) < 0.004 and abs(_np(b.train, "purchase")[click].mean() - 0.2) < 0.03


def test_selection_bias_is_real(default: DatasetBundle) -> None:
    # clicked impressions convert better than impressions at large: seed 0 measures 1.29 (train)
    ratio = _bias_ratio(default.train)
    assert ratio > 1.2
    assert _bias_ratio(default.test) > 1.2
    # a CVR estimated on clicked rows (their empirical conversion rate) overstates the entire-space CVR
    click = _np(default.train, "click").astype(bool)
    assert _np(default.train, "purchase")[click].mean() / _np(default.train, "p_cvr").mean() > 1.2
    # ... and the knobs control it: nothing shared -> no bias; more shared -> more bias
    neutral = entire_space(rows=200_000, validation_rows=10, test_rows=10, shared=0.0, clickbait=0.0)
    assert abs(_bias_ratio(neutral.train) - 1.0) < 0.05
    strong = entire_space(rows=200_000, validation_rows=10, test_rows=10, shared=0.8)
    assert _bias_ratio(strong.train) > ratio + 0.15


def test_deterministic_under_seed() -> None:
    a = entire_space(rows=3_000, seed=7)
    b = entire_space(rows=3_000, seed=7)
    c = entire_space(rows=3_000, seed=8)
    for split in ("train", "validation", "test"):
        assert getattr(a, split).equals(getattr(b, split))
        assert not getattr(a, split).equals(getattr(c, split))
    # each split has its own stream: the test split does not depend on the train size
    d = entire_space(rows=5_000, test_rows=750, seed=7)
    assert d.test.equals(a.test)
    assert d.train.slice(0, 3_000).equals(a.train)
    np.random.seed(123)
    assert entire_space(rows=3_000, seed=7).train.equals(a.train)  # the global numpy seed plays no part
    assert entire_space("/nonexistent", rows=3_000, seed=7).train.equals(a.train)  # data_dir is ignored


def test_ids_and_group_features(default: DatasetBundle) -> None:
    t = default.train
    users, items = _np(t, "user_id"), _np(t, "item_id")
    assert users.min() >= 0 and users.max() < 2_000 and items.min() >= 0 and items.max() < 1_000
    # segment / category / activity / rating / price are attributes of the user or item
    for key, attrs in (("user_id", ("user_segment", "user_activity")), ("item_id", ("item_category", "item_rating", "price"))):
        for attr in attrs:
            pairs = np.unique(np.stack([_np(t, key).astype(np.float64), _np(t, attr).astype(np.float64)], 1), axis=0)
            assert len(pairs) == len(np.unique(_np(t, key))), attr


# -- metrics --------------------------------------------------------------------------------------------
def test_auc_matches_torchmetrics() -> None:
    rng = np.random.default_rng(0)
    for ties in (False, True):
        scores = rng.integers(0, 6, 2_000).astype(float) if ties else rng.random(2_000)
        labels = (rng.random(2_000) < 0.3).astype(int)
        expected = float(binary_auroc(torch.tensor(scores), torch.tensor(labels)))
        assert auc(scores, labels) == pytest.approx(expected, abs=1e-6)
    assert auc([0.1, 0.9], [1, 0]) == 0.0 and auc([0.1, 0.9], [0, 1]) == 1.0
    assert math.isnan(auc([0.1, 0.2], [1, 1]))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        auc([0.1, 0.2], [0, 2])
    # scores outside [0, 1] keep their order (a sigmoid would tie 100, 200 and 300 at 1.0)
    assert auc([100.0, 200.0, 300.0, -5.0], [0, 1, 1, 0]) == 1.0
    assert auc([-300.0, -200.0, 250.0, 250.0], [1, 0, 1, 0]) == pytest.approx(0.375)  # ties count one half


def test_truth_beats_a_noisy_version_and_is_calibrated(default: DatasetBundle) -> None:
    t = default.test
    p_cvr = _np(t, "p_cvr")
    truth = entire_space_metrics(t, p_cvr, pctr=_np(t, "p_click"))
    assert truth["cvr_calibration"] == pytest.approx(1.0) and truth["cvr_calibration_clicked"] == pytest.approx(1.0)
    assert truth["cvr_mae"] == 0.0 and truth["cvr_ece"] == pytest.approx(0.0, abs=1e-12)
    assert truth["cvr_spearman"] == pytest.approx(1.0)
    assert truth["cvr_auc_entire"] == truth["cvr_auc_entire_oracle"]
    assert 0.7 < truth["cvr_auc_entire"] < 0.95  # below 1: outcomes are random given p_cvr
    assert truth["ctr_calibration"] == pytest.approx(1.0) and truth["ctcvr_calibration"] == pytest.approx(1.0)
    # the oracle AUC equals AUC(p_cvr vs conversion_if_clicked) computed by torchmetrics
    expected = float(binary_auroc(torch.tensor(p_cvr), torch.tensor(_np(t, "conversion_if_clicked").astype(np.int64))))
    assert truth["cvr_auc_entire"] == pytest.approx(expected, abs=1e-6)

    rng = np.random.default_rng(1)
    noisy = 1 / (1 + np.exp(-(np.log(p_cvr / (1 - p_cvr)) + rng.normal(0, 1.5, len(p_cvr)))))
    m = entire_space_metrics(t, noisy, pctr=_np(t, "p_click"))
    assert m["cvr_auc_entire"] < truth["cvr_auc_entire"] - 0.02
    assert m["ctcvr_auc"] < truth["ctcvr_auc"]
    assert m["cvr_spearman"] < 0.9 and m["cvr_mae"] > 0.01
    assert m["cvr_auc_entire_oracle"] == truth["cvr_auc_entire_oracle"]
    # a constant 2x over-prediction shows in calibration, not in ranking
    double = entire_space_metrics(t, 2 * p_cvr)
    assert double["cvr_calibration"] == pytest.approx(2.0) and double["cvr_auc_entire"] == truth["cvr_auc_entire"]
    assert double["cvr_ece"] == pytest.approx(p_cvr.mean())
    assert "ctr_auc" not in double and "ctcvr_auc" not in double


def test_a_clicked_space_estimate_is_miscalibrated_on_the_entire_space(default: DatasetBundle) -> None:
    # a "model" that predicts the clicked-space conversion rate of each item: calibrated on clicks,
    # over-predicting on all impressions (the sample selection bias ESMM addresses)
    tr, te = default.train, default.test
    click = _np(tr, "click").astype(bool)
    items = _np(tr, "item_id")
    clicks = np.bincount(items[click], minlength=1_000)
    buys = np.bincount(items[click], weights=_np(tr, "purchase")[click], minlength=1_000)
    rate = (buys + 1.0) / (clicks + 10.0)  # smoothed towards 0.1
    m = entire_space_metrics(te, rate[_np(te, "item_id")])
    assert m["cvr_calibration"] > 1.15 > m["cvr_calibration_clicked"] > 0.85


def test_metrics_accept_dicts_and_tensors_and_check_lengths(default: DatasetBundle) -> None:
    t = default.validation.slice(0, 1_000)
    columns = {c: t.column(c).to_numpy() for c in t.column_names}
    a = entire_space_metrics(t, torch.tensor(_np(t, "p_cvr")), pctcvr=_np(t, "p_ctcvr"))
    b = entire_space_metrics(columns, _np(t, "p_cvr").tolist(), pctcvr=_np(t, "p_ctcvr"))
    assert a == b and "ctcvr_auc" in a and "ctr_auc" not in a
    with pytest.raises(ValueError, match="999 pcvr values for a table of 1000 rows"):
        entire_space_metrics(t, _np(t, "p_cvr")[:-1])
    with pytest.raises(ValueError, match="no column 'p_cvr'"):
        entire_space_metrics(t.drop(["p_cvr"]), _np(t, "p_click"))
    with pytest.raises(ValueError, match="non-finite"):
        entire_space_metrics(t, np.full(1_000, np.nan))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"rows": 0}, "rows"), ({"test_rows": 0}, "test_rows"), ({"shared": 1.5}, "shared"), ({"clickbait": -2}, "clickbait"),
     ({"click_rate": 0.0}, "click_rate"), ({"cvr_rate": 1.0}, "cvr_rate"), ({"num_users": 0}, "num_users"),
     ({"affinity_scale": -1.0}, "affinity_scale"), ({"seed": -1}, "seed"), ({"tasks": ["ctr", "ctr"]}, "tasks"),
     ({"item_popularity": -0.5}, "item_popularity"), ({"user_popularity": float("inf")}, "user_popularity")],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        entire_space(**{"rows": 100, **kwargs})


def test_registered_and_checked_from_the_signature() -> None:
    assert DATASETS.get("entire_space") is entire_space
    with pytest.raises(ConfigError, match="data.params.shared"):
        polytask.fit(dataset="entire_space", dataset_params={"shared": "lots", "rows": 100}, model="shared_bottom", epochs=1)
    with pytest.raises(ConfigError, match=r"shared must be in \[-1, 1\], got 3.0"):
        polytask.fit(dataset="entire_space", dataset_params={"shared": 3.0, "rows": 100}, model="shared_bottom", epochs=1)


def test_fit_end_to_end_and_truth_metrics_of_the_predictions() -> None:
    b = entire_space(rows=6_000, seed=2)
    run = polytask.fit(dataset="entire_space", dataset_params={"rows": 6_000, "seed": 2}, model="shared_bottom",
                       epochs=1, batch_size=256, progress=False)
    m = run.metrics["test"]
    assert m["cvr"]["count"] == int(_np(b.test, "click").sum()) < b.test.num_rows  # cvr: clicked rows only
    assert m["ctr"]["count"] == m["ctcvr"]["count"] == b.test.num_rows
    # truth columns are not model inputs
    assert not {f.name for f in run.preprocessor.features} & set(TRUTH_COLUMNS)
    pred = run.predict(b.test)
    metrics = entire_space_metrics(b.test, pred["cvr"], pctr=pred["ctr"])
    assert all(np.isfinite(v) for v in metrics.values())
    assert metrics["cvr_auc_entire_oracle"] > 0.7


def test_popularity_makes_a_long_tail_and_zero_is_the_uniform_default() -> None:
    plain = entire_space(rows=20_000, validation_rows=10, test_rows=10, seed=4)
    zero = entire_space(rows=20_000, validation_rows=10, test_rows=10, seed=4, user_popularity=0, item_popularity=0.0)
    assert zero.train.equals(plain.train)  # the knob at 0 changes no draw
    tail = entire_space(rows=100_000, validation_rows=10, test_rows=10, seed=4, num_items=5_000, item_popularity=1.0)
    counts = np.sort(np.bincount(_np(tail.train, "item_id").astype(int), minlength=5_000))[::-1]
    # Zipf(1) over 5,000 items: the top 1 % of items take sum_{r<=50} 1/r / H_5000 = 49.6 % of the impressions
    h = (1.0 / np.arange(1, 5_001)).sum()
    expected = (1.0 / np.arange(1, 51)).sum() / h
    assert abs(counts[:50].sum() / counts.sum() - expected) < 0.02
    assert (counts == 0).mean() > 0.01  # a tail of items never shown in training (2.5 % here)
    flat = np.bincount(_np(plain.train, "item_id").astype(int), minlength=1_000)
    assert np.sort(flat)[::-1][:10].sum() / flat.sum() < 0.02  # uniform: the top 1 % take about 1 %
    # the rates are still solved for on the popularity-weighted impressions
    click = _np(tail.train, "click").astype(bool)
    assert abs(click.mean() - 0.07) < 0.005
    users = entire_space(rows=50_000, validation_rows=10, test_rows=10, seed=4, user_popularity=1.0)
    top = np.sort(np.bincount(_np(users.train, "user_id").astype(int), minlength=2_000))[::-1]
    assert top[:20].sum() / top.sum() > 0.3  # users too
