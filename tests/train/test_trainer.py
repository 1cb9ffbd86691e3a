"""Trainer: early stopping in the monitored metric's own direction, best weights restored,
JSONL log, masked tasks, validation-only model selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polytask.data.schema import InputSpec
from polytask.data.table import TensorTable
from polytask.errors import ConfigError, TrainingError
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
    assert tuple(parse_monitor("loss", TASKS)) == (None, "loss", False)
    assert tuple(parse_monitor("a.auc", TASKS)) == ("a", "auc", True)
    assert tuple(parse_monitor("b.rmse", TASKS)) == ("b", "rmse", False)
    with pytest.raises(ConfigError, match=r"train.monitor: 'c.auc' names task 'c', which this run does not have \(tasks: a, b\)"):
        parse_monitor("c.auc", TASKS)
    with pytest.raises(ConfigError, match=r"train.monitor: 'auc' must be 'loss', 'mean.relative_loss'"):
        parse_monitor("auc", TASKS)
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


# -- monitors over all tasks ------------------------------------------------------------------------
def test_mean_monitors_parse_with_the_metrics_direction():
    tasks = [Task("a", kind="binary"), Task("b", kind="regression"), Task("c", kind="binary")]
    auc = parse_monitor("mean.auc", tasks)
    assert (auc.task, auc.higher_is_better, auc.tasks) == (None, True, ("a", "c"))
    rmse = parse_monitor("mean.rmse", tasks)
    assert (rmse.higher_is_better, rmse.tasks) == (False, ("b",))
    # a mean is taken over the tasks the model is trained on
    assert parse_monitor("mean.auc", tasks, trained=["a", "b"]).tasks == ("a",)
    rel = parse_monitor("mean.relative_loss", tasks)
    assert (rel.higher_is_better, rel.tasks) == (False, ("a", "b", "c"))
    with pytest.raises(ConfigError, match=r"train.monitor: no task has the metric 'bogus'.*auc"):
        parse_monitor("mean.bogus", tasks)
    with pytest.raises(ConfigError, match="ambiguous"):
        parse_monitor("mean.auc", [Task("mean", kind="binary"), Task("b", kind="binary")])


def test_mean_monitor_scores():
    tasks = [Task("a", kind="binary"), Task("b", kind="regression"), Task("c", kind="binary")]
    metrics = {"a": {"auc": 0.8, "loss": 0.5}, "b": {"rmse": 3.0, "loss": 90.0}, "c": {"auc": float("nan"), "loss": 0.0},
               "loss": 90.5}
    first = {"a": 1.0, "b": 100.0, "c": 0.0}
    assert parse_monitor("mean.auc", tasks).score(metrics) == pytest.approx(0.8)  # c's NaN AUC left out
    assert parse_monitor("mean.loss", tasks).score(metrics) == pytest.approx(90.5 / 3)
    assert parse_monitor("loss", tasks).score(metrics) == 90.5
    # each task relative to its loss before training; c (no labelled row, loss 0) does not count
    assert parse_monitor("mean.relative_loss", tasks).score(metrics, first) == pytest.approx((0.5 + 0.9) / 2)
    assert parse_monitor("mean.relative_loss", tasks).score(metrics) == pytest.approx(1.0)


def _scaled_tables():
    """Task b's loss is ~10^4 times task a's: the summed loss is b's alone."""
    train, val = _tables()
    for t in (train, val):
        t.labels["b"] = t.labels["b"] * 100
    return train, val


def test_default_monitor_is_the_mean_relative_validation_loss():
    train, val = _scaled_tables()
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [8]})
    trainer = Trainer(model, TASKS, epochs=6, batch_size=64, lr=0.02, patience=None, progress=False)
    assert trainer.monitor == "mean.relative_loss"
    torch.manual_seed(1)
    untrained = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [8]})
    untrained.load_state_dict(model.state_dict())
    history = trainer.fit(train, val)
    # the reference is each task's validation loss before training (logged with the first epoch)
    before = Trainer(untrained, TASKS, device="cpu", progress=False).evaluate(val)
    first = history[0]["initial_validation_loss"]
    assert first == pytest.approx({t: before[t]["loss"] for t in "ab"})
    assert "initial_validation_loss" not in history[1]
    expected = [np.mean([r["validation"][t]["loss"] / first[t] for t in "ab"]) for r in history]
    assert [r["monitor"]["mean.relative_loss"] for r in history] == pytest.approx(expected)
    assert all(e < 1.0 for e in expected)  # training helps both tasks
    assert trainer.best_epoch == int(np.argmin(expected)) + 1
    # the summed loss is task b's alone here: the two monitors weigh the tasks differently
    assert first["b"] > 1000 * first["a"]


def test_loss_monitor_is_the_sum_of_validation_losses_as_before():
    train, val = _scaled_tables()
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [8]})
    trainer = Trainer(model, TASKS, epochs=4, batch_size=64, patience=None, monitor="loss", progress=False)
    history = trainer.fit(train, val)
    sums = [r["validation"]["a"]["loss"] + r["validation"]["b"]["loss"] for r in history]
    assert [r["monitor"]["loss"] for r in history] == pytest.approx(sums)
    assert trainer.best_epoch == int(np.argmin(sums)) + 1


