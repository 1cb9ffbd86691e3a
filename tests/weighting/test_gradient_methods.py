"""End-to-end check of every gradient-level method through the GradientWeighting machinery: after
``weighting.backward`` the shared parameters' gradient is ``sum_t w_t g_t`` for the weights ``w``
the method reports and the per-task gradients ``g_t`` computed independently (per-task autograd),
in every mode the method supports; task-specific parameters get the plain sum of their task's
gradients."""

from __future__ import annotations

import pytest
import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.models import create_model
from polytask.registry import WEIGHTINGS
from polytask.weighting import StepContext, create_weighting

LINEAR = ["pcgrad", "mgda", "cagrad", "imtl", "nash_mtl", "aligned_mtl", "upgrad", "gradvac"]
CASES = [(name, mode) for name in LINEAR for mode in WEIGHTINGS.get(name).modes]
PARAMS = {"nash_mtl": {"max_norm": 0.05}, "mgda": {"normalize": "l2"}}  # nash: make the clip act


def flat_task_gradients(model, losses, names):
    shared = model.shared_parameters()
    rows = []
    for n in names:
        grads = torch.autograd.grad(losses[n], shared, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, shared)]))
    return torch.stack(rows)


def step(name, mode, params=None, masked=(), seed=0):
    torch.manual_seed(seed)
    tasks = make_tasks(3)
    model = create_model("shared_bottom", SPEC, tasks)
    w = create_weighting(name, tasks, {**(params or {}), "mode": mode})
    w.setup(model)
    batch = make_batch(SPEC, tasks, 16, seed=seed)
    for n in masked:
        batch.masks[n][:] = False
    out = model(batch.features)
    losses = {t.name: t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks}
    names = [t.name for t in tasks if t.name not in masked]
    g = flat_task_gradients(model, losses, names)
    shared_ids = {id(p) for p in model.shared_parameters()}
    own = [(n, p) for n, p in model.named_parameters() if id(p) not in shared_ids]
    own_expected = {}
    for n, p in own:
        per = [torch.autograd.grad(losses[t], p, retain_graph=True, allow_unused=True)[0] for t in names]
        own_expected[n] = sum(x if x is not None else torch.zeros_like(p) for x in per)
    weights = w.backward(losses, {}, StepContext(model=model, masks=batch.masks))
    got = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])
    return model, w, names, g, got, weights, own_expected


@pytest.mark.parametrize("name,mode", CASES)
def test_shared_gradient_is_the_reported_combination_of_task_gradients(name, mode):
    model, w, names, g, got, weights, own_expected = step(name, mode, PARAMS.get(name))
    assert w.mode == mode
    alpha = torch.stack([weights[n] for n in names]).float()
    torch.testing.assert_close(got, alpha @ g, rtol=1e-4, atol=1e-6)
    for n, p in model.named_parameters():
        if n in own_expected:
            torch.testing.assert_close(p.grad, own_expected[n], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,mode", CASES)
def test_a_task_without_labels_gets_weight_zero_and_no_share(name, mode):
    _, _, names, g, got, weights, _ = step(name, mode, PARAMS.get(name), masked=("t1",))
    assert names == ["t0", "t2"] and float(weights["t1"]) == 0.0
    alpha = torch.stack([weights[n] for n in names]).float()
    torch.testing.assert_close(got, alpha @ g, rtol=1e-4, atol=1e-6)


def test_default_modes():
    expected = {"mgda": "representation", "cagrad": "parameter", "imtl": "representation",
                "nash_mtl": "parameter", "aligned_mtl": "parameter", "upgrad": "parameter",
                "gradvac": "parameter", "graddrop": "representation"}
    for name, mode in expected.items():
        assert create_weighting(name, make_tasks(2)).mode == mode
    assert WEIGHTINGS.get("nash_mtl").modes == ("parameter",)
    assert WEIGHTINGS.get("gradvac").modes == ("parameter",)
