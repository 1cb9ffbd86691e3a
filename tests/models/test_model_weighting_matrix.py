"""Every registered model with every registered weighting (each in its default mode): one optimiser
step of the trainer changes the model's shared parameters (for a model that shares none, every
parameter that got a gradient), or the combination is refused when the trainer sets the weighting
up against the model, with one ConfigError line naming both. Nothing may crash inside autograd.

Tiny on purpose (2 trained tasks, 4 rows, one step), so the whole matrix runs in seconds."""

from __future__ import annotations

import pytest
import torch
from conftest import make_batch, model_params, model_spec, model_tasks
from test_model_contract import ROLES

from polytask.data.table import TensorTable
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.registry import MODELS, WEIGHTINGS
from polytask.tasks import Task
from polytask.train.trainer import Trainer
from polytask.weighting import create_weighting
from polytask.weighting.base import shares_representation

#: small hyperparameters where a model's defaults are large (the matrix is about wiring, not size)
SMALL: dict[str, dict] = {}


def _setup(model_name: str):
    roles = ROLES.get(model_name, {})
    # a model with task roles (ESMM) trains two of its three role tasks; the others get two tasks
    tasks = [Task(role) for role in roles.values()] if roles else model_tasks(model_name, 2)
    torch.manual_seed(0)
    spec = model_spec(model_name)  # a text-only model (JMT) gets a text spec and a tagging task
    model = create_model(model_name, spec, tasks, {**roles, **model_params(model_name), **SMALL.get(model_name, {})})
    batch = make_batch(spec, tasks, 4)
    return model, tasks, TensorTable(batch.features, batch.labels, batch.masks, batch.weights)


def _one_step(model, tasks, table, weighting_name):
    trained = set(model.loss_task_names())
    weighting = create_weighting(weighting_name, [t for t in tasks if t.name in trained])
    trainer = Trainer(model, tasks, weighting=weighting, epochs=1, batch_size=len(table), patience=None,
                      optimizer="sgd", lr=0.1, device="cpu", progress=False, log_every=None, seed=0)
    trainer.fit(table)
    return trainer


COMBINATIONS = [(m, w) for m in MODELS.names() for w in WEIGHTINGS.names()]


@pytest.mark.parametrize("model_name, weighting_name", COMBINATIONS)
def test_one_step_moves_the_shared_parameters_or_is_refused(model_name, weighting_name):
    model, tasks, table = _setup(model_name)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    shared = {id(p) for p in model.shared_parameters()}
    try:
        _one_step(model, tasks, table, weighting_name)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert f"weighting {weighting_name!r}" in message and f"model {model_name!r}" in message, message
        mode = WEIGHTINGS.get(weighting_name).modes[0]
        # refused only for what the model really lacks
        assert (mode == "parameter" and not shared) or (mode == "representation" and not shares_representation(model)), message
        return
    params = dict(model.named_parameters())
    if shared:
        unchanged = [n for n, p in params.items() if id(p) in shared and torch.equal(before[n], p.detach())]
        assert not unchanged, f"{model_name} + {weighting_name}: shared parameters not updated: {unchanged}"
    else:
        got_gradient = [n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0]
        assert got_gradient, f"{model_name} + {weighting_name}: no parameter got a gradient"
        unchanged = [n for n in got_gradient if torch.equal(before[n], params[n].detach())]
        assert not unchanged, f"{model_name} + {weighting_name}: parameters with a gradient not updated: {unchanged}"
    for n, p in params.items():
        assert torch.isfinite(p).all(), f"{model_name} + {weighting_name}: {n} is not finite"


@pytest.mark.parametrize(
    "model_name, weighting_name, says",
    [
        ("single_task", "pcgrad", "weighting 'pcgrad' needs shared parameters; model 'single_task' shares none"),
        ("single_task", "nash_mtl", "weighting 'nash_mtl' needs shared parameters; model 'single_task' shares none"),
        ("single_task", "mgda", "weighting 'mgda' in representation mode needs a shared representation; "
                                "model 'single_task' passes none through share()"),
        ("cross_stitch", "mgda", "(weighting.mode: parameter uses its shared parameters)"),
    ],
)
def test_known_impossible_combinations_are_config_errors(model_name, weighting_name, says):
    """These crashed inside autograd ("inputs argument to grad() cannot be empty") or at the first
    step ("passed no representation through share()") before being refused up front."""
    model, tasks, table = _setup(model_name)
    with pytest.raises(ConfigError) as info:
        _one_step(model, tasks, table, weighting_name)
    assert says in str(info.value)


def test_the_matrix_is_not_mostly_refusals():
    refused = 0
    for model_name in MODELS.names():
        model, _, _ = _setup(model_name)
        for weighting_name in WEIGHTINGS.names():
            mode = WEIGHTINGS.get(weighting_name).modes[0]
            refused += (mode == "parameter" and not model.shared_parameters()) or (
                mode == "representation" and not shares_representation(model))
    assert refused < len(COMBINATIONS) // 4
