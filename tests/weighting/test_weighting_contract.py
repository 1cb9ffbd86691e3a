"""Weighting contract: registry-driven checks plus known answers for equal and fixed weights."""

from __future__ import annotations

import pytest
import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.registry import WEIGHTINGS
from polytask.weighting import StepContext, Weighting, create_weighting


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


# -- the backward pass does what the reported weights say ---------------------------------------------
MODES = [(name, mode) for name, cls in WEIGHTINGS.items() for mode in cls.modes]


def _reached_parameters(model, losses):
    """Parameters some task loss reaches (their gradient must exist after any weighting's backward)."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(sum(losses.values()), params, retain_graph=True, allow_unused=True)
    return {id(p) for p, g in zip(params, grads) if g is not None}


def _expected(model, tasks, batch, coefficients, params):
    """Gradient of ``sum_t coefficients[t] * L_t`` w.r.t. ``params`` in a fresh forward pass."""
    out = model(batch.features)
    total = sum(float(coefficients[t.name]) * t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks)
    return torch.autograd.grad(total, params, allow_unused=True)


def check_backward(weighting, tasks, model, batch):
    """What every weighting's ``backward`` must do, as assertions: every parameter a task loss
    reaches gets a finite gradient, some shared parameter a non-zero one, and where the reported
    weights determine the gradient (loss-level methods: ``sum_t w_t L_t``; gradient methods whose
    update is ``alpha^T G``: that for the shared parameters, the plain sum for the others), it is
    that gradient."""
    from polytask.weighting.gradient import GradientWeighting

    weighting.setup(model)
    out = model(batch.features)
    losses = {t.name: t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks}
    reached = _reached_parameters(model, losses)
    weights = weighting.backward(losses, {}, StepContext(model=model, masks=batch.masks))
    named = [(n, p) for n, p in model.named_parameters() if id(p) in reached]
    for n, p in named:
        assert p.grad is not None, f"no gradient at {n}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient at {n}"
    shared = model.shared_parameters()
    assert any(p.grad.abs().sum() > 0 for p in shared), "every shared parameter's gradient is zero"
    is_gradient_method = isinstance(weighting, GradientWeighting)
    if is_gradient_method and type(weighting).direction is not GradientWeighting.direction:
        return  # not a linear combination (GradDrop): no known answer beyond the above
    shared_ids = {id(p) for p in shared}
    got = {n: p.grad.clone() for n, p in named}
    shared_named = [(n, p) for n, p in named if id(p) in shared_ids]
    own_named = [(n, p) for n, p in named if id(p) not in shared_ids]
    own_coefficients = {n: 1.0 for n in weights} if is_gradient_method else weights
    for group, coefficients in ((shared_named, weights), (own_named, own_coefficients)):
        if not group:
            continue
        expected = _expected(model, tasks, batch, coefficients, [p for _, p in group])
        for (n, _), e in zip(group, expected):
            torch.testing.assert_close(got[n], e, atol=1e-6, rtol=1e-4, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("name, mode", MODES)
def test_backward_gives_the_gradient_the_reported_weights_imply(name, mode):
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model("shared_bottom", SPEC, tasks)
    check_backward(create_weighting(name, tasks, {"mode": mode}), tasks, model, make_batch(SPEC, tasks, 8))


class _NoBackward(Weighting):
    """Reports equal weights and differentiates nothing."""

    def backward(self, losses, extra, ctx):
        return {n: torch.ones(()) for n in losses}


class _Misreports(Weighting):
    """Reports weight 1 for every task but backpropagates twice the first task's loss."""

    def weights(self, losses, ctx=None):
        return {n: torch.ones(()) for n in losses}

    def backward(self, losses, extra, ctx):
        first = next(iter(losses))
        ctx.backward(sum(losses.values()) + losses[first])
        return self.weights(losses, ctx)


@pytest.mark.parametrize("broken, says", [(_NoBackward, "no gradient"), (_Misreports, "not close")])
def test_the_backward_check_rejects_a_broken_weighting(broken, says):
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model("shared_bottom", SPEC, tasks)
    with pytest.raises(AssertionError, match=says):
        check_backward(broken(tasks), tasks, model, make_batch(SPEC, tasks, 8))
