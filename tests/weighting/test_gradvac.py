"""GradVac known answers: a pair whose cosine is below its target gets exactly the target cosine
(the component orthogonal to the other gradient is kept), pairs above their target are left
alone, the targets follow an EMA of the observed cosines, and with zero targets GradVac is PCGrad."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_tasks

from polytask.weighting import create_weighting
from polytask.weighting.gradvac import gradvac_coefficients
from polytask.weighting.pcgrad import pcgrad_coefficients


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("target", [0.5, 0.9, -0.3])
def test_cosine_below_the_target_is_raised_to_it(target):
    g = torch.tensor([[2.0, 0.0, 0.0], [-1.0, 1.0, 0.5]], dtype=torch.float64)  # cos ~ -0.67
    targets = torch.full((2, 2), target, dtype=torch.float64)
    coef, phi = gradvac_coefficients(g @ g.T, targets, [[0, 1], [1, 0]])
    vac = coef @ g
    assert cos(vac[0], g[1]) == pytest.approx(target, abs=1e-12)
    assert cos(vac[1], g[0]) == pytest.approx(target, abs=1e-12)
    # only a multiple of g_j was added: the part of g_i orthogonal to g_j is unchanged
    perp = lambda v, u: v - (v @ u) / (u @ u) * u  # noqa: E731
    torch.testing.assert_close(perp(vac[0], g[1]), perp(g[0], g[1]))
    assert phi[0, 1] == pytest.approx(cos(g[0], g[1]))


def test_cosine_above_the_target_is_unchanged():
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)  # cos = 1/sqrt(2)
    targets = torch.full((2, 2), 0.5, dtype=torch.float64)
    coef, phi = gradvac_coefficients(g @ g.T, targets, [[0, 1], [1, 0]])
    torch.testing.assert_close(coef, torch.eye(2, dtype=torch.float64))
    assert phi[0, 1] == pytest.approx(1 / math.sqrt(2))


@pytest.mark.parametrize("seed", range(5))
def test_zero_targets_are_pcgrad_for_two_tasks(seed):
    g = torch.randn(2, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    m = g @ g.T
    coef, _ = gradvac_coefficients(m, torch.zeros(2, 2, dtype=torch.float64), [[0, 1], [1, 0]])
    torch.testing.assert_close(coef, pcgrad_coefficients(m, [[0, 1], [1, 0]]))


def test_targets_follow_an_ema_of_the_observed_cosines():
    w = create_weighting("gradvac", make_tasks(3), {"beta": 0.1})
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # cos = -1/sqrt(2); task t1 is not labelled
    w.active_tasks = ["t0", "t2"]
    w.combine(g, g @ g.T, torch.ones(2))
    c = -1 / math.sqrt(2)
    expected = torch.zeros(3, 3, dtype=torch.float64)
    expected[0, 2] = expected[2, 0] = 0.1 * c
    torch.testing.assert_close(w.targets, expected)
    w.combine(g, g @ g.T, torch.ones(2))
    # second step: each task visits the other one first, so the observed cosine is c again
    expected[0, 2] = expected[2, 0] = 0.9 * 0.1 * c + 0.1 * c
    torch.testing.assert_close(w.targets, expected)
    assert w.state()["targets"]["t0"]["t2"] == pytest.approx(float(expected[0, 2]))
