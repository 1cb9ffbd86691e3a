"""Dynamic Weight Average (Liu et al., 2019): known weights from given epoch losses, 1 for the first
two epochs, sum T, and the trainer feeds it the epoch-average training losses."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.data.table import TensorTable
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.tasks import Task
from polytask.train.trainer import Trainer
from polytask.weighting import create_weighting

TASKS = [Task("a"), Task("b", kind="regression")]


def _weights(w):
    return {k: float(v) for k, v in w.weights({n: torch.tensor(1.0) for n in w.task_names}).items()}


def _expected(prev, before, temp):
    e = {n: math.exp(prev[n] / before[n] / temp) for n in prev}
    return {n: len(e) * v / sum(e.values()) for n, v in e.items()}


def test_known_weights_from_epoch_losses():
    w = create_weighting("dwa", TASKS)
    assert _weights(w) == {"a": 1.0, "b": 1.0}
    w.on_epoch_end(1, {"a": 1.0, "b": 2.0})
    assert _weights(w) == {"a": 1.0, "b": 1.0}  # epochs 1 and 2: weights 1
    w.on_epoch_end(2, {"a": 0.5, "b": 1.8})
    # ratios 0.5 and 0.9, temp 2: 2 exp(0.25) / (exp(0.25) + exp(0.45)) and 2 exp(0.45) / (...)
    got = _weights(w)
    assert got["a"] == pytest.approx(2 * math.exp(0.25) / (math.exp(0.25) + math.exp(0.45)))
    assert got["b"] == pytest.approx(2 * math.exp(0.45) / (math.exp(0.25) + math.exp(0.45)))
    assert got["a"] == pytest.approx(0.9003, abs=1e-4)
    assert sum(got.values()) == pytest.approx(2.0)
    w.on_epoch_end(3, {"a": 0.45, "b": 0.9})  # now a falls slower (0.9) than b (0.5)
    got = _weights(w)
    assert got["a"] > got["b"]
    assert got == pytest.approx(_expected({"a": 0.45, "b": 0.9}, {"a": 0.5, "b": 1.8}, 2.0))


def test_temperature_and_sum_of_weights():
    tasks = make_tasks(4)
    w = create_weighting("dwa", tasks, {"temp": 0.5})
    losses1 = {"t0": 1.0, "t1": 2.0, "t2": 3.0, "t3": 4.0}
    losses2 = {"t0": 0.9, "t1": 1.0, "t2": 2.9, "t3": 1.0}
    w.on_epoch_end(1, losses1)
    w.on_epoch_end(2, losses2)
    got = _weights(w)
    assert sum(got.values()) == pytest.approx(4.0)
    assert got == pytest.approx(_expected(losses2, losses1, 0.5))


def test_ratio_with_no_previous_loss_is_one():
    w = create_weighting("dwa", TASKS)
    w.on_epoch_end(1, {"a": 1.0, "b": 0.0})  # b never labelled in epoch 1
    w.on_epoch_end(2, {"a": 0.5, "b": 1.0})
    got = _weights(w)
    assert got == pytest.approx(_expected({"a": 0.5, "b": 1.0}, {"a": 1.0, "b": 1.0}, 2.0))


def test_bad_temperature_is_a_config_error():
    with pytest.raises(ConfigError, match="temp"):
        create_weighting("dwa", TASKS, {"temp": 0.0})


def test_trainer_uses_the_epoch_average_losses():
    tasks = make_tasks(3)
    b = make_batch(SPEC, tasks, 64)
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, tasks, {"bottom_hidden": [8], "tower_hidden": [4]})
    trainer = Trainer(model, tasks, weighting=create_weighting("dwa", tasks), epochs=3, batch_size=16,
                      patience=None, progress=False, device="cpu", lr=0.05)
    history = trainer.fit(TensorTable(b.features, b.labels, b.masks, b.weights))
    assert history[0]["weights"] == {"t0": 1.0, "t1": 1.0, "t2": 1.0}
    assert history[1]["weights"] == {"t0": 1.0, "t1": 1.0, "t2": 1.0}
    expected = _expected(history[1]["train_loss"], history[0]["train_loss"], 2.0)
    assert history[2]["weights"] == pytest.approx(expected, rel=1e-5)
