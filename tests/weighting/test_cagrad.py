"""CAGrad known answers: c = 0 is the mean gradient exactly; for c > 0 the update stays in the
ball ||d - g0|| <= c ||g0|| and its worst task inner product is at least the mean gradient's,
and equals the dual optimum (checked against a grid over the simplex)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tasks

from polytask.errors import ConfigError
from polytask.weighting import create_weighting
from polytask.weighting.cagrad import cagrad_weights


def test_c_zero_is_exactly_the_mean_gradient():
    g = torch.randn(3, 7, generator=torch.Generator().manual_seed(0))
    w = create_weighting("cagrad", make_tasks(3), {"c": 0.0})
    alpha = w.combine(g, g @ g.T, torch.ones(3))
    assert torch.equal(alpha, torch.full((3,), 1 / 3))
    torch.testing.assert_close(alpha @ g, g.mean(0))


@pytest.mark.parametrize("rescale,expected", [(0, 0.7), (1, 0.7 / 1.16), (2, 0.5)])
def test_orthogonal_pair_known_answer(rescale, expected):
    # g1 = e1, g2 = e2: by symmetry w* = (1/2, 1/2), g_w = g0, d = (1 + c) g0, alpha = (1 + c)/2
    g = torch.eye(2, dtype=torch.float64)
    alpha = cagrad_weights(g @ g.T, c=0.4, rescale=rescale)
    torch.testing.assert_close(alpha, torch.tensor([expected, expected], dtype=torch.float64))


def dual_grid_minimum(m, c, n=300):
    a = torch.linspace(0, 1, n + 1, dtype=torch.float64)
    a1, a2 = torch.meshgrid(a, a, indexing="ij")
    keep = a1 + a2 <= 1 + 1e-12
    w = torch.stack([a1[keep], a2[keep], (1 - a1 - a2)[keep].clamp_min(0)], 1)
    k = m.shape[0]
    r = c * float(m.sum()) ** 0.5 / k
    values = w @ m.mean(1) + r * ((w @ m) * w).sum(1).clamp_min(0).sqrt()
    return float(values.min())


@pytest.mark.parametrize("seed", range(10))
def test_worst_task_improvement_is_optimal_within_the_ball(seed):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(3, 6, generator=gen, dtype=torch.float64) * torch.tensor([[4.0], [1.0], [0.3]], dtype=torch.float64)
    m = g @ g.T
    c = 0.4
    d = cagrad_weights(m, c=c, rescale=0) @ g
    g0 = g.mean(0)
    scale = float(m.diagonal().max())
    assert float((d - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-9)
    worst = float((g @ d).min())
    assert worst >= float((g @ g0).min()) - 1e-9 * scale
    # optimal: by strong duality the best worst-task value is the dual minimum over the simplex,
    # here found by a grid (weak duality makes every grid value an upper bound on it)
    best = dual_grid_minimum(m, c)
    assert worst <= best + 1e-9 * scale
    assert worst >= best - 1e-5 * scale
    for rescale, factor in [(1, 1 / (1 + c * c)), (2, 1 / (1 + c))]:
        torch.testing.assert_close(cagrad_weights(m, c=c, rescale=rescale) @ g, d * factor)


def test_negative_c_is_a_config_error():
    with pytest.raises(ConfigError, match="weighting.c"):
        create_weighting("cagrad", make_tasks(2), {"c": -0.1})


def test_zero_and_opposite_gradients_stay_finite():
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    alpha = cagrad_weights(g @ g.T, c=0.4)
    assert torch.isfinite(alpha).all()
    assert torch.isfinite(cagrad_weights(torch.zeros(2, 2), c=0.4)).all()
