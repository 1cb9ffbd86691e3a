"""``data.sources``: several data sets in one run, each task learning from its own source's rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import torch

import polytask
from polytask.config import Config
from polytask.data.labels import SOURCE_COLUMN
from polytask.data.preprocessor import Preprocessor
from polytask.data.sources import load_splits
from polytask.errors import ConfigError


def write(path, n, seed, label):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    # both sources hold BOTH label columns; only the source's own column means anything
    table = pa.table({"x": x, "a": (x > 0).astype(int), "b": 3 * x + 1})
    if label == "b":
        table = table.set_column(1, "a", pa.array(rng.integers(0, 2, n)))  # garbage for task a
    else:
        table = table.set_column(2, "b", pa.array(rng.normal(size=n) * 100))  # garbage for task b
    pacsv.write_csv(table, path)
    return str(path)


def config(tmp_path, **extra):
    return {
        "data": {
            "sources": {
                "one": {"train": write(tmp_path / "a.csv", 200, 0, "a"), "split": {"validation": 0.2, "test": 0.0},
                        "features": {"numeric": ["x"]}, "tasks": [{"name": "a", "kind": "binary"}]},
                "two": {"train": write(tmp_path / "b.csv", 120, 1, "b"), "split": {"validation": 0.2, "test": 0.0},
                        "features": {"numeric": ["x"]}, "tasks": [{"name": "b", "kind": "regression"}]},
            },
            **extra,
        },
        "model": {"name": "shared_bottom", "bottom_hidden": [8], "tower_hidden": []},
        "train": {"epochs": 30, "batch_size": 32, "progress": False, "device": "cpu", "seed": 0},
        "optimizer": {"name": "adam", "lr": 0.03},
    }


def test_a_sources_rows_never_carry_labels_of_another_sources_tasks(tmp_path):
    splits = load_splits(Config(**config(tmp_path)).data)
    assert [(t.name, t.source) for t in splits.tasks] == [("a", "one"), ("b", "two")]
    assert splits.train.num_rows == 160 + 96 and splits.validation.num_rows == 40 + 24
    source = np.array(splits.train.column(SOURCE_COLUMN).to_pylist())
    pre = Preprocessor(splits.features, splits.tasks).fit(splits.train)
    table = pre.transform(splits.train)
    assert table.masks["a"].numpy().tolist() == (source == "one").tolist()
    assert table.masks["b"].numpy().tolist() == (source == "two").tolist()
    # a batch of source one's rows gives task b no loss and no gradient
    from polytask.models import create_model

    model = create_model("shared_bottom", pre.input_spec(), splits.tasks, {"bottom_hidden": [4]})
    batch = table.take(torch.from_numpy(np.flatnonzero(source == "one")))
    out = model(batch.features)
    loss = splits.tasks[1].loss(out["b"], batch.labels["b"], batch.masks["b"])
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.parameters())


@pytest.mark.parametrize("schedule", ["joint", "round_robin", "jmt"])
def test_a_multi_source_run_learns_each_task_from_its_own_rows(tmp_path, schedule):
    cfg = config(tmp_path)
    cfg["train"]["schedule"] = schedule
    run = polytask.fit(cfg)
    val = run.metrics["validation"]
    # the garbage in the other source's label columns would ruin both tasks if it leaked
    assert val["a"]["auc"] > 0.95 and val["a"]["count"] == 40
    assert val["b"]["rmse"] < 0.5 and val["b"]["count"] == 24


def test_tasks_listed_at_the_top_name_their_source(tmp_path):
    cfg = config(tmp_path, tasks=[{"name": "only_b", "kind": "regression", "label": "b", "source": "two"}])
    splits = load_splits(Config(**cfg).data)
    assert [(t.name, t.source) for t in splits.tasks] == [("only_b", "two")]
    bad = config(tmp_path, tasks=[{"name": "x", "label": "a", "source": "three"}])
    with pytest.raises(Exception, match="source must name one of data.sources"):
        Config(**bad)


def test_a_feature_declared_differently_by_two_sources_is_refused(tmp_path):
    cfg = config(tmp_path)
    cfg["data"]["sources"]["two"]["features"] = {"numeric": [{"name": "x", "log1p": True}]}
    with pytest.raises(ConfigError, match="feature 'x' is declared differently by sources 'one'"):
        load_splits(Config(**cfg).data)


def test_a_file_of_one_source_is_predicted_and_evaluated_without_the_others_columns(tmp_path):
    cfg = config(tmp_path)
    two = tmp_path / "b.csv"
    table = pacsv.read_csv(two)
    pacsv.write_csv(table.append_column("z", pa.array(np.arange(table.num_rows, dtype=float))), two)
    cfg["data"]["sources"]["two"]["features"] = {"numeric": ["x", "z"]}  # z: source two only
    cfg["train"]["epochs"] = 3
    run = polytask.fit(cfg)
    assert run.preprocessor.optional_columns == ["z"]  # empty in source one's rows
    one = pacsv.read_csv(tmp_path / "a.csv").drop(["b"])  # source one's own columns: x and a
    preds = run.predict(one.drop(["a"]))
    assert set(preds) == {"a", "b"} and len(preds["a"]) == one.num_rows
    metrics = run.evaluate(one)
    assert metrics["a"]["count"] == one.num_rows and metrics["b"]["count"] == 0
    saved = tmp_path / "run"
    run.save(saved)
    assert polytask.load_run(saved).preprocessor.optional_columns == run.preprocessor.optional_columns
    # a single-source run still insists on every column
    with pytest.raises(Exception, match="missing column"):
        polytask.fit(train=one, tasks=[{"name": "a"}], features={"numeric": ["x", "q"]}, epochs=1, progress=False)
