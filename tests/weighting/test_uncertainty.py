"""Uncertainty weighting (Kendall et al., 2018): the learned log-variances reach their closed-form
optimum, the reported weights are the loss factors, and a masked task takes no part."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SPEC, make_batch, make_tasks
from torch import nn

from polytask.data.table import TensorTable
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.tasks import Task
from polytask.train.trainer import Trainer
from polytask.weighting import StepContext, create_weighting

TASKS = [Task("cls", kind="binary"), Task("reg", kind="regression"), Task("multi", kind="multiclass", num_classes=3)]


def _ctx(masks=None):
    return StepContext(model=nn.Module(), masks=masks or {})


@pytest.mark.parametrize("form", ["auto", "regression"])
def test_log_variances_converge_to_the_closed_form_optimum(form):
    # constant losses, SGD on s alone: regression form 1/2 e^-s L + s/2 -> s* = log L;
    # classification form e^-s L + s/2 -> s* = log 2L
    values = {"cls": 0.7, "reg": 3.0, "multi": 0.2}
    w = create_weighting("uncertainty", TASKS, {"form": form})
    opt = torch.optim.SGD(w.parameters(), lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        losses = {n: torch.tensor(v, requires_grad=True) for n, v in values.items()}
        w.backward(losses, {}, _ctx())
        opt.step()
    s = dict(zip(w.task_names, w.log_vars.detach().tolist()))
    classification = {"cls", "multi"} if form == "auto" else set()
    for name, v in values.items():
        expected = math.log(2 * v) if name in classification else math.log(v)
        assert s[name] == pytest.approx(expected, abs=1e-5), name


def test_reported_weights_are_the_loss_factors_and_the_gradient_of_the_loss():
    w = create_weighting("uncertainty", TASKS, {"init": 0.3})
    losses = {n: torch.tensor(1.5, requires_grad=True) for n in w.task_names}
    weights = w.backward(losses, {}, _ctx())
    factor = {"cls": 1.0, "reg": 0.5, "multi": 1.0}
    for n in w.task_names:
        assert float(weights[n]) == pytest.approx(factor[n] * math.exp(-0.3))
        assert float(losses[n].grad) == pytest.approx(float(weights[n]))
    # d/ds (c e^-s L + s/2) = -c e^-s L + 1/2
    expected = [0.5 - factor[n] * math.exp(-0.3) * 1.5 for n in w.task_names]
    torch.testing.assert_close(w.log_vars.grad, torch.tensor(expected))


def test_regression_form_uses_one_half_for_every_task():
    w = create_weighting("uncertainty", TASKS, {"form": "regression"})
    weights = w.backward({n: torch.tensor(1.0, requires_grad=True) for n in w.task_names}, {}, _ctx())
    assert all(float(v) == pytest.approx(0.5) for v in weights.values())


def test_masked_task_contributes_nothing_not_even_its_log_variance_term():
    w = create_weighting("uncertainty", TASKS)
    masks = {"cls": torch.ones(4, dtype=torch.bool), "reg": torch.zeros(4, dtype=torch.bool),
             "multi": torch.ones(4, dtype=torch.bool)}
    losses = {"cls": torch.tensor(1.0, requires_grad=True), "reg": torch.tensor(0.0, requires_grad=True),
              "multi": torch.tensor(2.0, requires_grad=True)}
    weights = w.backward(losses, {}, _ctx(masks))
    assert float(weights["reg"]) == 0.0
    assert float(w.log_vars.grad[1]) == 0.0
    assert float(w.log_vars.grad[0]) != 0.0 and float(w.log_vars.grad[2]) != 0.0


def test_bad_form_is_a_config_error():
    with pytest.raises(ConfigError, match="form"):
        create_weighting("uncertainty", TASKS, {"form": "classification"})


def test_trainer_learns_the_log_variances():
    tasks = make_tasks(3)
    b = make_batch(SPEC, tasks, 64)
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, tasks, {"bottom_hidden": [8], "tower_hidden": [4]})
    w = create_weighting("uncertainty", tasks)
    trainer = Trainer(model, tasks, weighting=w, epochs=2, batch_size=16, patience=None, progress=False,
                      device="cpu", lr=0.05)
    history = trainer.fit(TensorTable(b.features, b.labels, b.masks, b.weights))
    assert (w.log_vars.detach() != 0).all()
    assert set(history[-1]["weighting"]["log_var"]) == {t.name for t in tasks}
