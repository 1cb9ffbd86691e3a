"""UPGrad known answers: each task gradient is projected onto the dual cone {v: G v >= 0} (the
projection satisfies the optimality conditions of the projection problem), the update (their
mean) conflicts with no task, and it is the mean gradient when no two gradients conflict."""

from __future__ import annotations

import pytest
import torch

from polytask.weighting.upgrad import upgrad_multipliers, upgrad_weights


def test_two_conflicting_gradients_known_answer():
    # g1 = (1, 0), g2 = (-1, 1): the cone is {v1 >= 0, v2 >= v1}; pi(g1) = (1/2, 1/2) = g1 + g2/2,
    # pi(g2) = (0, 1) = g2 + g1; the mean (1/4, 3/4) = 1 g1 + 3/4 g2
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    lam = upgrad_multipliers(g @ g.T)
    torch.testing.assert_close(lam, torch.tensor([[0.0, 1.0], [0.5, 0.0]], dtype=torch.float64))
    alpha = upgrad_weights(g @ g.T)
    torch.testing.assert_close(alpha, torch.tensor([1.0, 0.75], dtype=torch.float64))
    torch.testing.assert_close(alpha @ g, torch.tensor([0.25, 0.75], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("k,dim", [(3, 5), (5, 8), (4, 3)])
def test_projections_are_optimal_and_the_update_conflicts_with_no_task(seed, k, dim):
    g = torch.randn(k, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g = g * torch.logspace(-1, 1, k, dtype=torch.float64)[:, None]
    m = g @ g.T
    tol = 1e-9 * float(m.diagonal().max())
    lam = upgrad_multipliers(m)
    assert bool((lam >= 0).all())
    for i in range(k):
        proj = g[i] + lam[:, i] @ g
        slack = g @ proj  # feasibility: G pi(g_i) >= 0
        assert float(slack.min()) >= -tol
        assert float(torch.where(lam[:, i] > 0, slack.abs(), 0.0).max()) <= tol  # complementary slackness
    update = upgrad_weights(m) @ g
    torch.testing.assert_close(update, torch.stack([g[i] + lam[:, i] @ g for i in range(k)]).mean(0))
    assert float((g @ update).min()) >= -tol


def test_no_conflict_gives_the_mean_gradient():
    g = torch.tensor([[1.0, 0.2, 0.0], [0.5, 1.0, 0.1], [0.0, 0.3, 2.0]], dtype=torch.float64)
    assert bool(((g @ g.T) >= 0).all())
    alpha = upgrad_weights(g @ g.T)
    assert torch.equal(alpha, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_zero_and_dependent_gradients_stay_finite():
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    alpha = upgrad_weights(g @ g.T)
    assert torch.isfinite(alpha).all()
    assert float((g @ (alpha @ g)).min()) >= -1e-9
