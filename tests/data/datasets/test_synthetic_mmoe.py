"""Tests of the MMoE synthetic generator (Ma et al., KDD 2018, Sec. 3.2)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from polytask.data.datasets.synthetic_mmoe import generate, synthetic_mmoe

SMALL = dict(n_train=300, n_validation=50, n_test=70, dim=12)


@pytest.mark.parametrize("p", [0.0, 0.5, 0.9, 1.0, -0.5])
def test_linear_label_correlation_equals_p(p: float) -> None:
    # Linear case y = w^T x + eps: Pearson(y1, y2) = p c^2 / (c^2 + sigma^2) ~= p.
    _, y1, y2 = generate(50_000, correlation=p, num_sines=0, noise_std=0.01, seed=3)
    r = np.corrcoef(y1.astype(np.float64), y2.astype(np.float64))[0, 1]
    assert abs(r - p) < 0.02, (p, r)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.9, 1.0, -1.0])
def test_directions_orthonormal_and_weight_cosine(p: float) -> None:
    *_, params = generate(10, correlation=p, dim=100, scale=2.5, seed=11, return_params=True)
    assert np.linalg.norm(params.u1) == pytest.approx(1.0, abs=1e-12)
    assert np.linalg.norm(params.u2) == pytest.approx(1.0, abs=1e-12)
    assert abs(params.u1 @ params.u2) < 1e-12
    cos = params.w1 @ params.w2 / (np.linalg.norm(params.w1) * np.linalg.norm(params.w2))
    assert cos == pytest.approx(p, abs=1e-12)
    # ||w_t|| = c for both tasks (Eq. 2)
    assert np.linalg.norm(params.w1) == pytest.approx(2.5)
    assert np.linalg.norm(params.w2) == pytest.approx(2.5)
    assert params.alpha.shape == params.beta.shape == (10,)


def test_labels_follow_equations_3_and_4_with_shared_sines() -> None:
    # Without noise the labels are exactly w^T x + sum_i sin(alpha_i w^T x + beta_i), the same
    # alpha/beta for both tasks.
    x, y1, y2, params = generate(2_000, correlation=0.7, noise_std=0.0, seed=5, return_params=True)
    x64 = x.astype(np.float64)

    def f(w: np.ndarray) -> np.ndarray:
        z = x64 @ w
        return z + np.sin(np.outer(z, params.alpha) + params.beta).sum(axis=1)

    # x was drawn in float64 and rounded to float32 for output: allow the rounding.
    np.testing.assert_allclose(y1, f(params.w1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y2, f(params.w2), rtol=1e-4, atol=1e-4)
    # the sine terms really are there (m = 10 by default)
    assert np.abs(y1 - (x64 @ params.w1)).mean() > 0.5


def test_noise_is_independent_per_task_with_the_given_std() -> None:
    # p = 1 and m = 0: y1 - y2 = eps1 - eps2 with std sigma * sqrt(2), so the noises are independent.
    _, y1, y2 = generate(50_000, correlation=1.0, num_sines=0, noise_std=0.1, seed=9)
    d = y1.astype(np.float64) - y2.astype(np.float64)
    assert d.std() == pytest.approx(0.1 * math.sqrt(2), rel=0.02)
    assert abs(d.mean()) < 0.005


def test_inputs_standard_normal() -> None:
    x, _, _ = generate(20_000, dim=20, seed=2)
    assert x.dtype == np.float32 and x.shape == (20_000, 20)
    assert abs(float(x.mean())) < 0.01
    assert float(x.std()) == pytest.approx(1.0, abs=0.01)


def test_bundle_shapes_columns_and_tasks() -> None:
    b = synthetic_mmoe(None, **SMALL)
    assert (b.train.num_rows, b.validation.num_rows, b.test.num_rows) == (300, 50, 70)
    names = [f"x{j}" for j in range(12)]
    assert b.features == {"numeric": names}
    assert b.tasks == [
        {"name": "y1", "kind": "regression", "label": "y1"},
        {"name": "y2", "kind": "regression", "label": "y2"},
    ]
    for t in (b.train, b.validation, b.test):
        assert t.column_names == [*names, "y1", "y2"]
        assert all(field.type == pa.float32() for field in t.schema)
    assert "c=1.0" in b.notes and "m=10" in b.notes and "d=12" in b.notes and "p=0.5" in b.notes


def test_bundle_is_the_generated_set_cut_in_order() -> None:
    b = synthetic_mmoe(None, **SMALL, seed=4)
    x, y1, y2 = generate(420, dim=12, seed=4)
    joined = pa.concat_tables([b.train, b.validation, b.test])
    np.testing.assert_array_equal(joined.column("x3").to_numpy(), x[:, 3])
    np.testing.assert_array_equal(joined.column("y1").to_numpy(), y1)
    np.testing.assert_array_equal(joined.column("y2").to_numpy(), y2)


def test_same_seed_identical_different_seed_different() -> None:
    a = synthetic_mmoe(None, **SMALL, seed=1)
    b = synthetic_mmoe(None, **SMALL, seed=1)
    c = synthetic_mmoe(None, **SMALL, seed=2)
    for split in ("train", "validation", "test"):
        assert getattr(a, split).equals(getattr(b, split))
        assert not getattr(a, split).equals(getattr(c, split))


def test_data_dir_is_ignored() -> None:
    a = synthetic_mmoe("/nonexistent/anywhere", **SMALL)
    b = synthetic_mmoe(None, **SMALL)
    assert a.train.equals(b.train)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"correlation": 1.5}, "correlation"),
        ({"correlation": -1.01}, "correlation"),
        ({"correlation": float("nan")}, "correlation"),
        ({"n_train": 0}, "n_train"),
        ({"n_validation": -3}, "n_validation"),
        ({"n_test": 0}, "n_test"),
        ({"dim": 1}, "dim"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"num_sines": -1}, "num_sines"),
        ({"scale": 0.0}, "scale"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        synthetic_mmoe(None, **{**SMALL, **kwargs})


def test_generate_rejects_bad_n() -> None:
    with pytest.raises(ValueError, match="n must"):
        generate(0)


def test_registered() -> None:
    from polytask.registry import DATASETS

    assert DATASETS.get("synthetic_mmoe") is synthetic_mmoe
