"""GradNorm (Chen et al., 2018): the weight logits get the gradient of L_grad (hand-computed and
explicit-expression known answers), the network gets the weighted sum, the slower-training task
gains weight, the weights sum to T, and masked tasks are left out."""

from __future__ import annotations

import pytest
import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.data.schema import InputSpec
from polytask.data.table import TensorTable
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.tasks import Task
from polytask.train.trainer import Trainer
from polytask.weighting import StepContext, create_weighting
from polytask.weighting.gradnorm import gradnorm_loss


def test_logit_gradient_of_a_hand_computed_case():
    # w = 2 softmax(0) = (1, 1); norms (1, 3); equal training rates: G = (1, 3), targets mean(G) = 2
    # dL/dG = (-1, +1); dL/dw = (-1, 3); dw/dxi = [[.5, -.5], [-.5, .5]]  ->  dL/dxi = (-2, 2)
    xi = torch.zeros(2, requires_grad=True)
    loss = gradnorm_loss(xi, torch.tensor([1.0, 3.0]), torch.tensor([0.7, 0.7]), torch.tensor([0, 1]), 1.5)
    assert float(loss.detach()) == pytest.approx(2.0)
    loss.backward()
    torch.testing.assert_close(xi.grad, torch.tensor([-2.0, 2.0]))


def _setup(masked=()):
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("shared_bottom", SPEC, tasks)
    w = create_weighting("gradnorm", tasks, {"alpha": 1.5})
    w.setup(model)
    batch = make_batch(SPEC, tasks, 16)
    for n in masked:
        batch.masks[n][:] = False
    return tasks, model, w, batch


def _losses(tasks, model, batch):
    out = model(batch.features)
    return {t.name: t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks}


@pytest.mark.parametrize("masked", [(), ("t1",)])
def test_logit_gradient_matches_the_explicit_expression(masked):
    tasks, model, w, batch = _setup(masked)
    with torch.no_grad():
        w.logits.copy_(torch.tensor([0.3, -0.2, 0.1]))
        w.initial_losses.copy_(torch.tensor([2.0, 1.0, 3.0]))
    losses = _losses(tasks, model, batch)
    weights = w.backward(losses, {}, StepContext(model=model, masks=batch.masks))
    got_xi = w.logits.grad.clone()
    got_net = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    # the expected values, from the formulas on a fresh forward pass
    model.zero_grad()
    losses = _losses(tasks, model, batch)
    active = [n for n in ("t0", "t1", "t2") if n not in masked]
    idx = [int(n[1]) for n in active]
    layer = model.last_shared_parameters()
    assert layer and all(any(p is q for q in model.bottom.parameters()) for p in layer)
    norms = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[n], layer, retain_graph=True)]).norm()
                         for n in active])
    xi = torch.tensor([0.3, -0.2, 0.1], requires_grad=True)
    wt = 3 * torch.softmax(xi, 0)
    g = wt[idx] * norms
    rel = torch.stack([losses[n].detach() for n in active]) / torch.tensor([2.0, 1.0, 3.0])[idx]
    r = rel / rel.mean()
    l_grad = (g - (g.mean() * r**1.5).detach()).abs().sum()
    (expected_xi,) = torch.autograd.grad(l_grad, xi)
    torch.testing.assert_close(got_xi, expected_xi, rtol=1e-5, atol=1e-7)
    sum(wt[i].detach() * losses[n] for i, n in zip(idx, active)).backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(got_net[n], p.grad, rtol=1e-5, atol=1e-7)
    for i, n in enumerate(("t0", "t1", "t2")):
        assert float(weights[n]) == (0.0 if n in masked else pytest.approx(float(wt[i].detach())))


def test_initial_loss_is_taken_at_the_first_labelled_step():
    tasks, model, w, batch = _setup(("t1",))
    losses = _losses(tasks, model, batch)
    w.backward(losses, {}, StepContext(model=model, masks=batch.masks))
    assert torch.isnan(w.initial_losses[1]) and not torch.isnan(w.initial_losses[[0, 2]]).any()
    first = w.initial_losses.clone()
    batch.masks["t1"][:] = True
    losses = _losses(tasks, model, batch)
    w.backward(losses, {}, StepContext(model=model, masks=batch.masks))
    assert float(w.initial_losses[1]) == pytest.approx(float(losses["t1"].detach()))
    torch.testing.assert_close(w.initial_losses[[0, 2]], first[[0, 2]])


def _regression_table(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    easy = x @ torch.tensor([1.0, -1.0, 0.5, 2.0])  # learnable exactly: its loss falls fast
    hard = x @ torch.tensor([0.5, 1.0, -1.0, 0.0]) + 1.5 * torch.randn(n, generator=g)  # noise floor: slow
    ones = torch.ones(n, dtype=torch.bool)
    return TensorTable({"numeric": x}, {"easy": easy, "hard": hard}, {"easy": ones, "hard": ones})


def test_the_slower_training_task_gains_weight_and_weights_sum_to_t():
    tasks = [Task("easy", kind="regression"), Task("hard", kind="regression")]
    torch.manual_seed(0)
    model = create_model("shared_bottom", InputSpec(numeric_dim=4), tasks, {"bottom_hidden": [16], "tower_hidden": []})
    w = create_weighting("gradnorm", tasks)
    trainer = Trainer(model, tasks, weighting=w, epochs=4, batch_size=32, patience=None, progress=False,
                      device="cpu", lr=0.01)
    history = trainer.fit(_regression_table())
    weights = history[-1]["weighting"]["weights"]
    assert weights["hard"] > weights["easy"]
    assert sum(weights.values()) == pytest.approx(2.0)
    assert sum(history[-1]["weights"].values()) == pytest.approx(2.0)


def test_alpha_must_be_non_negative_and_mode_is_loss_only():
    with pytest.raises(ConfigError, match="alpha"):
        create_weighting("gradnorm", make_tasks(2), {"alpha": -1.0})
    with pytest.raises(ConfigError, match="weighting.mode"):
        create_weighting("gradnorm", make_tasks(2), {"mode": "parameter"})
