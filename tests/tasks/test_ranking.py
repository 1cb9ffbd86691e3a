"""The ``ranking`` kind: NDCG@k and MAP against hand-computed values, ListNet and RankNet losses
(hand values, permutation invariance, masking, gradients), label encoding, and a small learning test."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from polytask.errors import DataError
from polytask.tasks import Task
from polytask.tasks.ranking import mean_average_precision, ndcg

LOG2_3 = math.log2(3)


def rank_task(**options) -> Task:
    return Task("rank", "ranking", **{"group": "query", **options})


def lab(relevance: list[float], group: list[int]) -> torch.Tensor:
    return torch.tensor([relevance, group], dtype=torch.float32).T


# three groups, rows interleaved: q7 scores 3, 2, 1 with relevance 0, 2, 1; q4 scores 0.5, 0.9 with
# relevance 1, 0; q9 (no relevant row, skipped)
SCORES = torch.tensor([3.0, 0.5, 2.0, 0.1, 0.9, 1.0, 0.2])
LABELS = lab([0, 1, 2, 0, 0, 1, 0], [7, 4, 7, 9, 4, 7, 9])


def test_ndcg_by_hand():
    # q7 ranked: rel 0, 2, 1 -> DCG = 0/1 + 3/log2(3) + 1/log2(4); ideal 2, 1, 0 -> 3/1 + 1/log2(3)
    q7 = (3 / LOG2_3 + 1 / 2) / (3 + 1 / LOG2_3)
    # q4 ranked: rel 0, 1 -> DCG = 1/log2(3); ideal 1/1
    q4 = 1 / LOG2_3
    assert ndcg(SCORES, LABELS, k=10) == pytest.approx((q7 + q4) / 2, abs=1e-12)
    assert (q7 + q4) / 2 == pytest.approx(0.64497, abs=1e-5)
    # k = 2: q7 keeps 0/1 + 3/log2(3) against ideal 3/1 + 1/log2(3); k = 1: q7 gets 0, q4 gets 0
    assert ndcg(SCORES, LABELS, k=2) == pytest.approx(((3 / LOG2_3) / (3 + 1 / LOG2_3) + q4) / 2, abs=1e-12)
    assert ndcg(SCORES, LABELS, k=1) == 0.0
    assert ndcg(-SCORES, LABELS, k=1) == pytest.approx((1 / 3 + 1) / 2)  # q7 now ranks rel 1 first: 1/3


def test_map_by_hand():
    # q7: relevant at ranks 2 and 3 -> (1/2 + 2/3) / 2; q4: relevant at rank 2 -> 1/2; q9 skipped
    assert mean_average_precision(SCORES, LABELS) == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 2) / 2, abs=1e-12)


def test_map_matches_torchmetrics_per_group():
    from torchmetrics.functional.retrieval import retrieval_average_precision

    rng = np.random.default_rng(0)
    s = torch.from_numpy(rng.normal(size=200)).float()
    y = lab(rng.integers(0, 3, 200).tolist(), rng.integers(0, 12, 200).tolist())
    # torchmetrics counts a row with a score <= 0 as not relevant: give it probabilities
    per_group = [float(retrieval_average_precision(torch.sigmoid(s[y[:, 1] == g]), y[y[:, 1] == g, 0] > 0))
                 for g in y[:, 1].unique() if (y[y[:, 1] == g, 0] > 0).any()]
    assert mean_average_precision(s, y) == pytest.approx(np.mean(per_group), abs=1e-6)


def test_metrics_through_the_task_see_only_labelled_rows():
    task = rank_task(k=10)
    extra_s = torch.cat([SCORES, torch.tensor([100.0, 50.0])])
    extra_y = torch.cat([LABELS, lab([5, 5], [7, 4])])  # unlabelled rows that would top both groups
    mask = torch.tensor([True] * 7 + [False, False])
    m = task.spec.compute_metrics(extra_s, extra_y, mask)
    assert m["count"] == 7
    assert m["ndcg"] == pytest.approx(ndcg(SCORES, LABELS, 10)) and m["map"] == pytest.approx(mean_average_precision(SCORES, LABELS))


# -- losses -----------------------------------------------------------------------------------------
def _listnet(scores: list[float], rel: list[float]) -> float:
    p = np.exp(rel) / np.exp(rel).sum()
    log_q = np.array(scores) - math.log(np.exp(scores).sum())
    return float(-(p * log_q).sum())


def test_listwise_loss_by_hand():
    task = rank_task()
    s = torch.tensor([1.0, 0.0, 0.3, -1.0, 2.0, 5.0])
    y = lab([1, 0, 2, 0, 1, 3], [0, 0, 1, 1, 1, 2])  # group 2 has one row: not scored
    # row-weighted mean of the group losses: (2 * L0 + 3 * L1) / 5
    expected = (2 * _listnet([1.0, 0.0], [1, 0]) + 3 * _listnet([0.3, -1.0, 2.0], [2, 0, 1])) / 5
    assert task.loss(s, y, torch.ones(6, dtype=torch.bool)).item() == pytest.approx(expected, rel=1e-6)
    per_row = task.per_example_loss(s, y, torch.ones(6, dtype=torch.bool))
    assert math.isnan(per_row[5])  # alone in its group
    assert per_row[:2].mean().item() == pytest.approx(_listnet([1.0, 0.0], [1, 0]), rel=1e-6)
    assert per_row[2:5].mean().item() == pytest.approx(_listnet([0.3, -1.0, 2.0], [2, 0, 1]), rel=1e-6)


def test_pairwise_loss_by_hand():
    task = rank_task(loss="pairwise")
    s = torch.tensor([2.0, 0.0, 1.0, 0.5, 0.7])
    y = lab([2, 0, 0, 1, 1], [0, 0, 0, 1, 1])  # group 1: equal relevance, no pair
    # pairs (0 > 1), (0 > 2): RankNet log(1 + exp(-(s_i - s_j)))
    group0 = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    mask = torch.ones(5, dtype=torch.bool)
    assert task.loss(s, y, mask).item() == pytest.approx(group0, rel=1e-6)
    per_row = task.per_example_loss(s, y, mask)
    assert torch.isnan(per_row[3:]).all() and per_row[:3].mean().item() == pytest.approx(group0, rel=1e-6)
    # the row in both pairs carries half of each; the others half of their own
    assert per_row[0].item() == pytest.approx(3 * 0.5 * group0, rel=1e-6)
    assert per_row[1].item() == pytest.approx(3 * 0.5 * math.log1p(math.exp(-2.0)) / 2, rel=1e-6)


@pytest.mark.parametrize("objective", ["listwise", "pairwise"])
def test_permuting_rows_leaves_the_loss_unchanged(objective):
    task = rank_task(loss=objective)
    g = torch.Generator().manual_seed(0)
    s = torch.randn(40, generator=g)
    y = lab(torch.randint(0, 4, (40,), generator=g).tolist(), torch.randint(0, 5, (40,), generator=g).tolist())
    mask = torch.rand(40, generator=g) < 0.8
    base = task.loss(s, y, mask)
    for seed in range(3):
        perm = torch.randperm(40, generator=torch.Generator().manual_seed(seed))
        assert task.loss(s[perm], y[perm], mask[perm]).item() == pytest.approx(base.item(), rel=1e-6)
        per_row = task.per_example_loss(s[perm], y[perm], mask[perm])
        torch.testing.assert_close(per_row, task.per_example_loss(s, y, mask)[perm], equal_nan=True)
    # the group ids are names, not numbers: relabelling the groups changes nothing
    relabelled = y.clone()
    relabelled[:, 1] = 1000 - 3 * y[:, 1]
    assert task.loss(s, relabelled, mask).item() == pytest.approx(base.item(), rel=1e-6)


@pytest.mark.parametrize("objective", ["listwise", "pairwise"])
def test_masked_rows_contribute_nothing(objective):
    task = rank_task(loss=objective)
    s = torch.tensor([1.0, 0.0, 0.3, -1.0, 2.0])
    y = lab([1, 0, 2, 0, 1], [0, 0, 1, 1, 1])
    base = task.loss(s, y, torch.ones(5, dtype=torch.bool))
    # unlabelled rows in the same groups, with extreme scores and NaN relevance
    s2 = torch.cat([s, torch.tensor([50.0, float("nan"), -50.0])]).requires_grad_()
    y2 = torch.cat([y, lab([float("nan"), 3, 0], [0, 1, 1])])
    mask = torch.tensor([True] * 5 + [False] * 3)
    loss = task.loss(s2, y2, mask)
    assert loss.item() == pytest.approx(base.item(), rel=1e-6)
    loss.backward()
    assert (s2.grad[5:] == 0).all() and torch.isfinite(s2.grad).all() and s2.grad[:5].abs().sum() > 0


@pytest.mark.parametrize("objective", ["listwise", "pairwise"])
def test_gradient_pushes_relevant_rows_up(objective):
    task = rank_task(loss=objective)
    s = torch.zeros(4, requires_grad=True)
    task.loss(s, lab([2, 0, 1, 3], [0, 0, 0, 5]), torch.ones(4, dtype=torch.bool)).backward()
    assert s.grad[0] < 0 < s.grad[1]  # descending the loss raises the relevant row's score
    assert s.grad[3] == 0  # alone in its group


@pytest.mark.parametrize("objective", ["listwise", "pairwise"])
def test_zero_loss_attached_when_no_group_has_two_labelled_rows(objective):
    task = rank_task(loss=objective)
    s = torch.randn(4, requires_grad=True)
    loss = task.loss(s, lab([1, 0, 2, 1], [0, 1, 2, 2]), torch.tensor([True, True, True, False]))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (s.grad == 0).all()


def test_weights_weight_rows():
    task = rank_task()
    s = torch.tensor([1.0, 0.0, 0.3, -1.0, 2.0])
    y = lab([1, 0, 2, 0, 1], [0, 0, 1, 1, 1])
    mask = torch.ones(5, dtype=torch.bool)
    per_row = task.per_example_loss(s, y, mask)
    w = torch.tensor([1.0, 3.0, 0.0, 2.0, 1.0])
    assert task.loss(s, y, mask, w).item() == pytest.approx(float((per_row * w).sum() / w.sum()), rel=1e-6)


# -- encoding -------------------------------------------------------------------------------------
def test_encode_factorises_groups_and_masks_missing():
    table = pa.table({"rel": [2.0, None, 0.0, 1.0, 3.0], "qid": ["b", "a", "b", None, "c"]})
    task = rank_task(group="qid", label="rel")
    assert task.label_columns() == ["rel", "qid"]
    label, mask = task.spec.encode(table, task, "train.csv")
    assert label.dtype == np.float32 and label.shape == (5, 2)
    assert mask.tolist() == [True, False, True, False, True]
    assert label[:, 0].tolist() == [2.0, 0.0, 0.0, 0.0, 3.0]  # 0 placeholders where masked
    g = label[:, 1]
    assert g[0] == g[2] and len({g[0], g[1], g[4]}) == 3


def test_negative_relevance_names_the_row():
    table = pa.table({"rel": [1.0, -1.0], "query": [1, 1]})
    with pytest.raises(DataError, match=r"valid\.csv: relevance column 'rel' holds -1 at row 1"):
        rank_task(label="rel").spec.encode(table, rank_task(label="rel"), "valid.csv")


def test_options_check():
    with pytest.raises(ValueError, match="k must be >= 1"):
        rank_task(k=0)
    assert Task(**rank_task(loss="pairwise", k=5).to_dict()).objective == "pairwise"


# -- learning ---------------------------------------------------------------------------------------
def make_queries(n_groups: int, size: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Items with features x; relevance 0..3 from the quartiles of x @ w + noise within each group."""
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor([1.5, -2.0, 1.0, 0.5, 0.0, 0.0][:dim])
    x = torch.randn(n_groups * size, dim, generator=g)
    utility = (x @ w + 0.3 * torch.randn(n_groups * size, generator=g)).reshape(n_groups, size)
    rank = utility.argsort(1).argsort(1).float() / size  # 0 .. (size - 1) / size within the group
    rel = torch.floor(rank * 4).clamp(max=3).reshape(-1)
    group = torch.arange(n_groups).repeat_interleave(size).float()
    return x, torch.stack([rel, group], 1)


