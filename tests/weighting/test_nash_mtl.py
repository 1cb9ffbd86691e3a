"""Nash-MTL known answers: the weights solve G G^T alpha = 1/alpha (the Nash bargaining
solution); orthogonal gradients get alpha_t = 1/|g_t|; the method uses the Frobenius-normalised
Gram matrix as the reference does, clips the update's norm, and reuses alpha between updates."""

from __future__ import annotations

import pytest
import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.models import create_model
from polytask.weighting import StepContext, create_weighting
from polytask.weighting.nash_mtl import nash_mtl_weights


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 6])
def test_weights_solve_the_fixed_point_equation(seed, k):
    g = torch.randn(k, 12, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g = g * torch.logspace(-2, 1, k, dtype=torch.float64)[:, None]
    m = g @ g.T
    alpha = nash_mtl_weights(m)
    assert bool((alpha > 0).all())
    torch.testing.assert_close(m @ alpha, 1 / alpha, rtol=1e-5, atol=0)
    # ||alpha^T G||^2 = alpha^T M alpha = sum_t alpha_t / alpha_t = k
    assert float(alpha @ m @ alpha) == pytest.approx(k, rel=1e-5)


def test_orthogonal_gradients_are_normalised():
    g = torch.diag(torch.tensor([0.5, 2.0, 10.0], dtype=torch.float64))
    torch.testing.assert_close(nash_mtl_weights(g @ g.T), torch.tensor([2.0, 0.5, 0.1], dtype=torch.float64),
                               rtol=1e-7, atol=0)


def test_warm_start_gives_the_same_solution():
    g = torch.randn(4, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    m = g @ g.T
    m = m / torch.linalg.matrix_norm(m)
    cold = nash_mtl_weights(m)
    warm = nash_mtl_weights(m, init=cold * 1.3)
    torch.testing.assert_close(warm, cold, rtol=1e-8, atol=0)


def test_method_uses_the_normalised_gram_and_clips_the_update():
    g = torch.randn(3, 8, generator=torch.Generator().manual_seed(1)) * 5
    m = g @ g.T
    w = create_weighting("nash_mtl", make_tasks(3), {"max_norm": 0.0})
    w.active_tasks = ["t0", "t1", "t2"]
    update, alpha = w.direction(g, m, torch.ones(3))
    mn = (m / torch.linalg.matrix_norm(m)).double()
    torch.testing.assert_close(mn @ alpha.double(), 1 / alpha.double(), rtol=1e-5, atol=0)
    torch.testing.assert_close(update, alpha @ g)
    clipped = create_weighting("nash_mtl", make_tasks(3), {"max_norm": 0.5})
    clipped.active_tasks = ["t0", "t1", "t2"]
    update2, alpha2 = clipped.direction(g, m, torch.ones(3))
    assert float(update.norm()) > 0.5
    assert float(update2.norm()) == pytest.approx(0.5, rel=1e-5)
    torch.testing.assert_close(alpha2, alpha * 0.5 / update.norm())
    torch.testing.assert_close(update2, alpha2 @ g)


def test_opposite_and_zero_gradients_stay_finite():
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    alpha = nash_mtl_weights(g @ g.T)
    assert torch.isfinite(alpha).all() and bool((alpha[:2] > 0).all())
    assert float(alpha[2]) == 0.0  # a zero gradient has no say
    assert float((alpha @ g).norm()) < 1e-3  # the cancelling pair: large equal weights
    assert torch.equal(nash_mtl_weights(torch.zeros(2, 2)), torch.zeros(2, dtype=torch.float64))


def test_update_every_reuses_alpha_with_one_gradient():
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("shared_bottom", SPEC, tasks)
    w = create_weighting("nash_mtl", tasks, {"update_every": 2, "max_norm": 0.0})
    w.setup(model)
    seen = []
    for seed in range(3):
        model.zero_grad()
        batch = make_batch(SPEC, tasks, 16, seed=seed)
        out = model(batch.features)
        losses = {t.name: t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks}
        shared = model.shared_parameters()
        g = torch.stack([torch.cat([x.reshape(-1) for x in torch.autograd.grad(losses[t.name], shared, retain_graph=True)])
                         for t in tasks])
        head = next(model.heads.parameters())
        head_expected = sum(torch.autograd.grad(losses[t.name], head, retain_graph=True)[0] for t in tasks)
        weights = w.backward(losses, {}, StepContext(model=model, masks=batch.masks))
        alpha = torch.stack([weights[t.name] for t in tasks])
        seen.append(alpha)
        torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared]), alpha @ g, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(head.grad, head_expected)
    torch.testing.assert_close(seen[1], seen[0])  # step 1 reuses step 0's weights
    assert not torch.allclose(seen[2], seen[0])  # step 2 solves again on its own batch
