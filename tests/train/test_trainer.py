"""Trainer: early stopping in the monitored metric's own direction, best weights restored,
JSONL log, masked tasks, validation-only model selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polytask.data.schema import InputSpec
from polytask.data.table import TensorTable
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.tasks import Task
from polytask.train.trainer import Trainer, parse_monitor


def _tables(n=600, seed=0, mask_second=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y1 = (x[:, 0] + 0.3 * torch.randn(n, generator=g) > 0).float()
    y2 = x[:, 1] * 2 + 0.1 * torch.randn(n, generator=g)
    m2 = torch.rand(n, generator=g) > 0.5 if mask_second else torch.ones(n, dtype=torch.bool)
    full = TensorTable({"numeric": x}, {"a": y1, "b": y2}, {"a": torch.ones(n, dtype=torch.bool), "b": m2})
    cut = int(n * 0.7)
    return _as_table(full.slice(0, cut)), _as_table(full.slice(cut, n))


def _as_table(batch):
    return TensorTable(batch.features, batch.labels, batch.masks, batch.weights)


TASKS = [Task("a", kind="binary"), Task("b", kind="regression")]
SPEC = InputSpec(numeric_dim=4)


def test_monitor_parsing_and_errors():
    assert parse_monitor("loss", TASKS) == (None, "loss", False)
    assert parse_monitor("a.auc", TASKS) == ("a", "auc", True)
    assert parse_monitor("b.rmse", TASKS) == ("b", "rmse", False)
    with pytest.raises(ConfigError, match="train.monitor"):
        parse_monitor("c.auc", TASKS)
    with pytest.raises(ConfigError, match="train.monitor"):
        parse_monitor("a.rmse", TASKS)


def test_fit_logs_restores_best_and_early_stops(tmp_path):
    train, val = _tables()
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [16]})
    log = tmp_path / "log.jsonl"
    saved = []
    trainer = Trainer(model, TASKS, epochs=12, batch_size=32, patience=2, monitor="a.auc", lr=0.05,
                      log_path=log, on_improve=lambda tr: saved.append(tr.best_epoch), progress=False)
    history = trainer.fit(train, val)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == len(history) >= 1
    assert {"train_loss", "validation", "train_seconds", "weights", "lr"} <= set(lines[0])
    scores = [r["validation"]["a"]["auc"] for r in history]
    best = int(np.argmax(scores)) + 1
    assert trainer.best_epoch == best and saved[-1] == best
    # stopped exactly `patience` epochs after the best, or ran out of epochs
    assert len(history) == min(12, best + 2)
    # the restored weights reproduce the best validation score
    assert trainer.evaluate(val)["a"]["auc"] == pytest.approx(scores[best - 1], abs=1e-6)


def test_lower_is_better_monitor_direction():
    train, val = _tables()
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [8]})
    trainer = Trainer(model, TASKS, epochs=6, batch_size=64, patience=None, monitor="b.rmse", progress=False)
    history = trainer.fit(train, val)
    scores = [r["validation"]["b"]["rmse"] for r in history]
    assert trainer.best_epoch == int(np.argmin(scores)) + 1


def test_partially_labelled_task_trains_without_nan():
    train, val = _tables(mask_second=True)
    # a whole batch without labels for task b: masks off for the first 64 rows, batch size 64, no shuffle impact on finiteness
    train.masks["b"][:64] = False  # with shuffling, some batches of 8 hold no label of task b
    torch.manual_seed(0)
    model = create_model("mmoe", SPEC, TASKS, {"num_experts": 2})
    trainer = Trainer(model, TASKS, epochs=2, batch_size=8, progress=False)
    history = trainer.fit(train, val)
    for record in history:
        assert all(np.isfinite(v) for v in record["train_loss"].values())
    for p in model.parameters():
        assert torch.isfinite(p).all()
    assert history[-1]["validation"]["b"]["count"] == int(val.masks["b"].sum())


def test_same_seed_same_result():
    results = []
    for _ in range(2):
        train, val = _tables()
        torch.manual_seed(0)
        model = create_model("mmoe", SPEC, TASKS, {"num_experts": 2})
        trainer = Trainer(model, TASKS, epochs=2, batch_size=32, seed=3, progress=False)
        trainer.fit(train, val)
        results.append(trainer.evaluate(val)["loss"])
    assert results[0] == results[1]


def test_scheduler_and_optimizer_options():
    train, val = _tables()
    model = create_model("shared_bottom", SPEC, TASKS)
    trainer = Trainer(model, TASKS, epochs=3, optimizer="sgd", lr=0.1, optimizer_params={"momentum": 0.9},
                      scheduler="step", scheduler_params={"step_size": 1, "gamma": 0.5}, progress=False, patience=None)
    history = trainer.fit(train, val)
    assert [r["lr"] for r in history] == pytest.approx([0.1, 0.05, 0.025])
    with pytest.raises(ConfigError, match="optimizer.bogus"):
        Trainer(model, TASKS, optimizer_params={"bogus": 1})


def test_bad_scheduler_and_optimizer_values_are_config_errors():
    model = create_model("shared_bottom", SPEC, TASKS)
    with pytest.raises(ConfigError, match="scheduler.gamma"):
        Trainer(model, TASKS, scheduler="step", scheduler_params={"gamma": "abc"})
    with pytest.raises(ConfigError, match="optimizer"):
        Trainer(model, TASKS, optimizer_params={"eps": -1.0})
    with pytest.raises(ConfigError, match="train.device"):
        Trainer(model, TASKS, device="nope")
