"""Weighting contract: registry-driven checks plus known answers for equal and fixed weights."""

from __future__ import annotations

import pytest
import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.registry import WEIGHTINGS
from polytask.weighting import StepContext, create_weighting


def _step(weighting_name, params=None, masks_off=()):
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("mmoe", SPEC, tasks)
    w = create_weighting(weighting_name, tasks, params)
    w.setup(model)
    batch = make_batch(SPEC, tasks, 12)
    for name in masks_off:
        batch.masks[name][:] = False
    out = model(batch.features)
    losses = {t.name: t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks}
    ctx = StepContext(model=model, masks=batch.masks)
    weights = w.backward(losses, {}, ctx)
    return model, tasks, batch, losses, weights


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_weighting_gives_finite_gradients_with_a_fully_masked_task(name):
    model, tasks, _, losses, weights = _step(name, masks_off=("t1",))
    assert float(losses["t1"].detach()) == 0.0
    for p in model.parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()
    assert set(weights) <= {t.name for t in tasks}


def test_equal_weighting_equals_the_plain_sum():
    model, tasks, batch, _, weights = _step("equal")
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    out = model(batch.features)
    sum(t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks).backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad)
    assert all(float(v) == 1.0 for v in weights.values())


def test_fixed_weights_scale_each_task():
    model, tasks, batch, _, weights = _step("fixed", {"weights": {"t0": 2.0, "t2": 0.5}})
    assert {k: float(v) for k, v in weights.items()} == {"t0": 2.0, "t1": 1.0, "t2": 0.5}
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    out = model(batch.features)
    scale = {"t0": 2.0, "t1": 1.0, "t2": 0.5}
    sum(scale[t.name] * t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks).backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad)


def test_fixed_weights_default_to_the_task_weight_field():
    from polytask.tasks import Task

    w = create_weighting("fixed", [Task("a", weight=3.0), Task("b")])
    losses = {"a": torch.tensor(1.0), "b": torch.tensor(1.0)}
    assert {k: float(v) for k, v in w.weights(losses).items()} == {"a": 3.0, "b": 1.0}


def test_fixed_weights_reject_unknown_task():
    with pytest.raises(ConfigError, match="nope"):
        create_weighting("fixed", make_tasks(2), {"weights": {"nope": 1.0}})


def test_unsupported_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="weighting.mode"):
        create_weighting("equal", make_tasks(2), {"mode": "representation"})


def test_penalty_terms_are_added_to_the_loss():
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model("shared_bottom", SPEC, tasks)
    w = create_weighting("equal", tasks)
    batch = make_batch(SPEC, tasks, 4)
    out = model(batch.features)
    losses = {t.name: t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks}
    penalty = model.bottom[0].weight.square().sum()
    w.backward(losses, {"l2": penalty}, StepContext(model, lambda t: t.backward(), batch.masks))
    g = model.bottom[0].weight.grad.clone()
    model.zero_grad()
    out = model(batch.features)
    (sum(t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks)
     + model.bottom[0].weight.square().sum()).backward()
    torch.testing.assert_close(g, model.bottom[0].weight.grad)
