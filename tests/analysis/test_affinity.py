"""Task affinity and FAFS branch grouping on synthetic per-example losses."""

from __future__ import annotations

import torch

from polytask.analysis.affinity import branch_affinity, easy_hard_affinity, group_branches, separation_cost


def _losses(n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g)
    b = torch.rand(n, generator=g)
    # tasks 0 and 1 find the same examples hard (identical difficulty), task 2 is unrelated
    return torch.stack([a, a + 0.01 * torch.rand(n, generator=g), b], dim=1)


def test_affinity_known_values():
    aff = easy_hard_affinity(_losses())
    assert aff.shape == (3, 3)
    torch.testing.assert_close(aff.diagonal(), torch.ones(3))
    assert aff[0, 1] > 0.97  # identical tasks agree on easy/hard
    assert abs(float(aff[0, 2]) - 0.5) < 0.05  # independent tasks agree half the time
    torch.testing.assert_close(aff, aff.T)


def test_grouping_joins_identical_tasks_and_separates_unrelated_ones():
    aff = easy_hard_affinity(_losses())
    groups = group_branches(aff, lam=10.0, unit_cost=1.0)
    assert groups == [[0, 1], [2]]


def test_lambda_trades_branches_against_separation():
    aff = easy_hard_affinity(_losses())
    assert group_branches(aff, lam=0.0) == [[0, 1, 2]]  # branching is the only cost: share everything
    assert group_branches(aff, lam=1000.0) == [[0], [1], [2]]  # any disagreement is too costly
    # branching near the top (fewer pooling layers above) is cheaper than near the bottom
    assert len(group_branches(aff, lam=10.0, pools_above=4)) == 1


def test_branch_affinity_complete_linkage_and_agglomerative_path():
    aff = easy_hard_affinity(_losses())
    b = branch_affinity(aff, [[0, 1], [2]])
    assert b.shape == (2, 2) and float(b[0, 1]) < 0.6
    assert separation_cost(aff, [[0], [1], [2]]) == 0.0
    # the agglomerative search (used for many branches) finds the same grouping
    assert group_branches(aff, lam=10.0, max_exhaustive=1) == [[0, 1], [2]]


def test_affinity_ignores_unlabelled_examples():
    losses = _losses()
    holes = losses.clone()
    holes[:500, 2] = float("nan")  # task 2 unlabelled on the first 500 rows
    aff = easy_hard_affinity(holes)
    torch.testing.assert_close(aff[:2, :2], easy_hard_affinity(losses)[:2, :2])
    # the (0, 2) pair is compared on the rows labelled for both, each task easy below its own mean
    easy0 = losses[500:, 0] < losses[:, 0].mean()
    easy2 = losses[500:, 2] < losses[500:, 2].mean()
    assert abs(float(aff[0, 2]) - float((easy0 == easy2).float().mean())) < 1e-6
    never = losses.clone()
    never[:, 2] = float("nan")
    assert float(easy_hard_affinity(never)[0, 2]) == 0.5
