"""IMTL known answers: IMTL-G's update has equal projections onto every unit task gradient (and
its weights sum to 1); IMTL-L scales the losses by learned e^{s_t} and trains s_t with the
gradient of e^{s_t} L_t - s_t, in both modes."""

from __future__ import annotations

import pytest
import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.models import create_model
from polytask.weighting import StepContext, create_weighting
from polytask.weighting.imtl import imtl_g_weights


def test_two_tasks_known_answer():
    # g1 = (1, 0), g2 = (0, 2): d = (a1, 2 a2) with d.u1 = d.u2 and a1 + a2 = 1 -> a = (2/3, 1/3)
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(imtl_g_weights(g @ g.T), torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_update_has_equal_projections_on_unit_task_gradients(seed, k):
    g = torch.randn(k, 10, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g = g * torch.logspace(-1, 1, k, dtype=torch.float64)[:, None]
    alpha = imtl_g_weights(g @ g.T)
    assert float(alpha.sum()) == pytest.approx(1.0)
    proj = (g / g.norm(dim=1, keepdim=True)) @ (alpha @ g)
    torch.testing.assert_close(proj, proj.mean().expand(k), rtol=1e-9, atol=1e-12)


def test_degenerate_cases_stay_finite():
    assert torch.equal(imtl_g_weights(torch.ones(1, 1)), torch.ones(1, dtype=torch.float64))
    g = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)  # parallel and zero
    assert torch.isfinite(imtl_g_weights(g @ g.T)).all()


@pytest.mark.parametrize("mode", ["representation", "parameter"])
def test_loss_balance_scales_losses_and_trains_the_scales(mode):
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("shared_bottom", SPEC, tasks)
    w = create_weighting("imtl", tasks, {"mode": mode})
    w.setup(model)
    with torch.no_grad():
        w.log_scale.copy_(torch.tensor([0.5, -0.3, 0.1]))
    batch = make_batch(SPEC, tasks, 16)
    out = model(batch.features)
    losses = {t.name: t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks}
    shared = model.shared_parameters()
    g = torch.stack([torch.cat([x.reshape(-1) for x in torch.autograd.grad(losses[t.name], shared, retain_graph=True)])
                     for t in tasks])
    if mode == "representation":
        rep_grads = torch.stack([torch.autograd.grad(losses[t.name], model.representation, retain_graph=True)[0].reshape(-1)
                                 for t in tasks])
    head = next(model.heads.parameters())  # task-specific: gets the scaled losses' plain sum
    head_expected = sum(s.exp() * torch.autograd.grad(losses[t.name], head, retain_graph=True)[0]
                        for s, t in zip(w.log_scale.detach(), tasks))
    weights = w.backward(losses, {}, StepContext(model=model, masks=batch.masks))
    # IMTL-G on the scaled gradients e^{s_t} g_t (of the representation or of the parameters)
    scaled = g * w.log_scale.detach().exp()[:, None]
    basis = scaled if mode == "parameter" else rep_grads * w.log_scale.detach().exp()[:, None]
    alpha = imtl_g_weights(basis.double() @ basis.double().T).float()
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    torch.testing.assert_close(got, alpha @ scaled, rtol=1e-4, atol=1e-6)
    # reported weights are the coefficients on the raw task gradients
    torch.testing.assert_close(torch.stack([weights[t.name] for t in tasks]), alpha * w.log_scale.detach().exp())
    torch.testing.assert_close(got, torch.stack([weights[t.name] for t in tasks]) @ g, rtol=1e-4, atol=1e-6)
    # d/ds (e^s L - s) = e^s L - 1
    expected = torch.stack([losses[t.name].detach() for t in tasks]) * w.log_scale.detach().exp() - 1
    torch.testing.assert_close(w.log_scale.grad, expected)
    torch.testing.assert_close(head.grad, head_expected)


def test_without_loss_balance_there_are_no_parameters():
    w = create_weighting("imtl", make_tasks(2), {"loss_balance": False})
    assert list(w.parameters()) == []
    assert len(list(create_weighting("imtl", make_tasks(2)).parameters())) == 1
