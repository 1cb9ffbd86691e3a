"""``train.loggers``: every scalar of the run log reaches every chosen logger (jsonl, TensorBoard,
MLflow), the packages are imported only when chosen, and bad choices are one ConfigError."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import polytask
from polytask.errors import ConfigError
from polytask.train.loggers import scalars, step_scalars

TASKS = [{"name": "a"}, {"name": "b", "kind": "regression"}]
MODEL = {"name": "mmoe", "num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]}
OPTIONS = {"epochs": 2, "batch_size": 50, "progress": False, "seed": 0, "device": "cpu", "log_every": 2}


def frame(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "c": rng.choice(["u", "v"], n), "a": (x > 0).astype(np.int64),
                         "b": 2 * x + rng.normal(size=n) * 0.1})


RECORD = {
    "epoch": 3,
    "train_loss": {"a": 0.5, "b": 1.5},
    "validation": {"a": {"auc": 0.75, "count": 10}, "loss": 2.0},
    "lr": 0.01,
    "converged": True,  # not a measurement: left out
    "diagnostics": {"gates": {"a": [0.25, 0.75]}, "task_correlation": [[1.0, 0.5], [0.5, 1.0]]},
    "monitor": {"a.auc": float("nan")},  # not finite: left out
    "steps": [{"step": 40, "weights": {"a": 1.0, "b": 2.0},
               "cosine": {"tasks": ["a", "b"], "matrix": [[1.0, -0.25], [-0.25, 1.0]], "norms": [3.0, 4.0]}}],
}


def test_scalars_are_every_finite_number_by_its_key_path():
    assert scalars(RECORD) == {
        "train_loss/a": 0.5, "train_loss/b": 1.5, "validation/a/auc": 0.75, "validation/a/count": 10.0,
        "validation/loss": 2.0, "lr": 0.01, "diagnostics/gates/a/0": 0.25, "diagnostics/gates/a/1": 0.75,
        "diagnostics/task_correlation/0/0": 1.0, "diagnostics/task_correlation/0/1": 0.5,
        "diagnostics/task_correlation/1/0": 0.5, "diagnostics/task_correlation/1/1": 1.0,
    }


def test_step_scalars_name_cosines_by_task_pair_at_the_optimiser_step():
    assert step_scalars(RECORD) == [(40, {"step/weights/a": 1.0, "step/weights/b": 2.0, "step/cosine/a_vs_b": -0.25,
                                          "step/grad_norm/a": 3.0, "step/grad_norm/b": 4.0})]


def test_tensorboard_receives_every_scalar_and_the_run_stays_a_run(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run = polytask.fit(train=frame(), validation=frame(100), tasks=TASKS, model=MODEL, out=out,
                       loggers=["jsonl", "tensorboard"], **OPTIONS)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    expected = set(scalars(records[0])) | {k for r in records for _, v in step_scalars(r) for k in v}
    assert "validation/a/auc" in expected and "step/cosine/a_vs_b" in expected and "diagnostics/gate_entropy/a" in expected
    assert expected <= tags
    auc = events.Scalars("validation/a/auc")
    assert [e.step for e in auc] == [1, 2]
    assert [e.value for e in auc] == pytest.approx([r["validation"]["a"]["auc"] for r in records])
    steps = [s["step"] for r in records for s in r["steps"]]
    assert [e.step for e in events.Scalars("step/cosine/a_vs_b")] == steps
    assert polytask.load_run(out).metrics == run.metrics  # the extra folder does not spoil the run
    polytask.fit(train=frame(), tasks=TASKS, model=MODEL, out=out, overwrite=True, **OPTIONS)  # nor its replacement


def test_without_jsonl_no_log_file_is_written(tmp_path):
    out = tmp_path / "run"
    polytask.fit(train=frame(), tasks=TASKS, model=MODEL, out=out, loggers=["tensorboard"], **OPTIONS)
    assert not (out / "metrics.jsonl").exists() and any((out / "tensorboard").iterdir())


def test_mlflow_gets_the_config_as_parameters_and_every_scalar(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # MLflow's artifact folder, if it makes one
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "polytask-test")
    out = tmp_path / "census-like"
    run = polytask.fit(train=frame(), validation=frame(100), tasks=TASKS, model=MODEL, out=out,
                       loggers=["jsonl", "mlflow"], **OPTIONS)
    assert mlflow.active_run() is None  # the logger's own MLflow run is ended
    client = mlflow.tracking.MlflowClient()
    (found,) = client.search_runs([client.get_experiment_by_name("polytask-test").experiment_id])
    assert found.info.run_name == "census-like"
    assert found.data.params["model.num_experts"] == "2" and found.data.params["train.epochs"] == "2"
    history = client.get_metric_history(found.info.run_id, "validation/a/auc")
    assert [m.step for m in history] == [1, 2]
    assert history[-1].value == pytest.approx(run.history[-1]["validation"]["a"]["auc"])
    assert client.get_metric_history(found.info.run_id, "step/cosine/a_vs_b")


def test_bad_logger_choices_are_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"train.loggers: unknown logger 'wandb'; registered: jsonl, mlflow, tensorboard"):
        polytask.fit(train=frame(), tasks=TASKS, model=MODEL, out=tmp_path / "r", loggers=["wandb"], **OPTIONS)
    with pytest.raises(ConfigError, match="train.loggers: tensorboard writes into the run directory"):
        polytask.fit(train=frame(), tasks=TASKS, model=MODEL, loggers=["tensorboard"], **OPTIONS)
    assert not (tmp_path / "r").exists()


def test_logger_packages_are_imported_only_when_chosen():
    code = ("import sys, polytask, pandas as pd, numpy as np\n"
            "from polytask.registry import LOGGERS\n"
            "LOGGERS.names()\n"
            "polytask.fit(train=pd.DataFrame({'x': np.arange(40.0), 'a': np.arange(40) % 2}), tasks=[{'name': 'a'}],"
            " model='shared_bottom', epochs=1, progress=False)\n"
            "print(sorted(m for m in ('mlflow', 'tensorboard', 'torch.utils.tensorboard') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
