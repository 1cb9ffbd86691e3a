"""PCGrad known answers: two conflicting 2-D gradients are projected onto each other's normal
planes (no negative inner product left); non-conflicting ones are left as they are."""

from __future__ import annotations

import torch
from conftest import make_tasks

from polytask.weighting import create_weighting
from polytask.weighting.pcgrad import pcgrad_coefficients


def test_conflicting_pair_is_projected_to_orthogonality():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)  # g1 . g2 = -1
    coef = pcgrad_coefficients(g @ g.T, [[0, 1], [1, 0]])
    pc = coef @ g
    # g1 - (g1.g2)/|g2|^2 g2 = (1, 0) + 1/2 (-1, 1);  g2 - (g2.g1)/|g1|^2 g1 = (-1, 1) + (1, 0)
    torch.testing.assert_close(pc, torch.tensor([[0.5, 0.5], [0.0, 1.0]], dtype=torch.float64))
    assert float(pc[0] @ g[1]) >= -1e-12 and float(pc[1] @ g[0]) >= -1e-12
    w = create_weighting("pcgrad", make_tasks(2))
    alpha = w.combine(g.float(), (g @ g.T).float(), torch.ones(2))
    torch.testing.assert_close(alpha @ g.float(), torch.tensor([0.5, 1.5]))


def test_non_conflicting_pair_is_unchanged():
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    coef = pcgrad_coefficients(g @ g.T, [[0, 1], [1, 0]])
    torch.testing.assert_close(coef, torch.eye(2, dtype=torch.float64))
