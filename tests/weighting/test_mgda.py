"""MGDA known answers: the min-norm point of the convex hull of the task gradients, closed form
for two tasks, Frank-Wolfe for more (checked against a brute-force grid over the simplex)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tasks

from polytask.weighting import create_weighting
from polytask.weighting.mgda import min_norm_weights


def gram(*rows):
    g = torch.tensor(rows, dtype=torch.float64)
    return g @ g.T


@pytest.mark.parametrize("rows,expected", [
    ([[1.0, 0.0], [0.0, 1.0]], [0.5, 0.5]),      # symmetric: the midpoint
    ([[1.0, 0.0], [1.0, 1.0]], [1.0, 0.0]),      # g1 is the foot of the perpendicular from 0
    ([[2.0, 0.0], [0.0, 1.0]], [0.2, 0.8]),      # min 4 a^2 + (1 - a)^2 at a = 1/5
    ([[1.0, 0.0], [-1.0, 0.0]], [0.5, 0.5]),     # opposite: the origin is in the hull
    ([[1.0, 1.0], [1.0, 1.0]], None),            # identical: any alpha, norm sqrt(2)
])
def test_two_tasks_closed_form(rows, expected):
    m = gram(*rows)
    alpha = min_norm_weights(m)
    assert float(alpha.sum()) == pytest.approx(1.0) and bool((alpha >= 0).all())
    if expected is None:
        assert float(alpha @ m @ alpha) == pytest.approx(2.0)
    else:
        torch.testing.assert_close(alpha, torch.tensor(expected, dtype=torch.float64))


def grid_minimum(m, n=400):
    a = torch.linspace(0, 1, n + 1, dtype=torch.float64)
    a1, a2 = torch.meshgrid(a, a, indexing="ij")
    keep = a1 + a2 <= 1 + 1e-12
    pts = torch.stack([a1[keep], a2[keep], (1 - a1 - a2)[keep].clamp_min(0)], 1)
    values = ((pts @ m) * pts).sum(1)
    i = int(values.argmin())
    return float(values[i]), pts[i]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dim", [2, 5])
def test_three_tasks_match_a_grid_search(seed, dim):
    g = torch.randn(3, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g[0] *= 3.0
    m = g @ g.T
    alpha = min_norm_weights(m)
    assert float(alpha.sum()) == pytest.approx(1.0) and bool((alpha >= -1e-12).all())
    best, _ = grid_minimum(m)
    value = float(alpha @ m @ alpha)
    scale = float(m.diagonal().max())
    assert value <= best + 1e-7 * scale  # never worse than the 1/400 grid ...
    assert value >= best - 1e-2 * scale  # ... and the grid is within its resolution of it
    # optimality (KKT): every vertex direction is no better than the current point
    assert float((m @ alpha).min()) >= value - 1e-5 * scale


def test_normalisation_applies_weights_of_normalised_gradients_to_the_originals():
    g = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    w = create_weighting("mgda", make_tasks(2), {"normalize": "l2"})
    torch.testing.assert_close(w.combine(g, g @ g.T, torch.ones(2)), torch.tensor([0.5, 0.5]))
    w = create_weighting("mgda", make_tasks(2), {"normalize": "loss"})
    torch.testing.assert_close(w.combine(g, g @ g.T, torch.tensor([2.0, 1.0])), torch.tensor([0.5, 0.5]))
    w = create_weighting("mgda", make_tasks(2), {"normalize": "loss+"})  # g / (L |g|) = (1/2, 0), (0, 1)
    torch.testing.assert_close(w.combine(g, g @ g.T, torch.tensor([2.0, 1.0])), torch.tensor([0.8, 0.2]))
    w = create_weighting("mgda", make_tasks(2))
    torch.testing.assert_close(w.combine(g, g @ g.T, torch.ones(2)), torch.tensor([0.2, 0.8]))


def test_single_task_and_zero_gradients():
    torch.testing.assert_close(min_norm_weights(torch.ones(1, 1)), torch.ones(1, dtype=torch.float64))
    alpha = min_norm_weights(torch.zeros(3, 3))
    assert torch.isfinite(alpha).all() and float(alpha.sum()) == pytest.approx(1.0)
