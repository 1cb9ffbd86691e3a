"""The ``relatedness`` kind (Tai et al. 2015; JMT Eq. 9): the sparse target distribution, the KL
loss, the expected score, Pearson/Spearman/MSE against scipy and numpy, and errors naming the row."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from polytask.errors import DataError
from polytask.tasks import Task
from polytask.tasks.relatedness import average_ranks, pearson, spearman


def rel_task(**options) -> Task:
    return Task("sim", "relatedness", **options)


def test_target_distribution_known_answers():
    spec = rel_task().spec
    p = spec.target_distribution(torch.tensor([3.4, 1.0, 5.0, 4.75, 2.0]))
    expected = torch.tensor([
        [0.0, 0.0, 0.6, 0.4, 0.0],
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 0.0, 0.25, 0.75],
        [0.0, 1.0, 0.0, 0.0, 0.0],
    ])
    torch.testing.assert_close(p, expected)
    # the expected score under p is the gold score
    torch.testing.assert_close(p @ torch.arange(1.0, 6.0), torch.tensor([3.4, 1.0, 5.0, 4.75, 2.0]))
    other = rel_task(low=0, high=2).spec
    assert other.output_dim == 3
    torch.testing.assert_close(other.target_distribution(torch.tensor([0.5])), torch.tensor([[0.5, 0.5, 0.0]]))


def test_kl_loss_known_answers():
    task = rel_task()
    mask = torch.ones(2, dtype=torch.bool)
    y = torch.tensor([3.4, 5.0])
    # softmax equal to the target (as far as logits reach: 1e-12 where p is 0) -> KL 0
    p = task.spec.target_distribution(y)
    out = torch.log(p.clamp_min(1e-12))
    assert task.loss(out, y, mask).item() == pytest.approx(0.0, abs=1e-9)
    # uniform output: KL(p || u) = sum p log p + log 5
    uniform = torch.zeros(2, 5)
    kl_34 = 0.6 * math.log(0.6) + 0.4 * math.log(0.4) + math.log(5)
    kl_5 = math.log(5)
    assert task.loss(uniform, y, mask).item() == pytest.approx((kl_34 + kl_5) / 2, rel=1e-6)
    assert task.spec.per_example_loss(uniform, y, mask).tolist() == pytest.approx([kl_34, kl_5], rel=1e-6)


def test_predict_is_the_expected_score():
    task = rel_task()
    out = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [-50.0, -50.0, -50.0, 50.0, -50.0], [0.0, math.log(3.0), -1e9, -1e9, -1e9]])
    torch.testing.assert_close(task.predict(out), torch.tensor([3.0, 4.0, 1.75]))

    cols = task.spec.prediction_columns("sim", task.predict(out).numpy(), pa.table({"x": [1, 2, 3]}))
    assert cols["sim"].to_pylist() == pytest.approx([3.0, 4.0, 1.75])


def test_metrics_against_scipy():
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(0)
    task = rel_task()
    out = torch.from_numpy(rng.normal(size=(50, 5))).float()
    y = torch.from_numpy(np.round(rng.uniform(1, 5, 50) * 2) / 2).float()  # ties in the gold scores
    m = task.spec.compute_metrics(out, y, torch.ones(50, dtype=torch.bool))
    pred = task.predict(out).numpy().astype(np.float64)
    assert m["count"] == 50
    assert m["pearson"] == pytest.approx(pearsonr(pred, y.numpy())[0], abs=1e-6)
    assert m["spearman"] == pytest.approx(spearmanr(pred, y.numpy())[0], abs=1e-6)
    assert m["mse"] == pytest.approx(np.mean((pred - y.numpy()) ** 2), rel=1e-5)
    assert task.metrics == ("pearson", "spearman", "mse")
    assert task.spec.metric("pearson").higher_is_better and not task.spec.metric("mse").higher_is_better


def test_correlations_by_hand_and_degenerate_cases():
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([1.0, 10.0, 100.0])) == pytest.approx(1.0)
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert math.isnan(pearson(np.array([1.0]), np.array([2.0])))
    assert math.isnan(pearson(np.array([1.0, 1.0]), np.array([2.0, 3.0])))


def test_encoding_and_scores_outside_the_range():
    task = rel_task()
    label, mask = task.spec.encode(pa.table({"sim": [1.0, None, 4.6, 5.0]}), task, "train.tsv")
    assert mask.tolist() == [True, False, True, True] and label.tolist() == pytest.approx([1.0, 0.0, 4.6, 5.0])
    with pytest.raises(DataError, match=r"valid\.tsv: score column 'sim' of task 'sim' holds 5\.5 at row 2, outside \[1, 5\]"):
        task.spec.encode(pa.table({"sim": [1.0, 2.0, 5.5]}), task, "valid.tsv")
    with pytest.raises(DataError, match=r"holds 0\.0 at row 0, outside \[1, 5\]"):
        task.spec.encode(pa.table({"sim": [0.0]}), task, "valid.tsv")


def test_options_and_bad_range():
    task = rel_task(low=0, high=10)
    assert task.output_dim == 11 and task.spec.options() == {"low": 0, "high": 10}
    assert Task(**task.to_dict()).spec.options() == task.spec.options()
    with pytest.raises(ValueError, match="high must be greater than low"):
        rel_task(low=3, high=3)