def test_mean_auc_monitor_selects_on_the_mean_over_binary_tasks():
    tasks = [Task("a", kind="binary"), Task("c", kind="binary"), Task("b", kind="regression")]
    train, val = _tables()
    for t in (train, val):
        t.labels["c"] = (t.features["numeric"][:, 2] > 0).float()
        t.masks["c"] = torch.ones(len(t.labels["c"]), dtype=torch.bool)
    torch.manual_seed(0)
    model = create_model("mmoe", SPEC, tasks, {"num_experts": 2})
    trainer = Trainer(model, tasks, epochs=4, batch_size=64, patience=None, monitor="mean.auc", progress=False)
    history = trainer.fit(train, val)
    means = [(r["validation"]["a"]["auc"] + r["validation"]["c"]["auc"]) / 2 for r in history]
    assert [r["monitor"]["mean.auc"] for r in history] == pytest.approx(means)
    assert trainer.best_epoch == int(np.argmax(means)) + 1


# -- divergence -------------------------------------------------------------------------------------
def test_a_diverging_run_stops_with_a_training_error_and_keeps_no_nan_state(tmp_path):
    train, val = _tables()
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS)
    saved = []
    log = tmp_path / "log.jsonl"
    trainer = Trainer(model, TASKS, epochs=5, batch_size=32, optimizer="sgd", lr=1e6, log_path=log,
                      on_improve=lambda tr: saved.append(tr.best_epoch), progress=False)
    with pytest.raises(TrainingError) as info:
        trainer.fit(train, val)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("epoch 1: the training loss of task")
    assert "b (" in message and "learning rate" in message and "check the data" in message
    assert saved == [] and trainer.best_state is None and trainer.best_score is None
    assert len(log.read_text().splitlines()) == 1  # the diverged epoch is in the log


def test_a_non_finite_validation_loss_stops_the_run_naming_the_split():
    train, val = _tables()
    val.features["numeric"][0, 0] = float("inf")  # an extreme value in the validation data
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS)
    saved = []
    trainer = Trainer(model, TASKS, epochs=3, batch_size=64, on_improve=lambda tr: saved.append(1), progress=False)
    with pytest.raises(TrainingError, match=r"epoch 1: the validation loss of task.* is not finite"):
        trainer.fit(train, val)
    assert saved == [] and trainer.best_state is None


def test_a_run_that_diverges_later_raises_after_keeping_only_finite_states():
    train, val = _tables()
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS)
    states = []

    def blow_up(trainer, record):
        states.append(trainer.best_state)
        if record["epoch"] == 2:  # the next epoch's updates are huge
            for group in trainer.optimizer.param_groups:
                group["lr"] = 1e8

    trainer = Trainer(model, TASKS, epochs=6, batch_size=32, optimizer="sgd", lr=0.01, patience=None,
                      callbacks=[blow_up], progress=False)
    with pytest.raises(TrainingError, match=r"^epoch 3: the training loss"):
        trainer.fit(train, val)
    assert trainer.best_epoch in (1, 2)
    assert all(torch.isfinite(v.float()).all() for v in trainer.best_state.values())


def test_fit_raises_a_training_error_on_divergence():
    import pyarrow as pa

    import polytask

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    table = pa.table({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "y": (x[:, 0] > 0).astype(int), "r": x[:, 1] * 3})
    cfg = {"data": {"tasks": [{"name": "y"}, {"name": "r", "kind": "regression"}]},
           "optimizer": {"name": "sgd", "lr": 1e6}, "model": {"name": "shared_bottom"}}
    with pytest.raises(TrainingError, match=r"^epoch 1: the training loss of tasks? .*not finite"):
        polytask.fit(cfg, train=table, epochs=3, batch_size=32, progress=False)


def test_the_cli_reports_divergence_in_one_line_and_writes_no_run(tmp_path):
    from typer.testing import CliRunner

    from polytask.cli import app

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    lines = ["x1,x2,x3,y,r"] + [f"{a},{b},{c},{int(a > 0)},{3 * b}" for a, b, c in x]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "run.yaml").write_text(
        f"data:\n  train: {tmp_path / 'train.csv'}\n  tasks: [y, {{name: r, kind: regression}}]\n"
        "model: {name: shared_bottom}\noptimizer: {name: sgd, lr: 1e6}\ntrain: {epochs: 3, batch_size: 32}\n"
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(tmp_path / "run.yaml"), "--out", str(out), "--no-progress"])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()  # the error alone (stdout holds what was inferred from the file)
    assert "\n" not in message and "epoch 1: the training loss of task" in message and "learning rate" in message
    assert not out.exists()
    assert not list(tmp_path.rglob("model.pt"))  # no checkpoint of the diverged model anywhere


@pytest.mark.parametrize("scheduler", ["cosine", "step"])
def test_a_model_that_grows_keeps_the_runs_learning_rate_schedule(scheduler):
    """FAFS adds parameters after epochs 1 and 2: the rebuilt optimiser's schedule continues where
    the run's was (the learning rate per epoch is that of a model that never changes)."""
    train, val = _tables()
    kwargs = dict(epochs=5, optimizer="sgd", lr=0.1, scheduler=scheduler, progress=False, patience=None)
    fixed = Trainer(create_model("shared_bottom", SPEC, TASKS), TASKS, **kwargs).fit(train, val)
    growing_model = create_model("fafs", SPEC, TASKS, {"hidden": [8, 8], "warmup_epochs": 1, "widen_every": 1})
    growing = Trainer(growing_model, TASKS, **kwargs).fit(train, val)
    assert [r for r in growing if "structure" in r], "the model never grew: the test checks nothing"
    assert [r["lr"] for r in growing] == pytest.approx([r["lr"] for r in fixed])
