"""GradDrop known answers: each coordinate keeps only the positive or only the negative task
gradients; where all tasks agree (sign purity 0 or 1) nothing is dropped; the positive side is
kept with probability equal to the sign purity."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tasks

from polytask.weighting import create_weighting
from polytask.weighting.graddrop import graddrop_update


def test_agreeing_coordinates_are_kept_whatever_the_draw():
    g = torch.tensor([[1.0, -2.0, 0.0], [3.0, -1.0, 0.0]])  # P = 1, P = 0, all zero
    for u in (torch.zeros(3), torch.full((3,), 0.5), torch.full((3,), 1 - 1e-7)):
        torch.testing.assert_close(graddrop_update(g, u), torch.tensor([4.0, -3.0, 0.0]))


def test_mixed_coordinates_keep_one_sign():
    g = torch.tensor([[3.0, 2.0], [-1.0, -2.0], [0.5, 0.0]])  # P = (1/2 (1 + 2.5/4.5), 1/2)
    torch.testing.assert_close(graddrop_update(g, torch.tensor([0.1, 0.4])), torch.tensor([3.5, 2.0]))
    torch.testing.assert_close(graddrop_update(g, torch.tensor([0.9, 0.6])), torch.tensor([-1.0, -2.0]))


def test_positive_side_is_kept_with_probability_equal_to_the_purity():
    n = 20_000
    g = torch.tensor([[3.0], [-1.0]]).expand(2, n)  # P = 1/2 (1 + 2/4) = 3/4
    u = torch.rand(n, generator=torch.Generator().manual_seed(0))
    update = graddrop_update(g, u)
    assert set(update.unique().tolist()) == {3.0, -1.0}
    assert float((update > 0).float().mean()) == pytest.approx(0.75, abs=0.015)


@pytest.mark.parametrize("mode", ["representation", "parameter"])
def test_method_reports_ones_and_is_seeded(mode):
    g = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    runs = []
    for _ in range(2):
        w = create_weighting("graddrop", make_tasks(3), {"seed": 7, "mode": mode})
        update, weights = w.direction(g, g @ g.T, torch.ones(3))
        runs.append(update)
        assert torch.equal(weights, torch.ones(3))
    assert torch.equal(runs[0], runs[1])
    u = torch.rand(50, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(runs[0], graddrop_update(g, u))
    # every coordinate is the sum of the positive or of the negative parts
    pos, neg = g.clamp_min(0).sum(0), g.clamp_max(0).sum(0)
    assert bool(((runs[0] - pos).abs() < 1e-6).logical_or((runs[0] - neg).abs() < 1e-6).all())


@pytest.mark.parametrize("mode", ["representation", "parameter"])
def test_through_the_machinery(mode):
    from conftest import SPEC, make_batch

    from polytask.models import create_model
    from polytask.weighting import StepContext

    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("shared_bottom", SPEC, tasks)
    w = create_weighting("graddrop", tasks, {"mode": mode, "seed": 3})
    w.setup(model)
    batch = make_batch(SPEC, tasks, 16)
    out = model(batch.features)
    losses = {t.name: t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks}
    shared = model.shared_parameters()
    inputs = [model.representation] if mode == "representation" else shared
    g = torch.stack([torch.cat([x.reshape(-1) for x in torch.autograd.grad(losses[t.name], inputs, retain_graph=True)])
                     for t in tasks])
    update = graddrop_update(g, torch.rand(g.shape[1], generator=torch.Generator().manual_seed(3)))
    if mode == "representation":  # the trunk gets the dropped representation gradient
        rep = model.representation
        update = torch.cat([x.reshape(-1) for x in
                            torch.autograd.grad(rep, shared, update.view_as(rep), retain_graph=True)])
    weights = w.backward(losses, {}, StepContext(model=model, masks=batch.masks))
    assert all(float(v) == 1.0 for v in weights.values())
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared]), update, rtol=1e-5, atol=1e-7)