def test_linear_scorer_learns_to_rank_with_the_listwise_loss():
    torch.manual_seed(0)
    task = rank_task(k=5)
    x, y = make_queries(200, 20, 6, seed=0)
    x_test, y_test = make_queries(100, 20, 6, seed=1)
    scorer = torch.nn.Linear(6, 1)
    opt = torch.optim.Adam(scorer.parameters(), lr=0.05)
    mask = torch.ones(len(x), dtype=torch.bool)
    before = task.spec.compute_metrics(scorer(x_test).squeeze(1).detach(), y_test, torch.ones(len(x_test), dtype=torch.bool))
    for _ in range(100):
        opt.zero_grad()
        task.loss(scorer(x).squeeze(1), y, mask).backward()
        opt.step()
    after = task.spec.compute_metrics(scorer(x_test).squeeze(1).detach(), y_test, torch.ones(len(x_test), dtype=torch.bool))
    print(f"NDCG@5 before {before['ndcg']:.3f}, after {after['ndcg']:.3f}; MAP after {after['map']:.3f}")
    assert after["ndcg"] > 0.9 and after["ndcg"] > before["ndcg"] + 0.1


def test_loss_count_is_the_loss_denominator():
    """Data parallelism rescales by loss_count: it must count the rows the loss averages over
    (scored rows), so summing the per-process weighted sums over the total gives the whole-batch loss."""
    torch.manual_seed(0)
    task = Task("r", "ranking", group="q")
    # group 0: three labelled rows; group 1: one labelled row (not scored); one unlabelled row
    label = torch.tensor([[2.0, 0], [0.0, 0], [1.0, 0], [1.0, 1], [0.0, 1]])
    mask = torch.tensor([True, True, True, True, False])
    out = torch.randn(5)
    assert float(task.spec.loss_count(label, mask)) == 3.0
    whole = task.loss(out, label, mask)
    assert float(whole * task.spec.loss_count(label, mask)) == pytest.approx(
        float(task.spec.elementwise_loss(*task.spec._safe(out, label, mask))[:3].sum()), rel=1e-5)
