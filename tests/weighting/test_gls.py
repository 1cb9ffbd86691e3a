"""Geometric loss strategy (Chennupati et al., 2019): the update is the gradient of the geometric
mean of the labelled tasks' losses, and rescaling a task's loss leaves its direction unchanged."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SPEC, make_batch, make_tasks
from torch import nn

from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.weighting import StepContext, create_weighting

EPS = 1e-8


def _model_losses(masked=(), scale=None):
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("shared_bottom", SPEC, tasks)
    batch = make_batch(SPEC, tasks, 16)
    for n in masked:
        batch.masks[n][:] = False
    out = model(batch.features)
    scale = scale or {}
    losses = {t.name: scale.get(t.name, 1.0) * t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name])
              for t in tasks}
    return model, batch, losses


def _grads(model):
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}


@pytest.mark.parametrize("masked", [(), ("t1",)])
def test_gradient_is_the_gradient_of_the_geometric_mean(masked):
    model, batch, losses = _model_losses(masked)
    weights = create_weighting("gls", make_tasks(3)).backward(losses, {}, StepContext(model=model, masks=batch.masks))
    got = _grads(model)
    model.zero_grad()
    model, batch, losses = _model_losses(masked)
    active = [n for n in losses if n not in masked]
    torch.exp(torch.stack([torch.log(losses[n] + EPS) for n in active]).mean()).backward()
    for n, g in _grads(model).items():
        torch.testing.assert_close(got[n], g, rtol=1e-5, atol=1e-7)
    # effective weights dTotal/dL_t = total / (k L_t); every w_t L_t is the same
    values = {n: float(losses[n].detach()) for n in active}
    total = math.exp(sum(math.log(v + EPS) for v in values.values()) / len(active))
    for n in losses:
        expected = total / (len(active) * (values[n] + EPS)) if n in values else 0.0
        assert float(weights[n]) == pytest.approx(expected, rel=1e-5)
    products = [float(weights[n]) * values[n] for n in active]
    assert products == pytest.approx([products[0]] * len(active), rel=1e-5)


def test_rescaling_a_loss_only_scales_the_update():
    model, batch, losses = _model_losses()
    w = create_weighting("gls", make_tasks(3))
    before = w.backward(losses, {}, StepContext(model=model, masks=batch.masks))
    base = _grads(model)
    scale = {"t0": 10.0, "t1": 0.01, "t2": 3.0}
    model, batch, losses = _model_losses(scale=scale)
    after = w.backward(losses, {}, StepContext(model=model, masks=batch.masks))
    c = (10.0 * 0.01 * 3.0) ** (1 / 3)
    for n, g in _grads(model).items():
        torch.testing.assert_close(g, c * base[n], rtol=1e-4, atol=1e-7)
    # relative weights: w_t' c_t / w_t is the same for every task
    rel = [float(after[n]) * scale[n] / float(before[n]) for n in scale]
    assert rel == pytest.approx([c] * 3, rel=1e-5)


def test_no_labelled_task_gives_zero_weights_and_finite_gradients():
    w = create_weighting("gls", make_tasks(2))
    losses = {"t0": torch.tensor(0.0, requires_grad=True), "t1": torch.tensor(0.0, requires_grad=True)}
    masks = {n: torch.zeros(2, dtype=torch.bool) for n in losses}
    weights = w.backward(losses, {}, StepContext(model=nn.Module(), masks=masks))
    assert all(float(v) == 0.0 for v in weights.values())
    assert all(float(x.grad) == 0.0 for x in losses.values())


def test_eps_must_be_positive():
    with pytest.raises(ConfigError, match="eps"):
        create_weighting("gls", make_tasks(2), {"eps": 0.0})
