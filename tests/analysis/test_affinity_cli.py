"""``polytask affinity`` end to end on a tiny generated CSV: the files it writes, what it prints,
the budget, and one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import yaml
from typer.testing import CliRunner

from polytask.cli import app

runner = CliRunner()
TASKS = ["p", "q", "r"]


def check_ok(result) -> None:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}\n{result.exception!r}"


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """p and q are one function of the features (plus noise), r another; a binary task among them."""
    work = tmp_path_factory.mktemp("affinity")
    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=(n, 4))
    f, g = np.tanh(x @ rng.normal(size=4)), np.sin(x @ rng.normal(size=4))
    table = pa.table({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "x3": x[:, 3],
                      "p": f + 0.1 * rng.normal(size=n), "q": (f + 0.1 * rng.normal(size=n) > 0).astype(np.int64),
                      "r": g + 0.1 * rng.normal(size=n)})
    pacsv.write_csv(table.slice(0, 480), work / "train.csv")
    pacsv.write_csv(table.slice(480), work / "valid.csv")
    cfg = {
        "name": "tiny",
        "data": {"train": str(work / "train.csv"), "validation": str(work / "valid.csv"),
                 "tasks": [{"name": "p", "kind": "regression"}, {"name": "q"}, {"name": "r", "kind": "regression"}]},
        "model": {"name": "shared_bottom", "bottom_hidden": [16], "tower_hidden": [4]},
        "weighting": {"name": "uncertainty"},  # replaced by equal weights: affinity trains all tasks equally
        "train": {"epochs": 40, "batch_size": 64, "device": "cpu", "threads": 1},  # a full training's epochs
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_affinity_writes_matrices_and_groupings(config, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["affinity", str(config), "-o", str(out), "--epochs", "2", "--every", "2",
                                 "--set", "optimizer.lr=0.01"])
    check_ok(result)
    report = json.loads((out / "affinity.json").read_text())
    assert report["tasks"] == TASKS
    for key in ("lookahead", "cosine", "easy_hard", "lookahead_stderr"):
        m = report[key]
        assert len(m) == 3 and all(len(row) == 3 for row in m), key
        assert all(v is not None and math.isfinite(v) for row in m for v in row), key
    assert all(report["cosine"][i][i] == pytest.approx(1.0) for i in range(3))
    assert all(report["easy_hard"][i][i] == pytest.approx(1.0) for i in range(3))
    assert all(report["lookahead"][i][i] > 0 for i in range(3))  # a task's own step helps it
    # 432 training rows (10% of train.csv is held out as test) / 64 = 7 batches per epoch, 2 epochs,
    # every second batch measured
    assert report["steps"] == 7 and report["epochs"] == 2
    assert report["overlap"] is False
    assert report["config"]["weighting"]["name"] == "equal" and report["config"]["optimizer"]["lr"] == 0.01
    assert sorted(report["groupings"]) == ["1", "2", "3"]
    assert report["groupings"]["1"]["groups"] == [TASKS]
    for k, grouping in report["groupings"].items():
        assert len(grouping["groups"]) <= int(k)
        assert sorted(t for g in grouping["serves"] for t in g) == TASKS
    assert report["advised"]["groups"] in [g["groups"] for g in report["groupings"].values()]
    md = (out / "affinity.md").read_text()
    assert "## lookahead" in md and "## Groupings" in md and "**Advised" in md
    # printed: the three matrices with the tasks named, and the groupings
    for word in ("lookahead", "cosine", "easy/hard", "advised", "{p, q, r}", "affinity.json"):
        assert word in result.stdout, word
    # not a terminal: a plain line per epoch
    assert "affinity epoch 1/2" in result.stdout and "affinity epoch 2/2" in result.stdout


def test_budget_caps_the_networks(config, tmp_path):
    result = runner.invoke(app, ["affinity", str(config), "-o", str(tmp_path), "--budget", "1",
                                 "--max-groups", "2", "--overlap", "--every", "7", "--no-progress"])
    check_ok(result)
    report = json.loads((tmp_path / "affinity.json").read_text())
    assert report["overlap"] is True
    assert report["epochs"] == 5  # without --epochs: the config's 40, capped to a short run
    assert report["steps"] == 5  # 7 batches per epoch, the first of each measured
    assert report["advised"]["groups"] == [TASKS] and report["advised"]["budget"] == 1
    assert sorted(report["groupings"]) == ["1", "2"]
    assert "affinity epoch" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--unset", "model", "--set", "model.name=single_task"], "model.name: 'single_task' shares no parameters"),
        (["--budget", "0.5"], "--budget"),
        (["--epochs", "0"], "--epochs"),
        (["--set", "data.tasks=[{name: p, kind: regression}]"], "at least two trained tasks"),
    ],
)
def test_errors_are_one_line(config, tmp_path, args, message):
    result = runner.invoke(app, ["affinity", str(config), "-o", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.stdout
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_missing_config_is_one_line(tmp_path):
    result = runner.invoke(app, ["affinity", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "config file not found" in result.stderr
