"""FAMO (Liu et al., 2023): positive normalised weights giving the gradient of c sum z log l, the
after-step logit update of Algorithm 1 (toward the task whose loss decreased least), masking and
the all-reduce of the recomputed losses."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SPEC, make_batch, make_tasks
from torch import nn

from polytask.data.table import TensorTable
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.train.trainer import Trainer
from polytask.weighting import StepContext, create_weighting

TASKS = make_tasks(3)
NAMES = ["t0", "t1", "t2"]


def _masks(masked=()):
    return {n: torch.full((4,), n not in masked) for n in NAMES}


def _losses(values):
    return {n: torch.tensor(v, requires_grad=True) for n, v in zip(NAMES, values)}


def test_weights_are_positive_normalised_and_the_gradient_of_the_log_form():
    w = create_weighting("famo", TASKS)
    with torch.no_grad():
        w.logits.copy_(torch.tensor([0.5, -0.3, 0.1]))
    values = [0.8, 2.5, 0.1]
    losses = _losses(values)
    weights = w.backward(losses, {}, StepContext(model=nn.Module(), masks=_masks()))
    v = torch.stack([weights[n] for n in NAMES])
    assert (v > 0).all() and float(v.sum()) == pytest.approx(1.0)
    # explicit: c sum_t z_t log(L_t + eps), c = 1 / sum_t z_t / (L_t + eps) detached
    explicit = _losses(values)
    z = torch.softmax(torch.tensor([0.5, -0.3, 0.1]), 0)
    ell = torch.stack([explicit[n] for n in NAMES]) + 1e-8
    c = 1.0 / (z / ell.detach()).sum()
    (c * (z * ell.log()).sum()).backward()
    for n in NAMES:
        assert float(losses[n].grad) == pytest.approx(float(explicit[n].grad), rel=1e-6)
        assert float(weights[n]) == pytest.approx(float(explicit[n].grad), rel=1e-6)


def test_after_step_moves_weight_to_the_task_whose_loss_decreased_least():
    w = create_weighting("famo", TASKS)
    before, after = [1.0, 1.0, 2.0], [0.5, 0.9, 1.2]  # relative decreases: t0 50%, t1 10%, t2 40%
    ctx = StepContext(model=nn.Module(), masks=_masks())
    w.after_step(_losses(before), lambda: _losses(after), ctx)
    d = torch.tensor([math.log(b / a) for b, a in zip(before, after)])
    z = torch.full((3,), 1 / 3)
    delta = z * d - z * (z * d).sum()  # J_softmax^T d at xi = 0
    torch.testing.assert_close(w.logits, -0.025 * delta)  # xi <- xi - beta (delta + gamma * 0)
    assert int(w.logits.argmax()) == 1 and int(w.logits.argmin()) == 0
    weights = w.backward(_losses([1.0, 1.0, 1.0]), {}, ctx)
    z_now = torch.softmax(w.logits, 0)
    assert float(z_now[1]) > 1 / 3 > float(z_now[0])
    assert float(weights["t1"]) > float(weights["t0"])  # equal losses: weights follow z
    # the decay term: with no change in the losses, xi shrinks by (1 - beta gamma)
    xi = w.logits.clone()
    w.after_step(_losses(after), lambda: _losses(after), ctx)
    torch.testing.assert_close(w.logits, xi * (1 - 0.025 * 1e-3))


def test_masked_task_is_excluded():
    w = create_weighting("famo", TASKS)
    ctx = StepContext(model=nn.Module(), masks=_masks(("t1",)))
    weights = w.backward(_losses([1.0, 0.0, 2.0]), {}, ctx)
    assert float(weights["t1"]) == 0.0
    assert float(weights["t0"] + weights["t2"]) == pytest.approx(1.0)
    w.after_step(_losses([1.0, 0.0, 2.0]), lambda: _losses([0.5, 0.0, 1.9]), ctx)
    assert float(w.logits[1]) == 0.0
    assert float(w.logits[2]) > 0.0 > float(w.logits[0])
    # the update over the two labelled tasks is the two-task softmax update
    d = torch.tensor([math.log(2.0), math.log(2.0 / 1.9)])
    z = torch.full((2,), 0.5)
    torch.testing.assert_close(w.logits[[0, 2]], -0.025 * (z * d - z * (z * d).sum()))
    weights = w.backward(_losses([0.0, 0.0, 0.0]), {}, StepContext(model=nn.Module(), masks=_masks(NAMES)))
    assert all(float(v) == 0.0 for v in weights.values())


def test_losses_are_all_reduced_before_the_update():
    calls = []

    def all_reduce(t, op="sum"):
        calls.append(op)
        return t + 1.0 if op == "mean" else t  # pretend another process saw losses one higher

    w = create_weighting("famo", TASKS)
    ctx = StepContext(model=nn.Module(), masks=_masks(), all_reduce=all_reduce)
    w.after_step(_losses([1.0, 1.0, 1.0]), lambda: _losses([0.0, 0.5, 1.0]), ctx)
    assert calls.count("mean") == 2
    d = torch.tensor([math.log(2.0 / 1.0), math.log(2.0 / 1.5), 0.0])  # of the averaged losses
    z = torch.full((3,), 1 / 3)
    torch.testing.assert_close(w.logits, -0.025 * (z * d - z * (z * d).sum()))


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="w_lr"):
        create_weighting("famo", TASKS, {"w_lr": 0.0})
    with pytest.raises(ConfigError, match="min_losses"):
        create_weighting("famo", TASKS, {"min_losses": {"nope": 0.0}})


def test_trainer_updates_the_logits_after_each_step_and_not_through_the_optimiser():
    b = make_batch(SPEC, TASKS, 64)
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [8], "tower_hidden": [4]})
    w = create_weighting("famo", TASKS)
    assert not list(w.parameters())
    history = Trainer(model, TASKS, weighting=w, epochs=2, batch_size=16, patience=None, progress=False,
                      device="cpu", lr=0.05).fit(TensorTable(b.features, b.labels, b.masks, b.weights))
    assert (w.logits != 0).all()
    z = history[-1]["weighting"]["z"]
    assert sum(z.values()) == pytest.approx(1.0)
    assert sum(history[-1]["weights"].values()) == pytest.approx(1.0)
