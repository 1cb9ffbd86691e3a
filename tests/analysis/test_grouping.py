"""TAG network selection (polytask.analysis.grouping): known answers on hand-made affinities, and
the exact search against brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from polytask.analysis.grouping import MAX_TASKS, Grouping, advise, best_groupings, grouping_score, served_affinity

# tasks a1, a2 help each other, b1, b2 help each other, c is hurt by and hurts everyone
A1, A2, B1, B2, C = range(5)


def clusters() -> torch.Tensor:
    a = torch.full((5, 5), -0.1)
    a[A1, A2], a[A2, A1] = 1.0, 0.8
    a[B1, B2], a[B2, B1] = 0.6, 0.7
    a.fill_diagonal_(2.0)  # self-affinity never enters the objective
    return a


def test_two_clusters_and_a_loner():
    found = best_groupings(clusters())
    assert len(found) == 5
    assert found[0].groups == [[A1, A2, B1, B2, C]]  # one network: everything together
    assert found[1].groups == [[A1, A2], [B1, B2, C]]
    assert found[2].groups == [[A1, A2], [B1, B2], [C]]
    assert found[2].serves == found[2].groups
    assert found[2].score == pytest.approx(1.0 + 0.8 + 0.6 + 0.7)
    # more networks than clusters add nothing: the best grouping stays the planted one
    assert found[4].groups == found[2].groups
    # k = 1: each task receives the mean affinity of the four others
    col = clusters().clone().fill_diagonal_(0).sum(0) / 4
    assert found[0].score == pytest.approx(float(col.sum()), abs=1e-6)


def test_served_affinity_and_score_by_hand():
    a = clusters()
    assert served_affinity(a, A1, [A1, A2, C]) == pytest.approx((0.8 - 0.1) / 2)
    assert served_affinity(a, C, [C]) == 0.0
    # all together, each task gets the mean of the four others' affinity onto it:
    # a1 (0.8 - 0.3) / 4, a2 (1.0 - 0.3) / 4, b1 (0.7 - 0.3) / 4, b2 (0.6 - 0.3) / 4, c -0.4 / 4
    assert grouping_score(a, [[A1, A2, B1, B2, C]]) == pytest.approx(0.375)
    # c in two groups counts where it is served best (alone: 0 beats -0.1)
    assert grouping_score(a, [[A1, A2, B1, B2, C], [C]]) == pytest.approx(0.475)
    with pytest.raises(ValueError, match="task 4 is in no group"):
        grouping_score(a, [[A1, A2], [B1, B2]])


def test_overlap_lets_a_task_train_as_an_auxiliary():
    # task 0 helps task 2 a lot but is hurt by it; task 1 helps task 0
    a = torch.tensor([[0.0, 0.0, 1.0],
                      [0.5, 0.0, 0.0],
                      [-1.0, 0.0, 0.0]])
    disjoint = best_groupings(a, 2)[1]
    assert disjoint.groups == [[0, 1], [2]] and disjoint.score == pytest.approx(0.5)
    shared = best_groupings(a, 2, overlap=True)[1]
    # 0 is trained twice: with 1 (which serves it) and with 2 (which it serves)
    assert shared.groups == [[0, 1], [0, 2]]
    assert shared.serves == [[0, 1], [2]]
    assert shared.score == pytest.approx(0.5 + 1.0)


@pytest.mark.parametrize("overlap", [False, True])
def test_exact_search_matches_brute_force(overlap):
    rng = np.random.default_rng(3)
    t = 5
    subsets = [[i for i in range(t) if m >> i & 1] for m in range(1, 2**t)]
    for _ in range(3):
        a = rng.normal(size=(t, t))
        found = best_groupings(a, 3, overlap=overlap)
        for k in (1, 2, 3):
            best = -math.inf
            for r in range(1, k + 1):
                for combo in itertools.combinations(subsets, r):
                    members = [i for g in combo for i in g]
                    if sorted(set(members)) != list(range(t)) or (not overlap and len(members) != t):
                        continue
                    best = max(best, grouping_score(a, combo))
            assert found[k - 1].score == pytest.approx(best, abs=1e-9)
            assert grouping_score(a, found[k - 1].groups) == pytest.approx(found[k - 1].score)
            assert len(found[k - 1].groups) <= k


def test_nan_counts_as_no_affinity_and_limits():
    a = clusters()
    a[C, A1] = float("nan")  # never measured together
    assert best_groupings(a)[2].groups == [[A1, A2], [B1, B2], [C]]
    with pytest.raises(ValueError, match=f"at most {MAX_TASKS} tasks"):
        best_groupings(torch.zeros(MAX_TASKS + 1, MAX_TASKS + 1))
    with pytest.raises(ValueError, match="square"):
        best_groupings([[0.0, 1.0]])
    with pytest.raises(ValueError, match="max_groups"):
        best_groupings(a, 0)


def test_advise_prefers_fewer_networks_within_tolerance_and_budget():
    found = best_groupings(clusters())
    assert advise(found).groups == [[A1, A2], [B1, B2], [C]]  # k = 4, 5 add nothing
    assert advise(found, budget=2).groups == [[A1, A2], [B1, B2, C]]
    assert advise(found, budget=1.5).groups == [[A1, A2, B1, B2, C]]  # k networks cost k
    with pytest.raises(ValueError, match="budget"):
        advise(found, budget=0.5)
    # a small gain is not worth a network: 3.1 vs 3.0 within a 5% tolerance
    close = [Grouping([[0, 1]], [[0, 1]], 3.0), Grouping([[0], [1]], [[0], [1]], 3.1)]
    assert advise(close).cost == 1
    assert advise(close, tolerance=0.0).cost == 2


def test_named_grouping():
    g = best_groupings(clusters())[2]
    assert g.named(["a1", "a2", "b1", "b2", "c"]) == {
        "groups": [["a1", "a2"], ["b1", "b2"], ["c"]], "serves": [["a1", "a2"], ["b1", "b2"], ["c"]], "score": g.score}
    assert g.cost == 3
